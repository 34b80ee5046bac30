//! Event intake: reading SQS messages into triggers, and the queue loop that feeds the pipeline.

mod envelope;

pub use envelope::{
    CLOUDTRAIL_API_CALL, EnvelopeError, HEALTH_ISSUE, HealthEvent, HealthEventIssue, IgnoredEvent,
    JOIN_CHECK, JoinCheck, LAUNCH_SUCCESSFUL, LAUNCH_UNSUCCESSFUL, LaunchEvent, LaunchOutcome,
    NODEMEDIC_SOURCE, NodegroupApiCall, Parsed, Trigger, TriggerKind, parse_message,
};
pub mod publish;
pub mod queue;
