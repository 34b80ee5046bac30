//! What a store backend provides: the reads the pipeline, the guard and the CLI make, and the
//! primitive writes one transaction groups. SQLite ([`super::sqlite`]) serves one replica;
//! DynamoDB ([`super::dynamo`]) several. The rules built on these primitives (plan
//! registration, rate reservation, breaker opening) live once, in [`super::tx`].

use serde_json::Value;

use super::control::{Breaker, KillSwitch, PlanRow, PlanStatus};
use super::{AuditError, EventSeen, IncidentSummary, NodegroupKey, Outcome, Record, RecordKind};

/// What every store call returns.
pub type StoreResult<T> = Result<T, AuditError>;

/// The work of one write transaction, as a backend runs it.
pub type WriteWork<'a, T> = &'a dyn Fn(&dyn Writes) -> StoreResult<T>;

/// The work of one read, as a backend runs it.
pub type ReadWork<'a, T> = &'a dyn Fn(&dyn Reads) -> StoreResult<T>;

/// The first broken link of an audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The chain: `global` in SQLite; an incident id or a `loose/…` shard in DynamoDB.
    pub chain: String,
    pub seq: i64,
    pub why: String,
}

/// A chain's head as the store keeps it: the newest record's sequence number and hash, when it
/// was moved there, and its signature when the store has an anchor key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
    pub at: String,
    pub mac: Option<String>,
}

/// Who holds a lease, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub holder: String,
    /// Unix milliseconds.
    pub expires_at_ms: i64,
}

/// A shared resource (a subnet, a key) of one account and region, as incidents name it.
#[derive(Debug, Clone, Copy)]
pub struct SubjectScope<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub subject: &'a str,
}

impl<'a> SubjectScope<'a> {
    /// The subject in the account and region of a nodegroup.
    pub fn near(key: &'a NodegroupKey, subject: &'a str) -> Self {
        Self {
            account: &key.account,
            region: &key.region,
            subject,
        }
    }
}

/// A record to append to the audit chain.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    pub incident_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub kind: RecordKind,
    pub body: &'a Value,
}

/// What became of an event id.
#[derive(Debug, Clone, Copy)]
pub struct EventMark<'a> {
    pub event_id: &'a str,
    pub message_id: Option<&'a str>,
    pub disposition: &'a str,
    pub incident_id: Option<&'a str>,
}

/// An incident to open, in progress.
#[derive(Debug, Clone, Copy)]
pub struct NewIncident<'a> {
    pub incident_id: &'a str,
    pub key: &'a NodegroupKey,
    pub cause: &'a str,
    pub subject: Option<&'a str>,
    pub mode: &'a str,
    pub summary: &'a str,
}

/// A nodegroup an incident concerns.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub incident_id: &'a str,
    pub cluster: &'a str,
    pub nodegroup: &'a str,
}

/// An incident's plan and its steps as (kind, status, detail).
#[derive(Debug, Clone, Copy)]
pub struct IncidentPlan<'a> {
    pub incident_id: &'a str,
    pub plan_id: &'a str,
    pub steps: &'a [(String, String, String)],
}

/// A plan's new status, and who decided it and why when it is a decision.
#[derive(Debug, Clone, Copy)]
pub struct PlanStatusChange<'a> {
    pub plan_id: &'a str,
    pub status: PlanStatus,
    pub by: Option<&'a str>,
    pub reason: Option<&'a str>,
}

/// A planned step's new state.
#[derive(Debug, Clone, Copy)]
pub struct StepChange<'a> {
    pub incident_id: &'a str,
    pub position: usize,
    pub status: &'a str,
    pub detail: &'a str,
}

/// One mutation, counted against the account's rate limit.
#[derive(Debug, Clone, Copy)]
pub struct MutationRow<'a> {
    pub account: &'a str,
    pub resource: &'a str,
    pub fix: &'a str,
    pub incident_id: &'a str,
}

/// One failed fix, counted against a breaker scope.
#[derive(Debug, Clone, Copy)]
pub struct BreakerFailure<'a> {
    pub scope: &'a str,
    pub at: &'a str,
    pub incident_id: &'a str,
    pub reason: &'a str,
}

/// A plan waiting for approval, as registered.
#[derive(Debug, Clone, Copy)]
pub struct PlanWrite<'a> {
    pub incident_id: &'a str,
    pub plan_id: &'a str,
    pub plan: &'a Value,
    pub trigger: &'a Value,
}

