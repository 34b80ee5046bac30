//! The process's own figures, read at scrape time from /proc (Linux; elsewhere they stay 0), and
//! the build it runs.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

#[derive(Debug, Default)]
pub struct ProcessMetrics {
    resident_memory_bytes: Gauge,
    cpu_seconds: Gauge<f64, AtomicU64>,
    open_fds: Gauge,
    build_info: Family<BuildLabels, Gauge>,
}

impl ProcessMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            self.resident_memory_bytes.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time the process has used",
            self.cpu_seconds.clone(),
        );
        registry.register(
            "process_open_fds",
            "File descriptors the process holds open (sockets included)",
            self.open_fds.clone(),
        );
        registry.register(
            "build_info",
            "1, labelled with the version of the running build",
            self.build_info.clone(),
        );
        self.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
    }

    /// Reads the figures now.
    pub fn observe(&self) {
        if let Some(pages) = read("/proc/self/statm").and_then(|statm| resident_pages(&statm)) {
            self.resident_memory_bytes
                .set(pages.saturating_mul(page_size()));
        }
        if let Some(ticks) = read("/proc/self/stat").and_then(|stat| cpu_ticks(&stat)) {
            // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ) to user space.
            self.cpu_seconds.set(ticks as f64 / 100.0);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds
                .set(i64::try_from(entries.count()).unwrap_or(i64::MAX));
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The page size Linux uses on the machines nodemedic runs on (x86_64 and arm64 with 4 KiB pages).
fn page_size() -> i64 {
    4096
}

/// The second field of /proc/self/statm: resident pages.
fn resident_pages(statm: &str) -> Option<i64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of /proc/self/stat (fields 14 and 15), read after the command name, which may
/// itself contain spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    user.checked_add(system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_field_by_field() {
        assert_eq!(resident_pages("2000 512 100 10 0 300 0"), Some(512));
        let stat = "4242 (node medic) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 30 0 0 20 0 8 0";
        assert_eq!(cpu_ticks(stat), Some(280));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn the_build_and_the_process_are_exported() {
        let mut registry = Registry::with_prefix("nodemedic");
        let process = ProcessMetrics::default();
        process.register(&mut registry);
        process.observe();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("nodemedic_build_info{version=\""), "{text}");
        assert!(text.contains("nodemedic_process_open_fds"));
        if cfg!(target_os = "linux") {
            assert!(
                !text.contains("nodemedic_process_resident_memory_bytes 0\n"),
                "{text}"
            );
        }
    }
}
