//! Where a message's time goes: the wall time of each stage span the daemon opens inside a
//! message's `message` span (pipeline stages, the store's commits, the delete), summed per
//! message, and this process's CPU time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::{Kind, ms};

/// In handling order; `store_write` is time spent inside the stages before it, not after them.
pub const STAGES: [&str; 8] = [
    "admit",
    "locate",
    "lock",
    "earlier_work",
    "examine",
    "judge",
    "delete",
    "store_write",
];

/// Per SQS message id: time per stage.
#[derive(Default)]
pub struct Stages {
    pub by_message: Mutex<HashMap<String, BTreeMap<&'static str, Duration>>>,
}

pub struct StageTimer(pub Arc<Stages>);

struct OfMessage(String);

struct StageStarted {
    name: &'static str,
    at: Instant,
}

struct MessageIdField(String);

impl Visit for MessageIdField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message_id" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// The spans this layer times: a message, and the stages inside it.
pub fn wanted(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span()
        && meta.target().starts_with("nodemedic")
        && (meta.name() == "message" || STAGES.contains(&meta.name()))
}

impl<S> Layer<S> for StageTimer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let name = attributes.metadata().name();
        if name == "message" {
            let mut message_id = MessageIdField(String::new());
            attributes.record(&mut message_id);
            span.extensions_mut().insert(OfMessage(message_id.0));
        } else {
            span.extensions_mut().insert(StageStarted {
                name,
                at: Instant::now(),
            });
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some((name, took)) = span
            .extensions()
            .get::<StageStarted>()
            .map(|started| (started.name, started.at.elapsed()))
        else {
            return;
        };
        let Some(message_id) = span
            .scope()
            .skip(1)
            .find_map(|parent| parent.extensions().get::<OfMessage>().map(|m| m.0.clone()))
        else {
            return;
        };
        let mut by_message = self.0.by_message.lock().unwrap_or_else(|p| p.into_inner());
        *by_message
            .entry(message_id)
            .or_default()
            .entry(name)
            .or_default() += took;
    }
}

/// User plus system CPU time so far of `process` (a pid, or `self`), from its
/// `/proc/<process>/stat` at the usual 100 ticks per second; zero when unreadable.
pub fn cpu_time_of(process: &str) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{process}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user: u64 = fields.get(11)?.parse().ok()?;
            let system: u64 = fields.get(12)?.parse().ok()?;
            Some(user + system)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Prints the mean wall time per stage of each kind of message (SQS message id to kind).
pub fn print_breakdown(stages: &Stages, kinds: &HashMap<String, Kind>) {
    let by_message = stages
        .by_message
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    println!(
        "where the time goes, mean ms per message (wall time; store_write is inside the stages before it):"
    );
    print!("{:<22}", "kind");
    for stage in STAGES {
        print!(" {stage:>12}");
    }
    println!();
    let mut kinds_seen: BTreeMap<Kind, (usize, BTreeMap<&str, Duration>)> = BTreeMap::new();
    for (message_id, stages) in &by_message {
        let Some(kind) = kinds.get(message_id) else {
            continue;
        };
        let (count, sums) = kinds_seen.entry(*kind).or_default();
        *count += 1;
        for (stage, took) in stages {
            *sums.entry(stage).or_default() += *took;
        }
    }
    for (kind, (count, sums)) in &kinds_seen {
        print!("{:<22}", kind.name());
        for stage in STAGES {
            let sum = sums.get(stage).copied().unwrap_or_default();
            print!(" {:>12.2}", ms(sum) / *count as f64);
        }
        println!();
    }
}

/// Prints the stages of the slowest messages of `kind` (its slowest 1%, at least three): where
/// a tail comes from, which a mean per stage hides. "outside" is the message's time not spent in
/// any stage span (receiving it into the pool, waiting for a worker, between stages).
pub fn print_slowest(
    stages: &Stages,
    kinds: &HashMap<String, Kind>,
    samples: &[(String, Duration)],
    kind: Kind,
) {
    let by_message = stages.by_message.lock().unwrap_or_else(|p| p.into_inner());
    let mut of_kind: Vec<&(String, Duration)> = samples
        .iter()
        .filter(|(message_id, _)| kinds.get(message_id) == Some(&kind))
        .collect();
    of_kind.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
    let shown = (of_kind.len() / 100).max(3).min(of_kind.len());
    println!(
        "the slowest {shown} of {} ({}), ms:",
        of_kind.len(),
        kind.name()
    );
    print!("{:>10}", "total");
    for stage in STAGES {
        print!(" {stage:>12}");
    }
    println!(" {:>12}", "outside");
    for (message_id, took) in of_kind.into_iter().take(shown) {
        let empty = BTreeMap::new();
        let its = by_message.get(message_id).unwrap_or(&empty);
        print!("{:>10.1}", ms(*took));
        for stage in STAGES {
            print!(" {:>12.1}", ms(its.get(stage).copied().unwrap_or_default()));
        }
        // store_write is inside the other stages, so it is not subtracted again.
        let staged: Duration = its
            .iter()
            .filter(|(stage, _)| **stage != "store_write")
            .map(|(_, took)| *took)
            .sum();
        println!(" {:>12.1}", ms(took.saturating_sub(staged)));
    }
}