/// How a plan is saved as waiting for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanSave {
    /// A plan id never seen.
    Insert,
    /// A plan id decided before, waiting again (for this incident), its decision cleared.
    Reopen,
    /// The same waiting plan: only the trigger an approval re-collects for changes.
    RefreshTrigger,
}

/// A plan as the transaction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlan {
    pub status: String,
    pub incident_id: String,
}

/// A request for a lease.
#[derive(Debug, Clone, Copy)]
pub struct LeaseClaim<'a> {
    pub key: &'a str,
    pub holder: &'a str,
    pub now_ms: i64,
    pub expires_at_ms: i64,
}

pub trait Reads {
    fn event_seen(&self, event_id: &str) -> StoreResult<Option<EventSeen>>;
    /// Incidents, most recently opened first.
    fn list(&self, limit: usize) -> StoreResult<Vec<IncidentSummary>>;
    fn incident(&self, incident_id: &str) -> StoreResult<Option<IncidentSummary>>;
    /// The shared resource an incident is about, when it is one.
    fn incident_subject(&self, incident_id: &str) -> StoreResult<Option<String>>;
    /// Incidents of a cause about a shared resource (any nodegroup), most recently updated first.
    fn incidents_for_subject(
        &self,
        at: SubjectScope,
        cause: &str,
    ) -> StoreResult<Vec<IncidentSummary>>;
    /// When a fix was last applied to a shared resource: (incident id, time).
    fn last_fix_on_subject(&self, at: SubjectScope) -> StoreResult<Option<(String, String)>>;
    /// Nodegroups an incident concerns, as `cluster/nodegroup`.
    fn incident_nodegroups(&self, incident_id: &str) -> StoreResult<Vec<String>>;
    /// Incidents of a nodegroup for a cause, most recently updated first.
    fn incidents_for(&self, key: &NodegroupKey, cause: &str) -> StoreResult<Vec<IncidentSummary>>;
    /// A nodegroup's most recently updated incidents, whatever their cause.
    fn incidents_of_nodegroup(
        &self,
        key: &NodegroupKey,
        limit: usize,
    ) -> StoreResult<Vec<IncidentSummary>>;
    /// When a fix was last applied to a nodegroup: (incident id, time).
    fn last_fix_applied(&self, key: &NodegroupKey) -> StoreResult<Option<(String, String)>>;
    /// An incident's records, oldest first.
    fn records(&self, incident_id: &str) -> StoreResult<Vec<Record>>;
    /// Whether the incident's last run died: it has a step intent or result after its last
    /// outcome. Asked for every event of a nodegroup, so a backend answers it without reading
    /// every record of an incident a storm keeps joining, where it can.
    fn run_died(&self, incident_id: &str) -> StoreResult<bool> {
        let records = self.records(incident_id)?;
        let after_outcome = records
            .iter()
            .rposition(|r| r.kind == RecordKind::Outcome.as_str())
            .map_or(0, |i| i + 1);
        Ok(records[after_outcome..].iter().any(|r| {
            r.kind == RecordKind::StepIntent.as_str() || r.kind == RecordKind::StepResult.as_str()
        }))
    }
    /// Records that belong to no incident, newest first.
    fn loose_records(&self, limit: usize) -> StoreResult<Vec<Record>>;
    /// Every record, in chain order, for exports: those after `after_seq` in SQLite's single
    /// chain (DynamoDB ignores it and returns every chain).
    fn all_records(&self, after_seq: i64) -> StoreResult<Vec<Record>>;
    /// Walks every chain; the number of records, or the first broken link.
    fn verify_chain(&self) -> StoreResult<Result<u64, ChainBreak>>;
    /// The chains' heads, for their signatures and age.
    fn chain_heads(&self) -> StoreResult<Vec<ChainHead>>;
    fn plans(&self, status: Option<PlanStatus>) -> StoreResult<Vec<PlanRow>>;
    fn plan(&self, plan_id: &str) -> StoreResult<Option<PlanRow>>;
    fn kill_switch(&self) -> StoreResult<Option<KillSwitch>>;
    /// The value of control `name`, when it has one.
    fn control(&self, name: &str) -> StoreResult<Option<String>>;
    fn mutations_since(&self, account: &str, since: &str) -> StoreResult<u32>;
    /// When `fix` last changed `resource`: (time, incident id).
    fn last_mutation(&self, resource: &str, fix: &str) -> StoreResult<Option<(String, String)>>;
    fn open_breakers(&self, scopes: &[String]) -> StoreResult<Vec<String>>;
    fn breakers(&self) -> StoreResult<Vec<Breaker>>;
    fn lease(&self, key: &str) -> StoreResult<Option<Lease>>;
}

