//! Event intake: reading SQS messages into triggers, and the queue loop that feeds the pipeline.

mod deletes;
mod envelope;

pub use envelope::{
    CLOUDTRAIL_API_CALL, EnvelopeError, HEALTH_ISSUE, IgnoredEvent, JOIN_CHECK, LAUNCH_SUCCESSFUL,
    LAUNCH_UNSUCCESSFUL, NODEMEDIC_SOURCE, Parsed, parse_message,
};
pub mod publish;
pub mod queue;
pub mod signing;

/// One received message.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub message_id: Option<String>,
    pub body: String,
    pub receive_count: u32,
}

/// What the queue loop must do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The outcome is recorded: delete the message.
    Delete,
    /// Leave the message: it comes back after its visibility timeout (and eventually goes to the
    /// dead-letter queue if it never succeeds).
    Keep { reason: String, kind: KeepKind },
}

/// Why a message was kept, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepKind {
    /// Not a valid event: left for the dead-letter queue.
    Unreadable,
    /// AWS could not be asked (evidence, publishing a join check): tried again later.
    AwsUnavailable,
    /// The outcome could not be recorded in the store.
    NotRecorded,
    /// The process is stopping: handed back to the queue at once, to be resumed.
    ShuttingDown,
}

impl KeepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeepKind::Unreadable => "unreadable",
            KeepKind::AwsUnavailable => "aws_unavailable",
            KeepKind::NotRecorded => "not_recorded",
            KeepKind::ShuttingDown => "shutting_down",
        }
    }
}

/// What the queue loop hands each message to. The loop owns receiving, visibility and
/// deletion; the handler owns everything the message means.
#[async_trait::async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// Works one message and says what to do with it; `Delete` only once its outcome is durable.
    async fn handle(&self, message: &Inbound) -> Disposition;
}
