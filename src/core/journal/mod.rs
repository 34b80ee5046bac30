//! The journal: every audit record's body as a typed entry, one variant per record kind. Writers
//! build entries, readers (resume, reports) decode them: a renamed field is a compile error, not a
//! silent miss. Each body serialises to exactly the JSON its kind has always had, keys in the same
//! order (`tests.rs` holds them against the bodies the code wrote before the journal was typed),
//! so the hash chain and every stored database stay valid.

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::checks::{Diagnosis, Finding};
use crate::core::evidence::{CallLog, Evidence};
use crate::core::guard::{Decision, Mode};
use crate::core::plan::{ApiCall, FixKind, Note, Plan};
use crate::core::step::{Permission, PolicyReview, StepResult, StepStatus, Verification};
use crate::core::trigger::Trigger;

/// What a record says happened. Stable names: they appear in `audit show` and exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A message body that is not a valid event; left for the dead-letter queue.
    MessageRejected,
    /// A well-formed event nodemedic does not act on, or a group that is not a managed nodegroup's.
    EventIgnored,
    /// A second delivery of an event already handled.
    EventDuplicate,
    /// An event that opened or joined an incident.
    EventReceived,
    /// A launch event whose instance has nothing wrong.
    EventHealthy,
    /// An event from before a fix that was already applied.
    EventSuperseded,
    /// Evidence could not be collected; the message is retried.
    CollectionFailed,
    /// An event of an account this daemon does not serve: recorded and deleted, nothing read.
    AccountRefused,
    Evidence,
    Diagnosis,
    Plan,
    GuardDecision,
    /// Written before a mutation: what is about to be done.
    StepIntent,
    /// Written after a mutation: what was done, with before and after.
    StepResult,
    /// A plan's steps checked against the caller's permissions (EC2 DryRun).
    PermissionCheck,
    /// Whether the cause went away after the fix.
    Verification,
    /// A fix undone after verification failed.
    Rollback,
    /// A human approved or rejected a plan, or an approval expired.
    ApprovalDecision,
    /// An approved plan no longer matches the world: not applied.
    PlanStale,
    BreakerOpened,
    BreakerReset,
    KillSwitch,
    Outcome,
}

impl RecordKind {
    pub const ALL: [RecordKind; 23] = [
        RecordKind::MessageRejected,
        RecordKind::EventIgnored,
        RecordKind::EventDuplicate,
        RecordKind::EventReceived,
        RecordKind::EventHealthy,
        RecordKind::EventSuperseded,
        RecordKind::CollectionFailed,
        RecordKind::AccountRefused,
        RecordKind::Evidence,
        RecordKind::Diagnosis,
        RecordKind::Plan,
        RecordKind::GuardDecision,
        RecordKind::StepIntent,
        RecordKind::StepResult,
        RecordKind::PermissionCheck,
        RecordKind::Verification,
        RecordKind::Rollback,
        RecordKind::ApprovalDecision,
        RecordKind::PlanStale,
        RecordKind::BreakerOpened,
        RecordKind::BreakerReset,
        RecordKind::KillSwitch,
        RecordKind::Outcome,
    ];

    pub fn parse(text: &str) -> Option<RecordKind> {
        RecordKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::MessageRejected => "message_rejected",
            RecordKind::EventIgnored => "event_ignored",
            RecordKind::EventDuplicate => "event_duplicate",
            RecordKind::EventReceived => "event_received",
            RecordKind::EventHealthy => "event_healthy",
            RecordKind::EventSuperseded => "event_superseded",
            RecordKind::CollectionFailed => "collection_failed",
            RecordKind::AccountRefused => "account_refused",
            RecordKind::Evidence => "evidence",
            RecordKind::Diagnosis => "diagnosis",
            RecordKind::Plan => "plan",
            RecordKind::GuardDecision => "guard_decision",
            RecordKind::StepIntent => "step_intent",
            RecordKind::StepResult => "step_result",
            RecordKind::PermissionCheck => "permission_check",
            RecordKind::Verification => "verification",
            RecordKind::Rollback => "rollback",
            RecordKind::ApprovalDecision => "approval_decision",
            RecordKind::PlanStale => "plan_stale",
            RecordKind::BreakerOpened => "breaker_opened",
            RecordKind::BreakerReset => "breaker_reset",
            RecordKind::KillSwitch => "kill_switch",
            RecordKind::Outcome => "outcome",
        }
    }
}