/// The primitive writes of one transaction: all of them commit together, or none does. Each is
/// one change to the backend's tables; no rule of the guard's lives here.
pub trait Writes {
    /// Reads inside the transaction see what it already wrote.
    fn reads(&self) -> &dyn Reads;
    /// Appends to the chain; the record's sequence number in its chain.
    fn append(&self, record: NewRecord) -> StoreResult<i64>;
    /// Remembers what became of an event id (the first disposition wins).
    fn mark_event(&self, mark: EventMark) -> StoreResult<()>;
    /// Opens an incident in progress; it concerns its own nodegroup.
    fn open_incident(&self, incident: NewIncident) -> StoreResult<()>;
    fn join_nodegroup(&self, member: Member) -> StoreResult<()>;
    fn set_outcome(&self, incident_id: &str, mode: &str, outcome: Outcome) -> StoreResult<()>;
    /// Replaces an incident's plan id and its steps.
    fn set_plan(&self, plan: IncidentPlan) -> StoreResult<()>;
    /// Changes a step that exists; a step that does not is not created.
    fn set_step(&self, change: StepChange) -> StoreResult<()>;
    /// A plan's status and owner, seeing this transaction's writes.
    fn stored_plan(&self, plan_id: &str) -> StoreResult<Option<StoredPlan>>;
    /// Marks an incident's other plans that still wait for approval superseded.
    fn supersede_waiting_plans(&self, incident_id: &str, keep_plan_id: &str) -> StoreResult<()>;
    fn save_plan(&self, plan: PlanWrite, how: PlanSave) -> StoreResult<()>;
    /// Sets a plan's status; a decision also records who made it and why.
    fn set_plan_status(&self, change: PlanStatusChange) -> StoreResult<()>;
    fn set_kill_switch(&self, on: bool, by: Option<&str>, reason: Option<&str>) -> StoreResult<()>;
    /// The value of control `name`, set to `value` first if it has none: of two writers, the
    /// first to commit wins and the other reads its value.
    fn ensure_control(&self, name: &str, value: &str) -> StoreResult<String>;
    /// Sets control `name` to `value`, whatever it was.
    fn set_control(&self, name: &str, value: &str, by: &str) -> StoreResult<()>;
    /// The kill switch as this transaction will commit under it: a switch flipped between this
    /// read and the commit makes the commit conflict, and the transaction runs again. SQLite's
    /// write lock already excludes the flip.
    fn kill_switch_at_commit(&self) -> StoreResult<Option<KillSwitch>> {
        self.reads().kill_switch()
    }
    /// Serialises the rate reservations of an account until this transaction commits.
    fn lock_rate(&self, account: &str) -> StoreResult<()>;
    /// Records a mutation; the reservation that [`Writes::release_mutation`] takes back.
    fn record_mutation(&self, row: MutationRow) -> StoreResult<i64>;
    fn release_mutation(&self, reservation: i64) -> StoreResult<()>;
    fn add_breaker_failure(&self, failure: BreakerFailure) -> StoreResult<()>;
    /// Whether a breaker is open, seeing this transaction's writes.
    fn breaker_open(&self, scope: &str) -> StoreResult<bool>;
    /// Failures of a scope since `window_start` (this transaction's included) that no reset
    /// forgave.
    fn breaker_failures_since(&self, scope: &str, window_start: &str) -> StoreResult<u32>;
    fn open_breaker(&self, scope: &str, at: &str, reason: &str) -> StoreResult<()>;
    fn reset_breaker(&self, scope: &str, by: &str) -> StoreResult<bool>;
    /// Takes the lease when it is free, expired, or already the holder's; whether the holder has
    /// it now.
    fn acquire_lease(&self, claim: LeaseClaim) -> StoreResult<bool>;
    fn release_lease(&self, key: &str, holder: &str) -> StoreResult<()>;
}
