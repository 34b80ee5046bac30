//! The two other modes of the soak (`NODEMEDIC_SOAK_MODE`):
//! - `storm`: 10,000 (`NODEMEDIC_SOAK_EVENTS`) launch failures of one nodegroup (lab 002's KMS
//!   key), one in ten a second delivery of an earlier one, all from before any fix, to a daemon
//!   in auto mode. It must open one incident, apply one fix, and drain the queue; the bench
//!   prints the drain time next to the bare loop's over the same messages.
//! - `idle`: the daemon polling an empty queue for `NODEMEDIC_SOAK_IDLE_SECS` (default 60).
//!
//! Either runs the daemon in this process, or, with `NODEMEDIC_SOAK_DAEMON_BIN`, as that binary
//! (a release build, for `scripts/bench-footprint`), whose own RSS and CPU time are then read
//! from /proc. Messages handled are counted from the queue's depth, which moto counts exactly.

use std::process::{Child, Stdio};
use std::sync::atomic::AtomicU64;

use super::*;

/// Which run the bench makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Mix,
    Storm,
    Idle,
}

impl Mode {
    pub(super) fn from_env() -> Mode {
        match std::env::var("NODEMEDIC_SOAK_MODE").as_deref() {
            Ok("storm") => Mode::Storm,
            Ok("idle") => Mode::Idle,
            Ok("mix") | Err(_) => Mode::Mix,
            Ok(other) => panic!("NODEMEDIC_SOAK_MODE={other}: mix, storm or idle"),
        }
    }
}

/// The waits of a fix, shortened as the integration tests shorten them: moto settles at once,
/// and the bench measures the daemon, not AWS's cycle time.
const QUICK_FIXES: [(&str, &str); 4] = [
    ("NODEMEDIC_REMEDIATION__NODEGROUP_POLL_SECS", "0.2"),
    ("NODEMEDIC_REMEDIATION__NODEGROUP_TIMEOUT_SECS", "30"),
    ("NODEMEDIC_VERIFY__TIMEOUT_SECS", "20"),
    ("NODEMEDIC_VERIFY__POLL_SECS", "0.3"),
];

/// The daemon under measure.
enum Daemon {
    InProcess {
        shutdown: nodemedic::shutdown::Shutdown,
        task: tokio::task::JoinHandle<
            Result<nodemedic::daemon::RunSummary, nodemedic::daemon::DaemonError>,
        >,
    },
    Child {
        child: Child,
        log: PathBuf,
    },
}

/// The daemon's settings given to the bench (`NODEMEDIC_INTAKE__MAX_IN_FLIGHT=10`, ...), so that
/// a setting can be measured without editing the bench; the bench's own knobs are not passed.
pub(crate) fn daemon_settings_from_environment() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(key, _)| {
            key.starts_with("NODEMEDIC_")
                && !key.starts_with("NODEMEDIC_SOAK_")
                && !key.starts_with("NODEMEDIC_FOOTPRINT_")
        })
        .collect()
}

impl Daemon {
    async fn start(
        emulator: &Emulator,
        queue_url: &str,
        mode: &str,
        audit_db: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        match std::env::var("NODEMEDIC_SOAK_DAEMON_BIN") {
            Ok(binary) => {
                let log = audit_db.with_extension("log");
                let mut command = std::process::Command::new(&binary);
                command
                    .args([
                        "run",
                        "--mode",
                        mode,
                        "--queue-url",
                        queue_url,
                        "--audit-db",
                    ])
                    .arg(audit_db)
                    .env_clear()
                    .envs(emulator.env())
                    .envs(env.iter().copied())
                    .envs(daemon_settings_from_environment())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).expect("daemon log"));
                if let Ok(path) = std::env::var("PATH") {
                    command.env("PATH", path);
                }
                let child = command.spawn().expect("the daemon binary starts");
                Daemon::Child { child, log }
            }
            Err(_) => {
                let overrides = Overrides {
                    queue_url: Some(queue_url.to_string()),
                    mode: Some(mode.to_string()),
                    audit_db: Some(audit_db.to_path_buf()),
                    config_file: None,
                };
                let env = env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .chain(daemon_settings_from_environment());
                let settings =
                    Settings::load_with_env(&overrides, Some(env.collect())).expect("settings");
                let shutdown = nodemedic::shutdown::Shutdown::new();
                let task = tokio::spawn(nodemedic::daemon::run_with(
                    settings,
                    emulator.sdk_config(),
                    false,
                    shutdown.clone(),
                    Default::default(),
                ));
                Daemon::InProcess { shutdown, task }
            }
        }
    }

    /// The process whose figures are read: `self`, or the child's pid.
    fn process(&self) -> String {
        match self {
            Daemon::InProcess { .. } => "self".into(),
            Daemon::Child { child, .. } => child.id().to_string(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Daemon::InProcess { .. } => "the daemon in this process (dev profile; its RSS includes the feeder and the bench's clients)".into(),
            Daemon::Child { .. } => format!(
                "the binary {}",
                std::env::var("NODEMEDIC_SOAK_DAEMON_BIN").unwrap_or_default()
            ),
        }
    }

    async fn stop(self) {
        match self {
            Daemon::InProcess { shutdown, task } => {
                shutdown.request();
                task.await
                    .expect("the daemon task")
                    .expect("the daemon runs");
            }
            Daemon::Child { mut child, log } => {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let status = child.wait().expect("the daemon exits");
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(status.success(), "the daemon exited with {status}:\n{text}");
            }
        }
    }
}

