//! Deleting handled messages in batches. A worker whose message's outcome is recorded hands the
//! receipt over and takes the next message; this task sends the receipts as DeleteMessageBatch
//! calls of up to ten. A batch goes out when it is full or when its first receipt has waited
//! `intake.delete_batch_wait_ms`, whichever is first, so a storm costs a tenth of the calls and
//! a lone message waits a few milliseconds at most; the message stays hidden meanwhile. A crash between the hand-over and the batch is a crash before
//! the delete: the message comes back, and its event id is recorded, so it is a duplicate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, warn};

use super::queue::IntakeStats;
use crate::aws::AwsResultExt;
use crate::telemetry::metrics::Metrics;

/// SQS's limit of entries per DeleteMessageBatch.
pub const MAX_BATCH: usize = 10;
/// Batches out at once: enough to keep up with a storm over a slow link, few enough that a
/// throttled queue is not flooded.
const SENDING_SLOTS: usize = 4;
/// Tries per receipt, as for a single delete before batching.
const ATTEMPTS: u32 = 3;
/// Receipts waiting beyond this make the workers wait in turn, so that a queue that stopped
/// answering holds back receiving instead of piling up receipts.
const WAITING: usize = 1000;

/// Where workers hand over receipts; cloned into each worker.
#[derive(Clone)]
pub struct DeleteQueue(mpsc::Sender<String>);

impl DeleteQueue {
    /// Hands a receipt over for deletion. Returns false only when the deleting task is gone,
    /// which leaves the message to come back as a duplicate.
    pub async fn hand_over(&self, receipt: String) -> bool {
        self.0.send(receipt).await.is_ok()
    }
}

/// The deleting task.
pub struct Deletes {
    queue: DeleteQueue,
    task: JoinHandle<()>,
}

/// What the deleting task needs of the queue loop.
#[derive(Clone)]
pub struct Target {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub stats: Arc<IntakeStats>,
    pub metrics: Arc<Metrics>,
    /// How long the first receipt of a batch waits for others (`intake.delete_batch_wait_ms`).
    pub batch_wait: Duration,
}

impl Deletes {
    pub fn start(target: Target) -> Deletes {
        let (sender, receiver) = mpsc::channel(WAITING);
        Deletes {
            queue: DeleteQueue(sender),
            task: tokio::spawn(send_batches(receiver, target)),
        }
    }

    pub fn queue(&self) -> DeleteQueue {
        self.queue.clone()
    }

    /// Sends every receipt handed over so far and waits, at most `within`, for the answers.
    /// Receipts not deleted by then come back to the queue and are recorded as duplicates.
    pub async fn finish(self, within: Duration) {
        let Deletes { queue, mut task } = self;
        drop(queue);
        if tokio::time::timeout(within, &mut task).await.is_err() {
            warn!(
                within_secs = within.as_secs(),
                "deletes still out at exit; those messages come back as duplicates"
            );
            task.abort();
        }
    }
}

async fn send_batches(mut receipts: mpsc::Receiver<String>, target: Target) {
    let slots = Arc::new(Semaphore::new(SENDING_SLOTS));
    let sending = TaskTracker::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some(first) = receipts.recv().await else {
            break;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        let full_or_due = tokio::time::Instant::now() + target.batch_wait;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(full_or_due, receipts.recv()).await {
                Ok(Some(receipt)) => batch.push(receipt),
                // Closed (the loop is stopping) or due: send what there is.
                Ok(None) | Err(_) => break,
            }
        }
        let target = target.clone();
        let size = batch.len();
        sending.spawn(
            async move {
                delete_batch(&target, batch).await;
                drop(slot);
            }
            .instrument(info_span!("delete_batch", size)),
        );
    }
    sending.close();
    sending.wait().await;
}

