//! Soak: thousands of events through the daemon against the emulator, next to a bare
//! receive-and-delete loop over the same messages on the same emulator.
//!
//! Run: `cargo bench --bench soak --profile dev --features demo` (`NODEMEDIC_SOAK_EVENTS`,
//! default 2000). `NODEMEDIC_SOAK_MODE=storm` sends 10,000 failures of one nodegroup to a daemon
//! in auto mode instead, and `=idle` measures it polling an empty queue (`soak/storm.rs`).
//! Without `--bench` (as `cargo test --all-targets` runs it) it is a 20-event smoke test.
//! Either way it fails unless every event was handled and recorded and the queue is empty.
//!
//! The daemon is `nodemedic::daemon::run_with` in this process, with the default settings (and
//! any `NODEMEDIC_*` daemon setting in the bench's environment, such as
//! `NODEMEDIC_INTAKE__MAX_IN_FLIGHT=10`) but dry-run (which plans and mutates nothing, so every
//! wave meets the same world) and no join checks (each would park a delayed message in the
//! queue, and moto scans every stored message on each receive). It runs until every message is
//! handled, then is shut down.
//!
//! How each figure is measured:
//! - events/s: messages sent divided by the time from the first send to the last message
//!   handled (the daemon) or deleted (the loop), summed over turns of 100 messages the two take
//!   on the one emulator (`soak/bare.rs`). Both are fed the same way, in waves.
//! - who had the CPU in those turns: the emulator's and this process's CPU time per message,
//!   and the machine's idle and stolen share (`soak/machine.rs`). The emulator, at about 70% of
//!   a core throughout, is what sets either side's pace.
//! - latency: from receipt to delete, per message, from the daemon's own `message` span (the
//!   span its queue loop opens around each message), timed by a tracing layer of this bench.
//!   It is what `nodemedic_message_handling_seconds` measures, unbucketed. Time in the queue
//!   is from a message's SendMessageBatch to that span's start.
//! - RSS: `/proc/self/status` of this process (daemon, feeder, bare loop and SDK clients).
//! - AWS calls: the process-wide `nodemedic_aws_calls_total` family, before and after the
//!   daemon ran; the feeder and the bare loop bypass it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use nodemedic::aws::AwsResultExt;
use nodemedic::lab::{self, Emulator, LabClients, Network};
use nodemedic::settings::{Overrides, Settings};
use nodemedic::telemetry::metrics::Metrics;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[path = "soak/world.rs"]
mod world;
use world::*;
#[path = "soak/bare.rs"]
mod bare;
#[path = "soak/machine.rs"]
mod machine;
use bare::{baseline, take_turns};
#[path = "soak/stages.rs"]
mod stages;
#[path = "soak/storm.rs"]
mod storm;
use stages::{StageTimer, Stages};

const DEFAULT_EVENTS: usize = 2000;
const SMOKE_EVENTS: usize = 20;
const STORM_EVENTS: usize = 10_000;
/// Messages per SendMessageBatch.
const WAVE: usize = 10;
/// At most this many messages sent but not yet handled: moto drains a deep queue slowly
/// (about 9 messages/s with 5000 waiting, 550 with 10 or fewer), which would measure moto.
const MAX_OUTSTANDING: usize = 20;
/// A run that handles nothing for this long is stuck.
const STALL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    /// A successful launch in a healthy nodegroup.
    Healthy,
    /// A launch in an Auto Scaling group without EKS tags: not ours.
    NotEks,
    /// An Auto Scaling event nodemedic does not act on (a termination).
    OtherType,
    /// A second delivery of a healthy launch event already sent.
    Duplicate,
    /// Lab 002: a launch failed on a KMS key the Auto Scaling role may not use.
    FailingKms,
    /// Lab 000: an instance launched into a subnet with no route out.
    FailingRoute,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Healthy => "healthy launch",
            Kind::NotEks => "ignored: not EKS",
            Kind::OtherType => "ignored: other type",
            Kind::Duplicate => "duplicate",
            Kind::FailingKms => "failing: KMS (002)",
            Kind::FailingRoute => "failing: route (000)",
        }
    }

    /// The mix, repeating every 50 messages: 40 healthy, 4 not EKS, 1 other type, 3
    /// duplicates, 2 failing. The first 20 already hold one of each.
    fn at(index: usize) -> Kind {
        match index % 50 {
            0 => Kind::FailingKms,
            8 => Kind::FailingRoute,
            2 | 11 | 17 | 30 => Kind::NotEks,
            4 => Kind::OtherType,
            6 | 14 | 40 => Kind::Duplicate,
            _ => Kind::Healthy,
        }
    }
}

