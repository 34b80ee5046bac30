//! What a store backend provides: the reads the pipeline, the guard and the CLI make, and the
//! writes one transaction groups. SQLite ([`super::sqlite`]) serves one replica; DynamoDB
//! ([`super::dynamo`]) several.

use serde_json::Value;

use super::control::{Breaker, KillSwitch, PlanRow, PlanStatus};
use super::{AuditError, EventSeen, IncidentSummary, NodegroupKey, Outcome, Record, RecordKind};

/// The first broken link of an audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The chain: `global` in SQLite; an incident id or a `loose/…` shard in DynamoDB.
    pub chain: String,
    pub seq: i64,
    pub why: String,
}

/// Who holds a lease, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub holder: String,
    /// Unix milliseconds.
    pub expires_at_ms: i64,
}

pub trait Reads {
    fn event_seen(&self, event_id: &str) -> Result<Option<EventSeen>, AuditError>;
    /// Incidents, most recently opened first.
    fn list(&self, limit: usize) -> Result<Vec<IncidentSummary>, AuditError>;
    fn incident(&self, incident_id: &str) -> Result<Option<IncidentSummary>, AuditError>;
    /// The shared resource an incident is about, when it is one.
    fn incident_subject(&self, incident_id: &str) -> Result<Option<String>, AuditError>;
    /// Incidents of a cause about a shared resource (any nodegroup), most recently updated first.
    fn incidents_for_subject(
        &self,
        account: &str,
        region: &str,
        cause: &str,
        subject: &str,
    ) -> Result<Vec<IncidentSummary>, AuditError>;
    /// When a fix was last applied to a shared resource: (incident id, time).
    fn last_fix_on_subject(
        &self,
        account: &str,
        region: &str,
        subject: &str,
    ) -> Result<Option<(String, String)>, AuditError>;
    /// Nodegroups an incident concerns, as `cluster/nodegroup`.
    fn incident_nodegroups(&self, incident_id: &str) -> Result<Vec<String>, AuditError>;
    /// Incidents of a nodegroup for a cause, most recently updated first.
    fn incidents_for(
        &self,
        key: &NodegroupKey,
        cause: &str,
    ) -> Result<Vec<IncidentSummary>, AuditError>;
    /// A nodegroup's most recently updated incidents, whatever their cause.
    fn incidents_of_nodegroup(
        &self,
        key: &NodegroupKey,
        limit: usize,
    ) -> Result<Vec<IncidentSummary>, AuditError>;
    /// When a fix was last applied to a nodegroup: (incident id, time).
    fn last_fix_applied(&self, key: &NodegroupKey) -> Result<Option<(String, String)>, AuditError>;
    /// An incident's records, oldest first.
    fn records(&self, incident_id: &str) -> Result<Vec<Record>, AuditError>;
    /// Records that belong to no incident, newest first.
    fn loose_records(&self, limit: usize) -> Result<Vec<Record>, AuditError>;
    /// Every record, in chain order, for exports: those after `after_seq` in SQLite's single
    /// chain (DynamoDB ignores it and returns every chain).
    fn all_records(&self, after_seq: i64) -> Result<Vec<Record>, AuditError>;
    /// Walks every chain; the number of records, or the first broken link.
    fn verify_chain(&self) -> Result<Result<u64, ChainBreak>, AuditError>;
    fn plans(&self, status: Option<PlanStatus>) -> Result<Vec<PlanRow>, AuditError>;
    fn plan(&self, plan_id: &str) -> Result<Option<PlanRow>, AuditError>;
    fn kill_switch(&self) -> Result<Option<KillSwitch>, AuditError>;
    fn mutations_since(&self, account: &str, since: &str) -> Result<u32, AuditError>;
    /// When `fix` last changed `resource`: (time, incident id).
    fn last_mutation(
        &self,
        resource: &str,
        fix: &str,
    ) -> Result<Option<(String, String)>, AuditError>;
    fn open_breakers(&self, scopes: &[String]) -> Result<Vec<String>, AuditError>;
    fn breakers(&self) -> Result<Vec<Breaker>, AuditError>;
    fn lease(&self, key: &str) -> Result<Option<Lease>, AuditError>;
}

/// The writes of one transaction: all of them commit together, or none does.
pub trait Writes {
    /// Reads inside the transaction see what it already wrote.
    fn reads(&self) -> &dyn Reads;
    fn append(
        &self,
        incident_id: Option<&str>,
        event_id: Option<&str>,
        kind: RecordKind,
        body: &Value,
    ) -> Result<i64, AuditError>;
    /// Remembers what became of an event id (the first disposition wins).
    fn mark_event(
        &self,
        event_id: &str,
        message_id: Option<&str>,
        disposition: &str,
        incident_id: Option<&str>,
    ) -> Result<(), AuditError>;
    fn open_incident(
        &self,
        incident_id: &str,
        key: &NodegroupKey,
        cause: &str,
        subject: Option<&str>,
        mode: &str,
        summary: &str,
    ) -> Result<(), AuditError>;
    fn join_nodegroup(
        &self,
        incident_id: &str,
        cluster: &str,
        nodegroup: &str,
    ) -> Result<(), AuditError>;
    fn set_outcome(
        &self,
        incident_id: &str,
        mode: &str,
        outcome: Outcome,
    ) -> Result<(), AuditError>;
    fn set_plan(
        &self,
        incident_id: &str,
        plan_id: &str,
        steps: &[(String, String, String)],
    ) -> Result<(), AuditError>;
    fn set_step(
        &self,
        incident_id: &str,
        position: usize,
        status: &str,
        detail: &str,
    ) -> Result<(), AuditError>;
    fn register_plan(
        &self,
        incident_id: &str,
        plan_id: &str,
        plan: &Value,
        trigger: &Value,
    ) -> Result<bool, AuditError>;
    fn set_plan_status(
        &self,
        plan_id: &str,
        status: PlanStatus,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), AuditError>;
    fn set_kill_switch(
        &self,
        on: bool,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), AuditError>;
    fn reserve_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
        since: &str,
        limit: u32,
    ) -> Result<Option<i64>, AuditError>;
    fn release_mutation(&self, seq: i64) -> Result<(), AuditError>;
    fn record_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
    ) -> Result<(), AuditError>;
    fn record_breaker_failure(
        &self,
        scopes: &[String],
        incident_id: &str,
        reason: &str,
        threshold_for: &dyn Fn(&str) -> u32,
        window_start: &str,
    ) -> Result<Vec<String>, AuditError>;
    fn reset_breaker(&self, scope: &str, by: &str) -> Result<bool, AuditError>;
    /// Takes `key` for `holder` until `expires_at_ms` when it is free, expired, or already
    /// `holder`'s; returns whether `holder` has it now.
    fn acquire_lease(
        &self,
        key: &str,
        holder: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<bool, AuditError>;
    fn release_lease(&self, key: &str, holder: &str) -> Result<(), AuditError>;
}
