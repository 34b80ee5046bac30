//! The audit trail: an append-only, hash-chained log of everything nodemedic saw, decided and did,
//! in an embedded SQLite database, plus the incident index the pipeline and the CLI query.

pub mod backend;
pub mod control;
pub mod dynamo;
mod schema;
mod sqlite;
pub mod store;
mod tx;

pub use backend::{ChainBreak, Lease, Reads, StoreResult, SubjectScope, Writes};
pub use control::{PlanRow, PlanStatus};
pub use store::{Anchor, AnchorState, AuditStore};
pub use tx::Tx;

pub use crate::core::ids::NodegroupKey;
pub use crate::core::journal::{Outcome, RecordKind};

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    pub outcome: Outcome,
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