/// What [`feed`] sent: each SQS message id's kind and send time, and when the first wave went.
#[derive(Default)]
struct Fed {
    kinds: HashMap<String, Kind>,
    sent_at: HashMap<String, Instant>,
}

/// Sends `messages` in waves of [`WAVE`], never more than [`MAX_OUTSTANDING`] ahead of
/// `done()`; returns what it sent, and when the first wave went out.
async fn feed(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[Message],
    done: impl Fn() -> usize,
    sent_so_far: &AtomicUsize,
) -> (Fed, Instant) {
    let started = Instant::now();
    let mut fed = Fed::default();
    let mut progress = (done(), Instant::now());
    for (wave_number, wave) in messages.chunks(WAVE).enumerate() {
        let sent = wave_number * WAVE;
        while sent + wave.len() > done() + MAX_OUTSTANDING {
            tokio::time::sleep(Duration::from_millis(2)).await;
            stalled(&mut progress, done());
        }
        let mut batch = sqs.send_message_batch().queue_url(queue_url);
        for (position, message) in wave.iter().enumerate() {
            batch = batch.entries(
                SendMessageBatchRequestEntry::builder()
                    .id(position.to_string())
                    .message_body(&message.body)
                    .build()
                    .expect("a batch entry"),
            );
        }
        let sending = Instant::now();
        let output = batch.send().await.expect("SendMessageBatch");
        assert!(output.failed().is_empty(), "{:?}", output.failed());
        for entry in output.successful() {
            let position: usize = entry.id().parse().expect("our entry id");
            let message_id = entry.message_id().to_string();
            fed.kinds.insert(message_id.clone(), wave[position].kind);
            fed.sent_at.insert(message_id, sending);
        }
        sent_so_far.fetch_add(wave.len(), Ordering::SeqCst);
    }
    (fed, started)
}

/// Panics when `done` has not moved for [`STALL`].
fn stalled(progress: &mut (usize, Instant), done: usize) {
    if done != progress.0 {
        *progress = (done, Instant::now());
    }
    assert!(
        progress.1.elapsed() < STALL,
        "nothing handled for {} s (at {done})",
        STALL.as_secs()
    );
}

async fn wait_until(done: impl Fn() -> usize, total: usize) {
    let mut progress = (done(), Instant::now());
    while done() < total {
        tokio::time::sleep(Duration::from_millis(2)).await;
        stalled(&mut progress, done());
    }
}

/// Times the daemon's `message` spans: receipt to delete (or keep) of each message.
#[derive(Default)]
struct Handled {
    count: AtomicUsize,
    samples: Mutex<Vec<(String, Duration)>>,
    /// When each message's span opened: its receipt.
    received_at: Mutex<HashMap<String, Instant>>,
}

struct HandlingTimer(Arc<Handled>);

struct Started {
    message_id: String,
    at: Instant,
}

struct MessageId(String);

impl Visit for MessageId {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message_id" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S> Layer<S> for HandlingTimer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut message_id = MessageId(String::new());
        attributes.record(&mut message_id);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Started {
                message_id: message_id.0,
                at: Instant::now(),
            });
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if let Some(started) = span.extensions().get::<Started>() {
            let sample = (started.message_id.clone(), started.at.elapsed());
            self.0
                .received_at
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(started.message_id.clone(), started.at);
            self.0
                .samples
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(sample);
            self.0.count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn rss_kib(field: &str) -> u64 {
    status_kib("self", field)
}

/// A `/proc/<process>/status` figure in KiB (`VmRSS:`, `VmHWM:`); 0 when unreadable.
fn status_kib(process: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `nodemedic_aws_calls_total` by `service:Operation (outcome)`.
fn aws_calls() -> BTreeMap<String, u64> {
    Metrics::new()
        .encode()
        .lines()
        .filter_map(|line| line.strip_prefix("nodemedic_aws_calls_total{"))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once("} ")?;
            let label = |name: &str| {
                labels
                    .split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|v| v.split('"').next())
                    .unwrap_or("?")
                    .to_string()
            };
            let key = format!(
                "{}:{} ({})",
                label("service"),
                label("operation"),
                label("outcome")
            );
            Some((key, value.trim().parse().ok()?))
        })
        .collect()
}