/// How an incident ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    InProgress,
    /// Every planned step was applied.
    Fixed,
    /// The plan was recorded and nothing applied (dry-run, or the guard held it).
    Planned,
    /// A cause was found but nothing safe can fix it automatically; the report says what to do.
    NoFix,
    /// A step failed, or verification failed and the fix was rolled back.
    Failed,
    /// The cause went away without nodemedic (someone fixed it before an approved plan ran).
    Resolved,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::InProgress => "in_progress",
            Outcome::Fixed => "fixed",
            Outcome::Planned => "planned",
            Outcome::NoFix => "no_fix",
            Outcome::Failed => "failed",
            Outcome::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        [
            Outcome::InProgress,
            Outcome::Fixed,
            Outcome::Planned,
            Outcome::NoFix,
            Outcome::Failed,
            Outcome::Resolved,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// Why a journal entry could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("unknown record kind {0:?}")]
    UnknownKind(String),
    #[error("a {kind} record does not have the shape of one: {source}")]
    Shape {
        kind: &'static str,
        source: serde_json::Error,
    },
}

macro_rules! entries {
    ($($kind:ident($body:ty)),+ $(,)?) => {
        /// One audit record's body, by kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Entry {
            $($kind($body)),+
        }

        impl Entry {
            pub fn kind(&self) -> RecordKind {
                match self {
                    $(Entry::$kind(_) => RecordKind::$kind),+
                }
            }

            /// The body as stored.
            pub fn body(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(Entry::$kind(body) => serde_json::to_value(body)),+
                }
            }

            /// Reads a stored record back.
            pub fn decode(kind: &str, body: &Value) -> Result<Entry, JournalError> {
                $(
                    if kind == RecordKind::$kind.as_str() {
                        return <$body>::deserialize(body)
                            .map(Entry::$kind)
                            .map_err(|source| JournalError::Shape {
                                kind: RecordKind::$kind.as_str(),
                                source,
                            });
                    }
                )+
                Err(JournalError::UnknownKind(kind.to_string()))
            }
        }
    };
}

entries! {
    MessageRejected(MessageRejected),
    EventIgnored(EventIgnored),
    EventDuplicate(EventDuplicate),
    EventReceived(EventReceived),
    EventHealthy(EventHealthy),
    EventSuperseded(EventSuperseded),
    CollectionFailed(CollectionFailed),
    AccountRefused(AccountRefused),
    Evidence(Box<Evidence>),
    Diagnosis(Box<Diagnosis>),
    Plan(Box<Plan>),
    GuardDecision(GuardDecision),
    StepIntent(StepIntent),
    StepResult(StepResultEntry),
    PermissionCheck(PermissionCheck),
    Verification(Verification),
    Rollback(Rollback),
    ApprovalDecision(ApprovalDecision),
    PlanStale(PlanStale),
    BreakerOpened(BreakerOpened),
    BreakerReset(BreakerReset),
    KillSwitch(KillSwitchEntry),
    Outcome(OutcomeEntry),
}

/// A message body that is not a valid event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRejected {
    pub message_id: Option<String>,
    pub receive_count: u32,
    pub reason: String,
    /// The first 512 characters of the body.
    pub body_excerpt: String,
}

/// A well-formed event nodemedic does not act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventIgnored {
    /// What the event was: the ignored envelope, or the resolution that said "not ours".
    pub event: Value,
    pub reason: String,
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDuplicate {
    pub message_id: Option<String>,
    /// What the first delivery's handling concluded.
    pub first_disposition: String,
}

/// An event that opened or joined an incident, or a resumed run picking it up again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventReceived {
    pub trigger: Trigger,
    pub message_id: Option<String>,
    /// How often SQS delivered the message (a new event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_count: Option<u32>,
    /// Set when a run that died is resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    pub trace_id: Option<String>,
}

/// A launch with nothing wrong: its subnet's route verdict was cached, or the checks ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventHealthy {
    Cached {
        subnet: String,
        route_table: String,
        cached: bool,
        message_id: Option<String>,
        trigger: Trigger,
    },
    Checked {
        calls: CallLog,
        message_id: Option<String>,
        cached: bool,
        warnings: Vec<Finding>,
        trigger: Trigger,
    },
}

impl EventHealthy {
    pub fn message_id(&self) -> Option<&str> {
        match self {
            EventHealthy::Cached { message_id, .. } | EventHealthy::Checked { message_id, .. } => {
                message_id.as_deref()
            }
        }
    }
}