/// Messages handled so far, from the queue's depth: sent minus still in the queue.
struct Drained {
    sent: AtomicUsize,
    done: AtomicUsize,
}

fn count_drained(world: &World, queue_url: &str) -> (Arc<Drained>, CancellationToken) {
    let drained = Arc::new(Drained {
        sent: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
    });
    let stop = CancellationToken::new();
    let (sqs, url, counts, stopped) = (
        world.clients.sqs.clone(),
        queue_url.to_string(),
        drained.clone(),
        stop.clone(),
    );
    tokio::spawn(async move {
        while !stopped.is_cancelled() {
            // Read before the depth: a wave sent meanwhile is then never counted as done.
            let sent = counts.sent.load(Ordering::SeqCst);
            let left = super::depth(&sqs, &url).await;
            counts
                .done
                .store(sent.saturating_sub(left as usize), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (drained, stop)
}

/// Peak of `VmRSS` sampled every 100 ms, for a process without `VmHWM` of its own (this one,
/// whose peak includes the world's set-up).
fn sample_peak(process: String) -> (Arc<AtomicU64>, CancellationToken) {
    let peak = Arc::new(AtomicU64::new(status_kib(&process, "VmRSS:")));
    let stop = CancellationToken::new();
    let (max, stopped) = (peak.clone(), stop.clone());
    tokio::spawn(async move {
        while !stopped.is_cancelled() {
            max.fetch_max(status_kib(&process, "VmRSS:"), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (peak, stop)
}

pub(super) async fn storm(count: usize, stage_times: &stages::Stages) {
    let setup = Instant::now();
    let world = build_world().await;
    let messages = storm_messages(&world, count);
    let redeliveries = messages
        .iter()
        .filter(|m| m.kind == Kind::Duplicate)
        .count();
    println!(
        "storm: {count} launch failures of nodegroup {} ({redeliveries} of them second deliveries), all from before any fix, world built in {:.1} s",
        world.lab_002.nodegroup,
        setup.elapsed().as_secs_f64()
    );
    let loop_took = baseline(&world, &messages).await;

    let dir =
        std::env::temp_dir().join(format!("nodemedic-storm-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let audit_db = dir.join("audit.db");
    let mut env: Vec<(&str, &str)> = vec![("NODEMEDIC_JOIN__DEADLINE_SECS", "0")];
    env.extend(QUICK_FIXES);
    let calls_before = aws_calls();
    let daemon = Daemon::start(&world.emulator, &world.queue.url, "auto", &audit_db, &env).await;
    let process = daemon.process();
    let cpu_before = stages::cpu_time_of(&process);
    let (peak, sampling) = sample_peak(process.clone());
    let (drained, counting) = count_drained(&world, &world.queue.url);
    let done = || drained.done.load(Ordering::SeqCst);
    let (fed, started) = feed(
        &world.clients.sqs,
        &world.queue.url,
        &messages,
        done,
        &drained.sent,
    )
    .await;
    wait_until(done, messages.len()).await;
    let took = started.elapsed();
    let cpu = stages::cpu_time_of(&process).saturating_sub(cpu_before);
    let (rss, hwm) = (
        status_kib(&process, "VmRSS:"),
        status_kib(&process, "VmHWM:"),
    );
    counting.cancel();
    sampling.cancel();
    let described = daemon.describe();
    daemon.stop().await;
    let calls = calls_made(&calls_before);

    let audit = recorded(&audit_db);
    let fixes = applied_fixes(&audit_db);
    let ratio = took.as_secs_f64() / loop_took.as_secs_f64();
    println!();
    println!("daemon: {described}, auto mode");
    println!(
        "drained in {:.1} s against {:.1} s for the bare loop: {ratio:.2}x the loop's time (goal: at most 1.2x); {:.1} msg/s",
        took.as_secs_f64(),
        loop_took.as_secs_f64(),
        messages.len() as f64 / took.as_secs_f64()
    );
    println!(
        "CPU of the daemon's process: {:.2} ms per message",
        ms(cpu) / messages.len() as f64
    );
    if process == "self" {
        println!(
            "RSS of this process: peak {:.1} MiB sampled during the storm, {:.1} MiB after",
            mib(peak.load(Ordering::Relaxed)),
            mib(rss)
        );
    } else {
        println!(
            "RSS of the daemon: peak {:.1} MiB (VmHWM, goal: under 40 MiB for a release build), {:.1} MiB at the end",
            mib(hwm),
            mib(rss)
        );
    }
    if process == "self" {
        stages::print_breakdown(stage_times, &fed.kinds);
    }
    print_calls(&calls, messages.len());
    println!(
        "audit: incidents by cause {:?}; fixes applied {fixes:?}; duplicate deliveries recorded {}",
        audit.incidents, audit.duplicates
    );
    let total_incidents: i64 = audit.incidents.values().sum();
    assert_eq!(total_incidents, 1, "one incident for the storm");
    assert!(!fixes.is_empty(), "the storm's cause was fixed");
    assert!(
        fixes.values().all(|applied| *applied == 1),
        "each step of the fix applied once: {fixes:?}"
    );
    assert_eq!(
        messages_left(&world, &world.queue.url).await
            + messages_left(&world, &world.queue.dead_letter_url).await,
        0,
        "the queue is empty"
    );
    println!("one incident, one fix, the queue drained.");
    // For scripts/bench-footprint: peak and end RSS in MiB, drain and loop seconds.
    println!(
        "footprint storm {:.1} {:.1} {:.1} {:.1}",
        mib(hwm.max(peak.load(Ordering::Relaxed))),
        mib(rss),
        took.as_secs_f64(),
        loop_took.as_secs_f64()
    );
}

pub(super) async fn idle() {
    let seconds: u64 = std::env::var("NODEMEDIC_SOAK_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let emulator = Emulator::start(0.5)
        .await
        .expect("the emulator starts (pip install \"moto[server]\")");
    let clients = LabClients::new(&emulator.sdk_config());
    let queue = lab::event_queue(&clients, "nodemedic-idle", 5)
        .await
        .expect("queue");
    let dir =
        std::env::temp_dir().join(format!("nodemedic-idle-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let daemon = Daemon::start(&emulator, &queue.url, "auto", &dir.join("audit.db"), &[]).await;
    let process = daemon.process();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = stages::cpu_time_of(&process);
    let (rss, hwm) = (
        status_kib(&process, "VmRSS:"),
        status_kib(&process, "VmHWM:"),
    );
    println!("daemon: {}", daemon.describe());
    println!(
        "idle for {seconds} s polling an empty queue (20 s long polls): RSS {:.1} MiB (goal: under 20 MiB for a release build), peak {:.1} MiB, CPU {:.2} s",
        mib(rss),
        mib(hwm),
        cpu.as_secs_f64()
    );
    // For scripts/bench-footprint: RSS and peak in MiB, CPU seconds.
    println!(
        "footprint idle {:.1} {:.1} {:.2}",
        mib(rss),
        mib(hwm),
        cpu.as_secs_f64()
    );
    daemon.stop().await;
}

/// The storm: lab 002's launch failure again and again, one in ten a second delivery.
fn storm_messages(world: &World, count: usize) -> Vec<Message> {
    let before_any_fix = time::OffsetDateTime::now_utc();
    let mut out: Vec<Message> = Vec::with_capacity(count);
    for index in 0..count {
        if index % 10 == 9 {
            let original = &out[index - 5];
            out.push(Message {
                kind: Kind::Duplicate,
                event_id: original.event_id.clone(),
                body: original.body.clone(),
            });
            continue;
        }
        let event_id = uuid::Uuid::new_v4().to_string();
        out.push(Message {
            kind: Kind::FailingKms,
            body: kms_failure(world, &event_id, before_any_fix),
            event_id,
        });
    }
    out
}

/// `step_result` records whose step was applied, by fix kind.
fn applied_fixes(audit_db: &std::path::Path) -> BTreeMap<String, i64> {
    let c = rusqlite::Connection::open(audit_db).expect("audit db");
    let mut statement = c
        .prepare(
            "SELECT json_extract(body, '$.fix'), COUNT(*) FROM records
             WHERE kind = 'step_result' AND json_extract(body, '$.result.status') = 'applied'
             GROUP BY 1",
        )
        .expect("query");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}