/// Deletes one batch, trying each receipt that failed again, up to [`ATTEMPTS`] in all.
async fn delete_batch(target: &Target, mut receipts: Vec<String>) {
    for attempt in 1..=ATTEMPTS {
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .iter()
            .enumerate()
            .filter_map(|(index, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .ok()
            })
            .collect();
        let answered = target
            .sqs
            .delete_message_batch()
            .queue_url(&target.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            // Labels are IAM actions: a batch is authorised, and counted, as sqs:DeleteMessage.
            .op("sqs:DeleteMessage");
        match answered {
            Ok(output) => {
                let deleted = output.successful().len() as u64;
                target.stats.deleted.fetch_add(deleted, Ordering::Relaxed);
                target.metrics.messages_deleted.inc_by(deleted);
                let failed: Vec<usize> = output
                    .failed()
                    .iter()
                    .filter_map(|entry| {
                        if entry.sender_fault() {
                            // A receipt SQS will never accept (expired, or already deleted):
                            // trying it again changes nothing.
                            warn!(
                                code = entry.code(),
                                message = entry.message().unwrap_or(""),
                                "delete refused; the message comes back as a duplicate"
                            );
                            return None;
                        }
                        entry.id().parse().ok()
                    })
                    .collect();
                if failed.is_empty() {
                    return;
                }
                receipts = failed
                    .into_iter()
                    .filter_map(|index| receipts.get(index).cloned())
                    .collect();
                warn!(
                    attempt,
                    failed = receipts.len(),
                    "some deletes failed; trying them again"
                );
            }
            Err(error) => warn!(%error, attempt, size = receipts.len(), "delete failed"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
    }
    debug!(
        left = receipts.len(),
        "deletes given up; those messages come back as duplicates"
    );
}

#[cfg(test)]
mod tests {
    use aws_config::{BehaviorVersion, Region};
    use aws_credential_types::Credentials;
    use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
    use aws_sdk_sqs::types::{BatchResultErrorEntry, DeleteMessageBatchResultEntry};
    use aws_smithy_mocks::{
        MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock,
    };

    use super::*;

    fn sqs(rules: &[&Rule]) -> aws_sdk_sqs::Client {
        let interceptor = rules.iter().fold(
            MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
            |i, rule| i.with_rule(rule),
        );
        aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-west-2"))
                .credentials_provider(Credentials::new("test", "test", None, None, "mocks"))
                .http_client(create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        )
    }

    fn target(sqs: aws_sdk_sqs::Client) -> Target {
        Target {
            sqs,
            queue_url: "https://sqs.us-west-2.amazonaws.com/123456789012/q".into(),
            stats: Arc::new(IntakeStats::default()),
            metrics: Arc::new(Metrics::new()),
            batch_wait: Duration::from_millis(20),
        }
    }

    /// Answers every entry as deleted, except receipts starting with `refuse` (a sender fault)
    /// or `flaky` (a server fault, the first time only).
    fn answering() -> Rule {
        let flaked = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        mock!(aws_sdk_sqs::Client::delete_message_batch).then_compute_output(move |input| {
            let (mut successful, mut failed) = (Vec::new(), Vec::new());
            for entry in input.entries() {
                let receipt = entry.receipt_handle();
                let first_time = flaked
                    .lock()
                    .map(|mut seen| seen.insert(receipt.to_string()))
                    .unwrap_or(false);
                let fault = if receipt.starts_with("refuse") {
                    Some(true)
                } else if receipt.starts_with("flaky") && first_time {
                    Some(false)
                } else {
                    None
                };
                match fault {
                    Some(sender_fault) => failed.push(
                        BatchResultErrorEntry::builder()
                            .id(entry.id())
                            .sender_fault(sender_fault)
                            .code(if sender_fault {
                                "ReceiptHandleIsInvalid"
                            } else {
                                "InternalError"
                            })
                            .build()
                            .expect("an error entry"),
                    ),
                    None => successful.push(
                        DeleteMessageBatchResultEntry::builder()
                            .id(entry.id())
                            .build()
                            .expect("a result entry"),
                    ),
                }
            }
            DeleteMessageBatchOutput::builder()
                .set_successful(Some(successful))
                .set_failed(Some(failed))
                .build()
                .expect("an output")
        })
    }

    #[tokio::test]
    async fn receipts_handed_over_together_go_out_in_batches_of_ten() {
        let rule = answering();
        let target = target(sqs(&[&rule]));
        let deletes = Deletes::start(target.clone());
        let queue = deletes.queue();
        // 25 handed over together: batches of ten, not a call each.
        for n in 0..25 {
            assert!(queue.hand_over(format!("receipt-{n}")).await);
        }
        deletes.finish(Duration::from_secs(5)).await;
        assert_eq!(target.stats.deleted.load(Ordering::Relaxed), 25);
        assert_eq!(target.metrics.messages_deleted.get(), 25);
        assert_eq!(rule.num_calls(), 3, "25 receipts, three calls");
    }

    #[tokio::test]
    async fn a_lone_receipt_waits_no_longer_than_the_batch_wait() {
        let rule = answering();
        let target = target(sqs(&[&rule]));
        let deletes = Deletes::start(target.clone());
        assert!(deletes.queue().hand_over("receipt-alone".into()).await);
        // Not held until the exit: sent once its 20 ms are up (1 s is for a loaded machine).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while target.stats.deleted.load(Ordering::Relaxed) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "held back waiting for company"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(rule.num_calls(), 1);
        deletes.finish(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn a_server_fault_is_tried_again_and_a_refused_receipt_is_not() {
        let rule = answering();
        let target = target(sqs(&[&rule]));
        let deletes = Deletes::start(target.clone());
        let queue = deletes.queue();
        for receipt in ["receipt-a", "flaky-b", "refuse-c", "receipt-d"] {
            assert!(queue.hand_over(receipt.into()).await);
        }
        deletes.finish(Duration::from_secs(5)).await;
        // a, d and b (on its second try) deleted; c refused for good, tried once.
        assert_eq!(target.stats.deleted.load(Ordering::Relaxed), 3);
        assert!(rule.num_calls() <= 3, "{} calls", rule.num_calls());
    }

    #[tokio::test]
    async fn a_queue_that_does_not_answer_does_not_hold_up_the_exit() {
        let rule = mock!(aws_sdk_sqs::Client::delete_message_batch).then_error(|| {
            aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchError::unhandled(
                "the queue is unreachable",
            )
        });
        let target = target(sqs(&[&rule]));
        let deletes = Deletes::start(target.clone());
        assert!(deletes.queue().hand_over("receipt".into()).await);
        let started = std::time::Instant::now();
        deletes.finish(Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(6));
        assert_eq!(target.stats.deleted.load(Ordering::Relaxed), 0);
        assert_eq!(rule.num_calls(), ATTEMPTS as usize, "tried, then given up");
    }
}