/// An event from before a fix: of its nodegroup, or of the shared resource its cause rests on
/// (then with the nodegroup and the storm subject).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSuperseded {
    pub event_time: String,
    pub fix_applied_at: String,
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodegroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionFailed {
    pub error: String,
    pub trigger: Trigger,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRefused {
    pub event_id: String,
    pub account: String,
    pub region: String,
    pub reason: String,
    pub trigger: Trigger,
    pub message_id: Option<String>,
}

/// The guard's decision on one step of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardDecision {
    pub position: usize,
    pub fix: FixKind,
    pub decision: Decision,
    pub mode: Mode,
    /// IAM Access Analyzer's review of the policy the step would write, the guard's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_review: Option<PolicyReview>,
}

/// Written before a mutation: the exact calls about to be sent (a rollback's undo included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepIntent {
    pub position: usize,
    pub fix: FixKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<bool>,
    /// The calls are sent with DryRun=true, for the permission check; an endpoint that ignores
    /// DryRun performs them, so they are announced as any mutation is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    pub calls: Vec<ApiCall>,
    pub at: String,
}

/// Written after a mutation; a resumed run records a step an earlier run applied with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResultEntry {
    pub position: usize,
    pub fix: FixKind,
    pub result: StepResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionCheck {
    pub position: usize,
    pub fix: FixKind,
    pub permission: Permission,
}

/// A step undone after verification failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub position: usize,
    pub fix: FixKind,
    pub result: StepResult,
}

/// What a human (or the clock) decided about a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    Rejected,
    Expired,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
            Verdict::Expired => "expired",
        }
    }
}

/// A plan approved or rejected by a person, an approval that expired before it ran, or a plan
/// nobody answered within its time to live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ApprovalDecision {
    ApprovalExpired {
        plan_id: String,
        decision: Verdict,
        approved_by: Option<String>,
        approved_at: Option<String>,
        ttl_secs: u64,
    },
    Unanswered {
        plan_id: String,
        decision: Verdict,
        reason: String,
        waiting_since: String,
        at: String,
    },
    Decided {
        plan_id: String,
        decision: Verdict,
        by: String,
        reason: Option<String>,
        at: String,
    },
}

impl ApprovalDecision {
    pub fn plan_id(&self) -> &str {
        match self {
            ApprovalDecision::ApprovalExpired { plan_id, .. }
            | ApprovalDecision::Unanswered { plan_id, .. }
            | ApprovalDecision::Decided { plan_id, .. } => plan_id,
        }
    }

    pub fn verdict(&self) -> Verdict {
        match self {
            ApprovalDecision::ApprovalExpired { decision, .. }
            | ApprovalDecision::Unanswered { decision, .. }
            | ApprovalDecision::Decided { decision, .. } => *decision,
        }
    }

    /// The person who approved or rejected the plan now.
    pub fn decided_by(&self) -> Option<&str> {
        match self {
            ApprovalDecision::Decided { by, .. } => Some(by),
            _ => None,
        }
    }

    /// Whoever approved the plan: the person deciding now, or the one whose approval expired.
    pub fn approver(&self) -> Option<&str> {
        match self {
            ApprovalDecision::ApprovalExpired { approved_by, .. } => approved_by.as_deref(),
            other => other.decided_by(),
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            ApprovalDecision::Decided { reason, .. } => reason.as_deref(),
            ApprovalDecision::Unanswered { reason, .. } => Some(reason),
            ApprovalDecision::ApprovalExpired { .. } => None,
        }
    }
}

/// An approved plan that no longer matches the world: not applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStale {
    pub plan_id: String,
    pub new_plan_id: Option<String>,
    pub why: String,
    pub approved_by: Option<String>,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerOpened {
    pub scope: String,
    pub reason: String,
    pub effect: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerReset {
    pub scope: String,
    pub by: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillSwitchEntry {
    pub on: bool,
    pub by: String,
    pub reason: Option<String>,
    pub at: String,
}

/// How an incident's run ended, or that its cause went away before an approved plan ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OutcomeEntry {
    Concluded {
        outcome: Outcome,
        mode: Mode,
        cause: String,
        plan_id: String,
        steps: Vec<StepStatus>,
        awaiting_approval: bool,
        rolled_back: bool,
        notes: Vec<Note>,
        aws_calls: CallLog,
    },
    Resolved {
        outcome: Outcome,
        reason: String,
    },
}
