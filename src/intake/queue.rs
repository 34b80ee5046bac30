//! The SQS loop: long-polls, hands each message to the pipeline with bounded concurrency, keeps
//! a message invisible while it is worked on, and deletes it only when the pipeline says its
//! outcome is recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::deletes::{DeleteQueue, Deletes};
use super::{Disposition, Inbound, KeepKind, MessageHandler, deletes};
use crate::aws::{AwsError, AwsResultExt};
use crate::settings::IntakeSettings;
use crate::shutdown::Shutdown;
use crate::telemetry::health::Readiness;
use crate::telemetry::metrics::Metrics;

/// What one run of the loop did.
#[derive(Debug, Default)]
pub struct IntakeStats {
    pub received: AtomicU64,
    pub deleted: AtomicU64,
    pub kept: AtomicU64,
    pub receive_errors: AtomicU64,
}

impl IntakeStats {
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.deleted.load(Ordering::Relaxed),
            self.kept.load(Ordering::Relaxed),
            self.receive_errors.load(Ordering::Relaxed),
        )
    }
}

pub struct QueueLoop {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub settings: IntakeSettings,
    pub handler: Arc<dyn MessageHandler>,
    pub stats: Arc<IntakeStats>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// The queue's redrive `maxReceiveCount`, when known: a message kept on that receive is
    /// dead-lettered.
    pub max_receives: Option<u32>,
    /// Requested: receive no more; overdue (set here when the grace period runs out): the
    /// handlers stop work in flight.
    pub shutdown: Shutdown,
}

