//! How the loop sets aside slots for its next receive: each test lets handlers finish at chosen
//! moments and checks how many messages the receive then asks for. No test asserts how fast.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use std::time::Instant;

use super::*;

struct NeverCalled;

#[async_trait::async_trait]
impl MessageHandler for NeverCalled {
    async fn handle(&self, _: &Inbound) -> Disposition {
        Disposition::Delete
    }
}

/// A loop of four handler slots, receiving up to ten, waiting up to `wait_ms` to fill a receive.
fn queue_loop(wait_ms: u64) -> QueueLoop {
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-west-2"))
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .build(),
    );
    QueueLoop {
        sqs,
        queue_url: "https://sqs.us-west-2.amazonaws.com/123456789012/q".into(),
        settings: IntakeSettings {
            wait_time_secs: 20,
            max_messages: 10,
            visibility_timeout_secs: 120,
            max_in_flight: 4,
            shutdown_grace_secs: 5,
            delete_batch_wait_ms: 20,
            receive_batch_wait_ms: wait_ms,
        },
        handler: Arc::new(NeverCalled),
        stats: Arc::new(IntakeStats::default()),
        metrics: Arc::new(Metrics::new()),
        readiness: Arc::new(Readiness::new(Duration::from_secs(60))),
        max_receives: None,
        shutdown: Shutdown::new(),
    }
}

/// Four slots, all held by handlers at work.
async fn all_busy() -> (Arc<Semaphore>, Vec<OwnedSemaphorePermit>) {
    let slots = Arc::new(Semaphore::new(4));
    let busy = slots
        .clone()
        .acquire_many_owned(4)
        .await
        .expect("four slots");
    let mut busy = busy;
    let mut each = Vec::new();
    while let Some(one) = busy.split(1) {
        each.push(one);
    }
    (slots, each)
}

/// A handler still at work when the test ends.
const HELD: u64 = 3_600_000;

/// Lets the handlers holding `busy` finish after the given delays (ms) from now.
fn finish_after(busy: Vec<OwnedSemaphorePermit>, delays_ms: &[u64]) {
    for (slot, delay) in busy.into_iter().zip(delays_ms) {
        let delay = Duration::from_millis(*delay);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            drop(slot);
        });
    }
}

#[tokio::test]
async fn an_idle_loop_asks_for_every_free_slot_at_once() {
    let slots = Arc::new(Semaphore::new(4));
    let free = queue_loop(10_000)
        .free_slots(&slots, 10)
        .await
        .expect("slots");
    assert_eq!(free.len(), 4);
}

#[tokio::test]
async fn a_busy_loop_waits_for_three_of_four_slots_instead_of_receiving_one_message() {
    let (slots, busy) = all_busy().await;
    finish_after(busy, &[1, 5, 8, HELD]);
    let free = queue_loop(10_000)
        .free_slots(&slots, 10)
        .await
        .expect("slots");
    assert_eq!(
        free.len(),
        3,
        "one receive for three messages, not three receives"
    );
}

#[tokio::test]
async fn the_wait_for_more_slots_ends_after_the_batch_wait() {
    let (slots, busy) = all_busy().await;
    finish_after(busy, &[1, HELD, HELD, HELD]);
    let started = Instant::now();
    let free = queue_loop(50).free_slots(&slots, 10).await.expect("slots");
    assert_eq!(free.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn no_wait_when_turned_off_or_when_a_receive_may_bring_one_message() {
    let (slots, busy) = all_busy().await;
    finish_after(busy, &[1, 1_000, 1_000, HELD]);
    let free = queue_loop(0).free_slots(&slots, 10).await.expect("slots");
    assert_eq!(free.len(), 1);

    let (slots, busy) = all_busy().await;
    finish_after(busy, &[1, 1_000, 1_000, HELD]);
    let free = queue_loop(10_000)
        .free_slots(&slots, 1)
        .await
        .expect("slots");
    assert_eq!(free.len(), 1);
}

#[tokio::test]
async fn a_stop_requested_during_the_wait_ends_it_without_a_receive() {
    let queue_loop = queue_loop(10_000);
    let (slots, busy) = all_busy().await;
    finish_after(busy, &[1, HELD, HELD, HELD]);
    let shutdown = queue_loop.shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        shutdown.request();
    });
    assert!(queue_loop.free_slots(&slots, 10).await.is_none());
}
