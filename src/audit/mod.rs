//! The audit trail: an append-only, hash-chained log of everything nodemedic saw, decided and did,
//! in an embedded SQLite database, plus the incident index the pipeline and the CLI query.

pub mod backend;
pub mod control;
pub mod dynamo;
mod schema;
mod sqlite;
pub mod store;

pub use backend::{ChainBreak, Lease, Reads, Writes};
pub use control::{PlanRow, PlanStatus};
pub use store::{AuditStore, Tx};

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// Which nodegroup an incident is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodegroupKey {
    pub account: String,
    pub region: String,
    pub cluster: String,
    pub nodegroup: String,
}

impl std::fmt::Display for NodegroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.account, self.region, self.cluster, self.nodegroup
        )
    }
}

/// One planned step's current state, as `audit list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionSummary {
    pub kind: String,
    pub status: String,
    pub detail: String,
}

/// One incident as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSummary {
    pub incident_id: String,
    pub account: String,
    pub region: String,
    pub cluster: String,
    pub nodegroup: String,
    pub cause: String,
    pub mode: String,
    pub outcome: String,
    pub summary: String,
    pub plan_id: Option<String>,
    pub opened_at: String,
    pub updated_at: String,
    pub events: u32,
    pub actions: Vec<ActionSummary>,
    /// Every nodegroup the incident concerns (`cluster/nodegroup`); more than one in a storm.
    pub nodegroups: Vec<String>,
}

impl IncidentSummary {
    pub fn key(&self) -> NodegroupKey {
        NodegroupKey {
            account: self.account.clone(),
            region: self.region.clone(),
            cluster: self.cluster.clone(),
            nodegroup: self.nodegroup.clone(),
        }
    }
}

/// One audit record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: i64,
    pub at: String,
    pub incident_id: Option<String>,
    pub event_id: Option<String>,
    pub kind: String,
    pub body: Value,
    pub prev_hash: String,
    pub hash: String,
    /// The chain the record belongs to (see [`ChainBreak::chain`]).
    #[serde(default)]
    pub chain: String,
}

/// What happened to an event id, for duplicate detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSeen {
    pub disposition: String,
    pub incident_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("audit database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("audit record body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("audit store task failed: {0}")]
    Task(String),
    #[error("no incident {0}")]
    NoSuchIncident(String),
    #[error("audit store: {0}")]
    Backend(String),
    /// Another writer changed what this transaction read; the store runs it again.
    #[error("audit store: a concurrent write got in first")]
    Conflict,
}