/// How many messages the queue holds: waiting, in flight (received, not yet deleted), delayed.
/// SQS's own counts, which are approximate.
pub async fn depth(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<(u64, u64, u64), AwsError> {
    use aws_sdk_sqs::types::QueueAttributeName as Name;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(Name::ApproximateNumberOfMessages)
        .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(Name::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .op("sqs:GetQueueAttributes")?;
    let count = |name: Name| {
        attributes
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((
        count(Name::ApproximateNumberOfMessages),
        count(Name::ApproximateNumberOfMessagesNotVisible),
        count(Name::ApproximateNumberOfMessagesDelayed),
    ))
}

/// The `maxReceiveCount` of a queue's redrive policy; `None` without one or when it cannot be
/// read (the metric of dead-lettered messages then stays at zero).
pub async fn max_receives(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Option<u32> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .op("sqs:GetQueueAttributes")
        .map_err(|error| debug!(%error, "the redrive policy could not be read"))
        .ok()?;
    let policy = attributes
        .attributes()?
        .get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)?;
    let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
    match &policy["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl QueueLoop {
    /// Runs until a stop is requested, or, with `once`, until a receive finds the queue empty
    /// and nothing is in flight. In-flight messages always finish before this returns.
    pub async fn run(&self, once: bool) {
        let shutdown = self.shutdown.requested();
        let deletes = Deletes::start(deletes::Target {
            sqs: self.sqs.clone(),
            queue_url: self.queue_url.clone(),
            stats: self.stats.clone(),
            metrics: self.metrics.clone(),
            batch_wait: Duration::from_millis(self.settings.delete_batch_wait_ms),
        });
        let slots = Arc::new(Semaphore::new(self.settings.max_in_flight));
        let tasks = TaskTracker::new();
        // A drain-once run should not sit in a 20 s long poll on an empty queue.
        let wait = if once {
            self.settings.wait_time_secs.min(1)
        } else {
            self.settings.wait_time_secs
        };
        let mut backoff = Duration::from_millis(500);
        let most = self.settings.max_messages.clamp(1, 10) as usize;
        loop {
            let Some(mut free) = self.free_slots(&slots, most).await else {
                break;
            };
            let batch = free.len() as i32;
            let received = tokio::select! {
                received = self.receive(batch, wait) => received,
                _ = shutdown.cancelled() => break,
            };
            let messages = match received {
                Ok(messages) => {
                    backoff = Duration::from_millis(500);
                    self.readiness.received();
                    messages
                }
                Err(error) => {
                    self.stats.receive_errors.fetch_add(1, Ordering::Relaxed);
                    self.metrics.receive_errors.inc();
                    self.readiness.receive_failed(&error.to_string());
                    warn!(%error, retry_in_ms = backoff.as_millis() as u64, "receive failed");
                    drop(free);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {},
                        _ = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            if messages.is_empty() {
                drop(free);
                if once && tasks.is_empty() {
                    debug!("queue empty and nothing in flight");
                    break;
                }
                if once {
                    // Let in-flight work finish before deciding the queue is drained.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
            self.stats
                .received
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            self.metrics.messages_received.inc_by(messages.len() as u64);
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let mut oldest_ms = None;
            for message in &messages {
                if let Some(sent) = message
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|t| t.parse::<i64>().ok())
                {
                    let age_ms = (now_ms - sent).max(0);
                    self.metrics
                        .message_age_seconds
                        .observe(age_ms as f64 / 1000.0);
                    oldest_ms = oldest_ms.max(Some(age_ms));
                }
            }
            if let Some(age_ms) = oldest_ms {
                self.readiness
                    .message_age(Duration::from_millis(age_ms as u64));
            }
            for message in messages {
                // A slot was set aside for each message asked for; should SQS send more, the
                // rest wait for one.
                let slot = match free.pop() {
                    Some(slot) => slot,
                    None => tokio::select! {
                        biased;
                        // Not started: back to the queue at once, for another replica.
                        _ = shutdown.cancelled() => {
                            self.hand_back(&message).await;
                            continue;
                        }
                        slot = slots.clone().acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => break,
                        },
                    },
                };
                let worker = Worker {
                    sqs: self.sqs.clone(),
                    queue_url: self.queue_url.clone(),
                    visibility_timeout: self.settings.visibility_timeout_secs,
                    handler: self.handler.clone(),
                    deletes: deletes.queue(),
                    stats: self.stats.clone(),
                    metrics: self.metrics.clone(),
                    max_receives: self.max_receives,
                };
                tasks.spawn(async move {
                    worker.work(message).await;
                    drop(slot);
                });
            }
        }
        tasks.close();
        let grace = Duration::from_secs(self.settings.shutdown_grace_secs);
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            warn!(
                grace_secs = grace.as_secs(),
                in_flight = tasks.len(),
                "shutdown grace period over: stopping work in flight between steps"
            );
            self.shutdown.give_up();
            // Each handler stops at its next step or wait, records nothing it did not do, and
            // hands its message back; an AWS call already under way is let finish.
            if tokio::time::timeout(Duration::from_secs(15), tasks.wait())
                .await
                .is_err()
            {
                warn!(
                    in_flight = tasks.len(),
                    "handlers did not stop; exiting anyway"
                );
            }
        }
        deletes.finish(Duration::from_secs(10)).await;
    }

    /// The slots the next receive fills, at most `most`; `None` once a stop is requested.
    ///
    /// A receive costs one call however many messages it brings, so when handlers free their
    /// slots one at a time (a backlog worked at full concurrency) this waits up to
    /// `intake.receive_batch_wait_ms` for three quarters of them rather than receiving a
    /// message or two per call. An idle loop has every slot free and never waits; the wait is
    /// spent in the queue, before receipt, by messages that had no free slot anyway.
    async fn free_slots(
        &self,
        slots: &Arc<Semaphore>,
        most: usize,
    ) -> Option<Vec<OwnedSemaphorePermit>> {
        let shutdown = self.shutdown.requested();
        let acquire = || async {
            tokio::select! {
                slot = slots.clone().acquire_owned() => slot.ok(),
                _ = shutdown.cancelled() => None,
            }
        };
        let mut free = vec![acquire().await?];
        let wanted = (self.settings.max_in_flight.min(most) * 3).div_ceil(4);
        let fill_wait = Duration::from_millis(self.settings.receive_batch_wait_ms);
        if free.len() + slots.available_permits() < wanted && !fill_wait.is_zero() {
            let deadline = tokio::time::Instant::now() + fill_wait;
            while free.len() < wanted {
                tokio::select! {
                    slot = acquire() => free.push(slot?),
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        while free.len() < most {
            match slots.clone().try_acquire_owned() {
                Ok(slot) => free.push(slot),
                Err(_) => break,
            }
        }
        Some(free)
    }

    /// Makes a message visible again at once.
    async fn hand_back(&self, message: &Message) {
        if let Some(receipt) = message.receipt_handle() {
            hand_back(&self.sqs, &self.queue_url, receipt).await;
        }
    }

    async fn receive(&self, batch: i32, wait: u64) -> Result<Vec<Message>, AwsError> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(batch.clamp(1, 10))
            .wait_time_seconds(wait as i32)
            .visibility_timeout(self.settings.visibility_timeout_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .op("sqs:ReceiveMessage")?;
        Ok(output.messages.unwrap_or_default())
    }
}

struct Worker {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    visibility_timeout: i32,
    handler: Arc<dyn MessageHandler>,
    deletes: DeleteQueue,
    stats: Arc<IntakeStats>,
    metrics: Arc<Metrics>,
    max_receives: Option<u32>,
}

impl Worker {
    async fn work(self, message: Message) {
        let inbound = Inbound {
            message_id: message.message_id().map(str::to_string),
            body: message.body().unwrap_or_default().to_string(),
            receive_count: message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|count| count.parse().ok())
                .unwrap_or(1),
        };
        let Some(receipt) = message.receipt_handle().map(str::to_string) else {
            warn!(
                message_id = inbound.message_id.as_deref().unwrap_or(""),
                "message without a receipt handle"
            );
            return;
        };
        let span = info_span!(
            "message",
            message_id = inbound.message_id.as_deref().unwrap_or(""),
            receive_count = inbound.receive_count
        );
        async {
            let started = std::time::Instant::now();
            let heartbeat = CancellationToken::new();
            let extender = tokio::spawn(extend_visibility(
                self.sqs.clone(),
                self.queue_url.clone(),
                receipt.clone(),
                self.visibility_timeout,
                heartbeat.clone(),
            ));
            let disposition = self.handler.handle(&inbound).await;
            heartbeat.cancel();
            let _ = extender.await;
            match disposition {
                Disposition::Delete => {
                    crate::faults::crash_point("before_delete", None);
                    // The outcome is durable: the delete itself is batched with others', and
                    // this worker's slot is free for the next message meanwhile.
                    if !self
                        .deletes
                        .hand_over(receipt)
                        .instrument(info_span!("delete"))
                        .await
                    {
                        warn!("the deleting task is gone; the message comes back as a duplicate");
                    }
                    self.metrics
                        .handled("deleted", started.elapsed().as_secs_f64());
                }
                Disposition::Keep {
                    kind: KeepKind::ShuttingDown,
                    ..
                } => {
                    hand_back(&self.sqs, &self.queue_url, &receipt).await;
                    self.metrics.kept(KeepKind::ShuttingDown.as_str());
                }
                Disposition::Keep { reason, kind } => {
                    self.stats.kept.fetch_add(1, Ordering::Relaxed);
                    self.metrics.kept(kind.as_str());
                    self.metrics.handled("kept", started.elapsed().as_secs_f64());
                    let last_try = self
                        .max_receives
                        .is_some_and(|max| inbound.receive_count >= max);
                    if last_try {
                        self.metrics.messages_dead_lettered.inc();
                        warn!(%reason, "message kept on its last allowed receive: the queue dead-letters it");
                    } else {
                        info!(%reason, "message kept for redelivery");
                    }
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// Keeps a message hidden while it is worked on, renewing a third of the way into each timeout.
async fn extend_visibility(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    receipt: String,
    timeout_secs: i32,
    done: CancellationToken,
) {
    let every = Duration::from_secs((timeout_secs.max(3) / 3) as u64);
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let extended = sqs
            .change_message_visibility()
            .queue_url(&queue_url)
            .receipt_handle(&receipt)
            .visibility_timeout(timeout_secs)
            .send()
            .await
            .op("sqs:ChangeMessageVisibility");
        match extended {
            Ok(_) => debug!(timeout_secs, "visibility extended"),
            Err(error) => {
                warn!(%error, "could not extend visibility; the message may be delivered again")
            }
        }
    }
}

/// Makes a message visible again at once, so that another replica (or this one, restarted)
/// takes it up without waiting out its visibility timeout.
async fn hand_back(sqs: &aws_sdk_sqs::Client, queue_url: &str, receipt: &str) {
    let handed = sqs
        .change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(receipt)
        .visibility_timeout(0)
        .send()
        .await
        .op("sqs:ChangeMessageVisibility");
    match handed {
        Ok(_) => info!("message handed back to the queue"),
        Err(error) => {
            warn!(%error, "message could not be handed back; it returns after its visibility timeout")
        }
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