/// The calls made since `before`, by `service:Operation (outcome)`.
fn calls_made(before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    aws_calls()
        .into_iter()
        .map(|(key, after)| {
            let made = after - before.get(&key).copied().unwrap_or(0);
            (key, made)
        })
        .filter(|(_, made)| *made > 0)
        .collect()
}

/// Calls per message: reading the world to investigate, then the fix's own (mutations, dry-run
/// permission checks, policy reviews), then the queue's; then by operation.
fn print_calls(calls: &BTreeMap<String, u64>, messages: usize) {
    let per_message = |n: u64| n as f64 / messages as f64;
    let total: u64 = calls.values().sum();
    let sum_where = |wanted: fn(&str) -> bool| -> u64 {
        calls
            .iter()
            .filter(|(key, _)| wanted(key))
            .map(|(_, made)| made)
            .sum()
    };
    let queue_calls = sum_where(|key| key.starts_with("sqs:"));
    let investigate_calls = sum_where(|key| !key.starts_with("sqs:") && reads_the_world(key));
    println!(
        "AWS calls per message: {:.2} ({:.2} to investigate, {:.2} to fix or check a fix, {:.2} SQS receive/delete/visibility)",
        per_message(total),
        per_message(investigate_calls),
        per_message(total - queue_calls - investigate_calls),
        per_message(queue_calls)
    );
    let mut by_operation: Vec<(&String, &u64)> = calls.iter().collect();
    by_operation.sort_by_key(|(_, made)| std::cmp::Reverse(**made));
    for (operation, made) in by_operation {
        println!(
            "    {operation:<55} {made:>6}  ({:.3}/message)",
            per_message(*made)
        );
    }
}

/// A call that only reads (`service:Describe…`, `Get…`, `List…`); anything else is a fix's:
/// a mutation, its dry run or a review of what it would write.
fn reads_the_world(key: &str) -> bool {
    let operation = key.split_once(':').map_or(key, |(_, operation)| operation);
    ["Describe", "Get", "List"]
        .iter()
        .any(|verb| operation.starts_with(verb))
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn messages_left(world: &World, queue_url: &str) -> u64 {
    depth(&world.clients.sqs, queue_url).await
}

/// Messages in a queue: waiting, in flight and delayed (moto counts them exactly).
async fn depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> u64 {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes");
    attributes
        .attributes()
        .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0)
}

/// What the audit trail says was done.
struct Recorded {
    dispositions: BTreeMap<String, i64>,
    event_ids: HashSet<String>,
    duplicates: i64,
    incidents: BTreeMap<String, i64>,
}

