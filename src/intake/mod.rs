//! Event intake: reading SQS messages into triggers, and the queue loop that feeds the pipeline.

mod envelope;

pub use envelope::{
    EnvelopeError, IgnoredEvent, LAUNCH_SUCCESSFUL, LAUNCH_UNSUCCESSFUL, LaunchOutcome, Parsed,
    Trigger, parse_message,
};
pub mod queue;
