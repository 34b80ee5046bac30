//! Readiness: the daemon is ready while receives from its queue succeed and its AWS credentials
//! work. The queue loop and a credentials check report here; `/readyz` reads it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug)]
pub struct Readiness {
    window: Duration,
    started_ms: u64,
    /// Unix milliseconds of the last successful receive; 0 before the first.
    last_receive_ms: AtomicU64,
    last_credentials_ms: AtomicU64,
    /// How long the oldest message of the last non-empty receive had waited in the queue.
    last_message_age_ms: AtomicU64,
    credentials_error: Mutex<Option<String>>,
    receive_error: Mutex<Option<String>>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyReport {
    pub ready: bool,
    pub reasons: Vec<String>,
}

impl Readiness {
    /// How recent a receive and a credentials check must be.
    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn new(window: Duration) -> Readiness {
        Readiness {
            window,
            started_ms: now_ms(),
            last_receive_ms: AtomicU64::new(0),
            last_credentials_ms: AtomicU64::new(0),
            last_message_age_ms: AtomicU64::new(0),
            credentials_error: Mutex::new(None),
            receive_error: Mutex::new(None),
        }
    }

    pub fn received(&self) {
        self.last_receive_ms.store(now_ms(), Ordering::Relaxed);
        if let Ok(mut error) = self.receive_error.lock() {
            *error = None;
        }
    }

    /// The age of the oldest message of a non-empty receive.
    pub fn message_age(&self, age: Duration) {
        self.last_message_age_ms
            .store(age.as_millis() as u64, Ordering::Relaxed);
    }

    /// When the last receive succeeded (Unix milliseconds) and the last error since, for people.
    pub fn last_receive(&self) -> (Option<u64>, Option<String>) {
        let at = self.last_receive_ms.load(Ordering::Relaxed);
        let error = self.receive_error.lock().ok().and_then(|e| e.clone());
        ((at > 0).then_some(at), error)
    }

    /// How long the oldest message of the last non-empty receive had waited.
    pub fn last_message_age(&self) -> Duration {
        Duration::from_millis(self.last_message_age_ms.load(Ordering::Relaxed))
    }

    pub fn receive_failed(&self, why: &str) {
        if let Ok(mut error) = self.receive_error.lock() {
            *error = Some(why.to_string());
        }
    }

    pub fn credentials(&self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.last_credentials_ms.store(now_ms(), Ordering::Relaxed);
                if let Ok(mut error) = self.credentials_error.lock() {
                    *error = None;
                }
            }
            Err(why) => {
                if let Ok(mut error) = self.credentials_error.lock() {
                    *error = Some(why);
                }
            }
        }
    }

    pub fn report(&self) -> ReadyReport {
        self.report_at(now_ms())
    }

    fn report_at(&self, now: u64) -> ReadyReport {
        let window = self.window.as_millis() as u64;
        let mut reasons = Vec::new();
        let last_receive = self.last_receive_ms.load(Ordering::Relaxed);
        let fresh = |at: u64| at > 0 && now.saturating_sub(at) <= window;
        if !fresh(last_receive) {
            let why = self
                .receive_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_else(|| "none yet".into());
            // A process that just started gets one window to make its first receive.
            if last_receive > 0 || now.saturating_sub(self.started_ms) > window {
                reasons.push(format!(
                    "no successful receive from the queue in the last {} s (last error: {why})",
                    self.window.as_secs()
                ));
            } else {
                reasons.push("starting: no receive from the queue yet".into());
            }
        }
        if let Some(error) = self.credentials_error.lock().ok().and_then(|e| e.clone()) {
            reasons.push(format!("AWS credentials check failed: {error}"));
        } else if self.last_credentials_ms.load(Ordering::Relaxed) == 0 {
            reasons.push("AWS credentials not checked yet".into());
        }
        ReadyReport {
            ready: reasons.is_empty(),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_a_recent_receive_and_working_credentials() {
        let readiness = Readiness::new(Duration::from_secs(10));
        let start = readiness.started_ms;
        assert!(!readiness.report_at(start).ready, "nothing checked yet");
        readiness.credentials(Ok(()));
        readiness.last_receive_ms.store(start, Ordering::Relaxed);
        assert_eq!(
            readiness.report_at(start + 5_000),
            ReadyReport {
                ready: true,
                reasons: vec![]
            }
        );
        readiness.receive_failed("connection refused");
        let stale = readiness.report_at(start + 11_000);
        assert!(!stale.ready);
        assert!(stale.reasons[0].contains("connection refused"), "{stale:?}");
        readiness
            .last_receive_ms
            .store(start + 11_000, Ordering::Relaxed);
        readiness.credentials(Err("ExpiredToken".into()));
        let report = readiness.report_at(start + 12_000);
        assert!(!report.ready && report.reasons[0].contains("ExpiredToken"));
    }
}