/// Aggregates straight from the SQLite file the run used (the store's interface answers per
/// incident; a benchmark wants totals).
fn recorded(audit_db: &std::path::Path) -> Recorded {
    let c = rusqlite::Connection::open(audit_db).expect("audit db");
    let pairs = |sql: &str| -> BTreeMap<String, i64> {
        let mut statement = c.prepare(sql).expect("query");
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let mut ids = c.prepare("SELECT event_id FROM events").expect("query");
    let event_ids = ids
        .query_map([], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    Recorded {
        dispositions: pairs("SELECT disposition, COUNT(*) FROM events GROUP BY disposition"),
        event_ids,
        duplicates: c
            .query_row(
                "SELECT COUNT(*) FROM records WHERE kind = 'event_duplicate'",
                [],
                |row| row.get(0),
            )
            .expect("count"),
        incidents: pairs("SELECT cause, COUNT(*) FROM incidents GROUP BY cause"),
    }
}

#[tokio::main]
async fn main() {
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let mode = storm::Mode::from_env();
    let count = if benchmarking {
        std::env::var("NODEMEDIC_SOAK_EVENTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(match mode {
                storm::Mode::Storm => STORM_EVENTS,
                _ => DEFAULT_EVENTS,
            })
    } else {
        SMOKE_EVENTS
    };
    let handled = Arc::new(Handled::default());
    let timer =
        HandlingTimer(handled.clone()).with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && meta.name() == "message" && meta.target().starts_with("nodemedic")
        }));
    let stage_times = Arc::new(Stages::default());
    let stage_timer = StageTimer(stage_times.clone())
        .with_filter(tracing_subscriber::filter::filter_fn(stages::wanted));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(timer).with(stage_timer),
    )
    .expect("the only subscriber");
    match mode {
        storm::Mode::Storm => return storm::storm(count, &stage_times).await,
        storm::Mode::Idle => return storm::idle().await,
        storm::Mode::Mix => {}
    }

    let setup = Instant::now();
    let world = build_world().await;
    let messages = messages(&world, count);
    let unique: HashSet<&str> = messages.iter().map(|m| m.event_id.as_str()).collect();
    let mut by_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    for message in &messages {
        *by_kind.entry(message.kind).or_default() += 1;
    }
    println!(
        "soak: {count} messages ({}), world built in {:.1} s",
        if benchmarking {
            "NODEMEDIC_SOAK_EVENTS to change"
        } else {
            "smoke run; `cargo bench --bench soak --profile dev` for the soak"
        },
        setup.elapsed().as_secs_f64()
    );
    println!(
        "fed in waves of {WAVE} (SendMessageBatch), at most {MAX_OUTSTANDING} sent but not yet handled: moto drains deep queues slowly (~9 msg/s with 5000 waiting, ~550 with 10 or fewer), so the queue is kept shallow for both runs"
    );
    println!(
        "mix: {}",
        by_kind
            .iter()
            .map(|(kind, n)| format!("{} {n}", kind.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The daemon, with the production defaults except dry-run and no join checks.
    let dir =
        std::env::temp_dir().join(format!("nodemedic-soak-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let audit_db: PathBuf = dir.join("audit.db");
    let mut env: HashMap<String, String> = [("NODEMEDIC_JOIN__DEADLINE_SECS", "0")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Any daemon setting given to the bench (a cache's ttl `=0` to measure what it saves,
    // `NODEMEDIC_INTAKE__MAX_IN_FLIGHT`, ...) reaches the daemon.
    env.extend(storm::daemon_settings_from_environment());
    let overrides = Overrides {
        queue_url: Some(world.queue.url.clone()),
        mode: Some("dry-run".into()),
        audit_db: Some(audit_db.clone()),
        config_file: None,
    };
    let settings = Settings::load_with_env(&overrides, Some(env)).expect("settings");
    let calls_before = aws_calls();
    let rss_before = rss_kib("VmRSS:");
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampling = CancellationToken::new();
    let sampler = {
        let (peak, stop) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                peak.fetch_max(rss_kib("VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let shutdown = nodemedic::shutdown::Shutdown::new();
    let daemon = tokio::spawn(nodemedic::daemon::run_with(
        settings,
        world.emulator.sdk_config(),
        false,
        shutdown.clone(),
        Default::default(),
    ));
    // Turns with the bare loop: the same messages, fed the same way.
    let turns = take_turns(&world, &messages, || handled.count.load(Ordering::SeqCst)).await;
    let kinds = &turns.kinds;
    let rss_after = rss_kib("VmRSS:");
    shutdown.request();
    let summary = daemon
        .await
        .expect("the daemon task")
        .expect("the daemon runs");
    sampling.cancel();
    let _ = sampler.await;

    // Every event handled, recorded, and gone from the queue.
    let left = messages_left(&world, &world.queue.url).await;
    let dead_lettered = messages_left(&world, &world.queue.dead_letter_url).await;
    let audit = recorded(&audit_db);
    let unrecorded: Vec<&&str> = unique
        .iter()
        .filter(|id| !audit.event_ids.contains(**id))
        .collect();
    let duplicates_sent = by_kind.get(&Kind::Duplicate).copied().unwrap_or(0) as i64;

    println!();
    println!(
        "{:<30} {:>9} {:>9} {:>9}",
        "throughput", "messages", "seconds", "msg/s"
    );
    for phase in [&turns.bare_loop, &turns.daemon] {
        println!(
            "{:<30} {:>9} {:>9.2} {:>9.1}",
            phase.name,
            messages.len(),
            phase.wall.as_secs_f64(),
            phase.rate()
        );
    }
    println!(
        "daemon: {:.2}x the loop (turns of {} messages each, who goes first alternating)",
        turns.daemon.rate() / turns.bare_loop.rate(),
        bare::SEGMENT
    );
    machine::print(&[turns.bare_loop, turns.daemon]);

    let samples = handled
        .samples
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut latencies: BTreeMap<Option<Kind>, Vec<Duration>> = BTreeMap::new();
    for (message_id, took) in &samples {
        latencies.entry(None).or_default().push(*took);
        if let Some(kind) = kinds.get(message_id) {
            latencies.entry(Some(*kind)).or_default().push(*took);
        }
    }
    println!();
    println!(
        "{:<30} {:>7} {:>9} {:>9} {:>9}",
        "handling latency (receipt to delete)", "count", "p50 ms", "p99 ms", "max ms"
    );
    for (kind, mut took) in latencies {
        took.sort();
        println!(
            "{:<30} {:>7} {:>9.1} {:>9.1} {:>9.1}",
            kind.map(Kind::name).unwrap_or("all messages"),
            took.len(),
            ms(percentile(&took, 0.50)),
            ms(percentile(&took, 0.99)),
            ms(took.last().copied().unwrap_or_default())
        );
    }
    // What the receive's wait for free handler slots (intake.receive_batch_wait_ms) costs.
    let received_at = handled
        .received_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut in_queue: Vec<Duration> = received_at
        .iter()
        .filter_map(|(id, at)| Some(at.saturating_duration_since(*turns.sent_at.get(id)?)))
        .collect();
    in_queue.sort();
    println!(
        "{:<30} {:>7} {:>9.1} {:>9.1} {:>9.1}",
        "in the queue (send to receipt)",
        in_queue.len(),
        ms(percentile(&in_queue, 0.50)),
        ms(percentile(&in_queue, 0.99)),
        ms(in_queue.last().copied().unwrap_or_default())
    );

    println!();
    stages::print_breakdown(&stage_times, kinds);
    stages::print_slowest(&stage_times, kinds, &samples, Kind::Healthy);

    println!();
    println!(
        "RSS of this process (daemon, feeder, clients): before {:.1} MiB, after {:.1} MiB, peak during {:.1} MiB",
        mib(rss_before),
        mib(rss_after),
        mib(peak.load(Ordering::Relaxed).max(rss_after))
    );

    print_calls(&calls_made(&calls_before), messages.len());

    println!();
    println!(
        "daemon: received {}, deleted {}, kept {}, receive errors {}",
        summary.received, summary.deleted, summary.kept, summary.receive_errors
    );
    println!(
        "audit: events by disposition {:?}; duplicate deliveries recorded {}; incidents by cause {:?}",
        audit.dispositions, audit.duplicates, audit.incidents
    );
    println!("queue: {left} message(s) left, {dead_lettered} dead-lettered");

    assert!(
        unrecorded.is_empty(),
        "events never recorded: {unrecorded:?}"
    );
    assert_eq!(
        audit.duplicates, duplicates_sent,
        "every duplicate is recorded as one"
    );
    assert_eq!(
        summary.deleted,
        messages.len() as u64,
        "every message deleted"
    );
    assert_eq!(summary.kept, 0, "no message kept for redelivery");
    assert_eq!(left + dead_lettered, 0, "the queue is empty");
    assert_eq!(samples.len(), messages.len(), "every message timed once");
    println!("every event handled and recorded; the queue is empty.");
}
