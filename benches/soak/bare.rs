//! The bare receive-and-delete loop the daemon is measured against, on a queue of its own, fed
//! the same messages the same way, and the turns the two take on the emulator.

use super::*;

/// The floor the emulator sets: receive (long poll, up to 10) and delete each, one at a time.
async fn bare_loop(sqs: aws_sdk_sqs::Client, queue_url: String, deleted: Arc<AtomicUsize>) {
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(20)
            .visibility_timeout(120)
            .send()
            .await
            .expect("ReceiveMessage");
        for message in received.messages() {
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(message.receipt_handle().expect("a receipt handle"))
                .send()
                .await
                .expect("DeleteMessage");
            deleted.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The bare loop's time for `messages`, fed as the daemon is fed, on the baseline queue.
pub(super) async fn baseline(world: &World, messages: &[Message]) -> Duration {
    let sqs = &world.clients.sqs;
    let baseline_url = world.baseline_queue.url.clone();
    let deleted = Arc::new(AtomicUsize::new(0));
    let looping = tokio::spawn(bare_loop(
        sqs.clone(),
        baseline_url.clone(),
        deleted.clone(),
    ));
    let done = || deleted.load(Ordering::SeqCst);
    let (_, loop_started) = feed(sqs, &baseline_url, messages, done, &AtomicUsize::new(0)).await;
    wait_until(done, messages.len()).await;
    let loop_took = loop_started.elapsed();
    looping.abort();
    let _ = looping.await;
    assert_the_loop_emptied(world, &baseline_url).await;
    loop_took
}

async fn assert_the_loop_emptied(world: &World, queue_url: &str) {
    assert_eq!(
        messages_left(world, queue_url).await,
        0,
        "the bare loop emptied its queue"
    );
}

/// Messages per turn of [`take_turns`].
pub(super) const SEGMENT: usize = 100;

/// What [`take_turns`] measured.
pub(super) struct Turns {
    pub(super) bare_loop: machine::Phase,
    pub(super) daemon: machine::Phase,
    /// SQS message id → kind, of the messages sent to the daemon.
    pub(super) kinds: HashMap<String, Kind>,
    /// SQS message id → when it was sent, of the same.
    pub(super) sent_at: HashMap<String, Instant>,
}

/// Feeds `messages` to the daemon (on the world's queue, counted by `daemon_done`) and to the
/// bare loop (on the baseline queue) in turns of [`SEGMENT`], the same segment to each, who
/// goes first alternating. The emulator's cost per message grows over a run (the same loop
/// after the daemon ran about as slow as the daemon), so two whole runs one after the other
/// would measure the emulator's age as much as either side.
pub(super) async fn take_turns(
    world: &World,
    messages: &[Message],
    daemon_done: impl Fn() -> usize,
) -> Turns {
    let sqs = &world.clients.sqs;
    let emulator = world.emulator.pid();
    let loop_url = world.baseline_queue.url.clone();
    let deleted = Arc::new(AtomicUsize::new(0));
    // One loop for every turn: a loop stopped mid long poll leaves that poll in the emulator,
    // where it would take and hide the next turn's messages.
    let looping = tokio::spawn(bare_loop(sqs.clone(), loop_url.clone(), deleted.clone()));
    let mut turns = Turns {
        bare_loop: machine::Phase::empty("bare receive+delete loop"),
        daemon: machine::Phase::empty("nodemedic daemon (dry-run)"),
        kinds: HashMap::new(),
        sent_at: HashMap::new(),
    };
    for (number, segment) in messages.chunks(SEGMENT).enumerate() {
        // The daemon goes first in the first segment, so its start-up counts against it.
        let daemon_first = number % 2 == 0;
        for daemon_turn in [daemon_first, !daemon_first] {
            let snapshot = machine::Snapshot::take(emulator);
            if daemon_turn {
                let base = daemon_done();
                let done = || daemon_done().saturating_sub(base);
                let (fed, started) =
                    feed(sqs, &world.queue.url, segment, &done, &AtomicUsize::new(0)).await;
                wait_until(&done, segment.len()).await;
                let turn = snapshot.phase(turns.daemon.name, segment.len(), started.elapsed());
                turns.daemon.add(turn);
                turns.kinds.extend(fed.kinds);
                turns.sent_at.extend(fed.sent_at);
            } else {
                let base = deleted.load(Ordering::SeqCst);
                let done = || deleted.load(Ordering::SeqCst).saturating_sub(base);
                let (_, started) = feed(sqs, &loop_url, segment, &done, &AtomicUsize::new(0)).await;
                wait_until(&done, segment.len()).await;
                let turn = snapshot.phase(turns.bare_loop.name, segment.len(), started.elapsed());
                turns.bare_loop.add(turn);
            }
        }
    }
    looping.abort();
    let _ = looping.await;
    assert_the_loop_emptied(world, &loop_url).await;
    turns
}
