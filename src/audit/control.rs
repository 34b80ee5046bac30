//! The guard's memory in the store: plans and their approvals, the kill switch, the mutations
//! applied (cooldowns, rate limits), and circuit breakers. Writes go through
//! [`Tx`](super::Tx) so that they commit with the audit records that explain them.

use crate::core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AuditError;
use super::backend::Reads;

/// Where a plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// At least one step waits for a human.
    AwaitingApproval,
    Approved,
    Rejected,
    /// Approved but not acted on within the approval TTL.
    Expired,
    /// The world changed after approval: the plan no longer matches it.
    Stale,
    /// A newer plan replaced it before anyone decided.
    Superseded,
    Applied,
    /// Approved and run, but a step failed or verification failed and it was rolled back.
    Failed,
    /// Approved, but the guard refused a step (scope, breaker, fix policy `never`).
    Refused,
}

impl PlanStatus {
    pub const ALL: [PlanStatus; 9] = [
        PlanStatus::AwaitingApproval,
        PlanStatus::Approved,
        PlanStatus::Rejected,
        PlanStatus::Expired,
        PlanStatus::Stale,
        PlanStatus::Superseded,
        PlanStatus::Applied,
        PlanStatus::Failed,
        PlanStatus::Refused,
    ];

    /// A plan in these states is not registered again: it waits already, or a human decided.
    pub fn settled(status: &str) -> bool {
        [
            PlanStatus::AwaitingApproval,
            PlanStatus::Approved,
            PlanStatus::Rejected,
        ]
        .iter()
        .any(|s| s.as_str() == status)
    }

    /// A human's decision, which records who and why.
    pub fn is_decision(self) -> bool {
        matches!(self, PlanStatus::Approved | PlanStatus::Rejected)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::AwaitingApproval => "awaiting_approval",
            PlanStatus::Approved => "approved",
            PlanStatus::Rejected => "rejected",
            PlanStatus::Expired => "expired",
            PlanStatus::Stale => "stale",
            PlanStatus::Superseded => "superseded",
            PlanStatus::Applied => "applied",
            PlanStatus::Failed => "failed",
            PlanStatus::Refused => "refused",
        }
    }

    pub fn parse(text: &str) -> Option<PlanStatus> {
        [
            PlanStatus::AwaitingApproval,
            PlanStatus::Approved,
            PlanStatus::Rejected,
            PlanStatus::Expired,
            PlanStatus::Stale,
            PlanStatus::Superseded,
            PlanStatus::Applied,
            PlanStatus::Failed,
            PlanStatus::Refused,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plan as the approval workflow sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRow {
    pub plan_id: String,
    pub incident_id: String,
    pub status: PlanStatus,
    pub created_at: String,
    pub updated_at: String,
    pub plan: Value,
    pub trigger: Value,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub decision_reason: Option<String>,
    pub cluster: String,
    pub nodegroup: String,
    pub cause: String,
}

/// The kill switch when it is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillSwitch {
    pub set_by: Option<String>,
    pub at: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    pub scope: String,
    pub state: String,
    pub opened_at: String,
    pub reason: String,
    pub closed_at: Option<String>,
    pub closed_by: Option<String>,
}

impl PlanRow {
    /// When a plan awaiting approval expires: `ttl` after an event last confirmed it. `None` for
    /// a plan in any other state, or whose time cannot be read.
    pub fn expires_at(&self, ttl: std::time::Duration) -> Option<Timestamp> {
        if self.status != PlanStatus::AwaitingApproval {
            return None;
        }
        Timestamp::parse(&self.updated_at).ok()?.after(ttl)
    }

    /// Whether a plan awaiting approval has waited longer than `ttl` at `now`.
    pub fn unanswered_at(&self, ttl: std::time::Duration, now: Timestamp) -> bool {
        self.expires_at(ttl).is_some_and(|at| at <= now)
    }
}

/// Reads of the guard's state, over any backend.
pub fn plans(reads: &dyn Reads, status: Option<PlanStatus>) -> Result<Vec<PlanRow>, AuditError> {
    reads.plans(status)
}

pub fn plan(reads: &dyn Reads, plan_id: &str) -> Result<Option<PlanRow>, AuditError> {
    reads.plan(plan_id)
}

pub fn kill_switch(reads: &dyn Reads) -> Result<Option<KillSwitch>, AuditError> {
    reads.kill_switch()
}

fn session_epoch_control(approver: &str) -> String {
    format!("session_epoch:{approver}")
}

/// How many times `approver` signed out of the console: sessions are signed with it, so signing
/// out ends every session of that approver, on every replica.
pub fn session_epoch(reads: &dyn Reads, approver: &str) -> Result<u64, AuditError> {
    Ok(reads
        .control(&session_epoch_control(approver))?
        .and_then(|value| value.parse().ok())
        .unwrap_or(0))
}

pub fn mutations_since(reads: &dyn Reads, account: &str, since: &str) -> Result<u32, AuditError> {
    reads.mutations_since(account, since)
}

/// When `fix` last changed `resource`, and in which incident.
pub fn last_mutation(
    reads: &dyn Reads,
    resource: &str,
    fix: &str,
) -> Result<Option<(String, String)>, AuditError> {
    reads.last_mutation(resource, fix)
}

pub fn open_breakers(reads: &dyn Reads, scopes: &[String]) -> Result<Vec<String>, AuditError> {
    reads.open_breakers(scopes)
}

pub fn breakers(reads: &dyn Reads) -> Result<Vec<Breaker>, AuditError> {
    reads.breakers()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditStore, NodegroupKey};
    use serde_json::json;

    fn store() -> (AuditStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("nodemedic-control-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = AuditStore::open(&dir.join("audit.db")).unwrap();
        store
            .write_blocking(|tx| {
                let key = NodegroupKey {
                    account: "1".into(),
                    region: "r".into(),
                    cluster: "c".into(),
                    nodegroup: "ng".into(),
                };
                tx.open_incident("inc-1", &key, "subnet_no_egress_route", None, "auto", "s")
            })
            .unwrap();
        (store, dir)
    }

    #[test]
    fn a_plan_waits_is_approved_and_a_newer_plan_supersedes_a_waiting_one() {
        let (store, dir) = store();
        let first = store
            .write_blocking(|tx| {
                tx.register_plan("inc-1", "plan-a", &json!({"id": "plan-a"}), &json!({}))
            })
            .unwrap();
        assert!(first, "a new plan is announced");
        let again = store
            .write_blocking(|tx| {
                tx.register_plan("inc-1", "plan-a", &json!({"id": "plan-a"}), &json!({}))
            })
            .unwrap();
        assert!(!again, "already waiting: not announced again");
        store
            .write_blocking(|tx| {
                tx.register_plan("inc-1", "plan-b", &json!({"id": "plan-b"}), &json!({}))
            })
            .unwrap();
        assert_eq!(
            store
                .read_blocking(|c| plan(c, "plan-a"))
                .unwrap()
                .unwrap()
                .status,
            PlanStatus::Superseded
        );
        store
            .write_blocking(|tx| {
                tx.set_plan_status(
                    "plan-b",
                    PlanStatus::Approved,
                    Some("alice"),
                    Some("looks right"),
                )
            })
            .unwrap();
        let approved = store
            .read_blocking(|c| plans(c, Some(PlanStatus::Approved)))
            .unwrap();
        assert_eq!(approved.len(), 1);
        assert_eq!(approved[0].decided_by.as_deref(), Some("alice"));
        assert_eq!(approved[0].cluster, "c");
        // Registering the approved plan again (a later event) does not reset its approval.
        let before = store
            .write_blocking(|tx| tx.register_plan("inc-1", "plan-b", &json!({}), &json!({})))
            .unwrap();
        assert!(!before, "an approved plan is not asked for again");
        assert_eq!(
            store
                .read_blocking(|c| plan(c, "plan-b"))
                .unwrap()
                .unwrap()
                .status,
            PlanStatus::Approved
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_plan_that_comes_back_waits_again_unless_it_was_rejected() {
        let (store, dir) = store();
        let register = |id: &'static str| {
            store
                .write_blocking(move |tx| tx.register_plan("inc-1", id, &json!({}), &json!({})))
                .unwrap()
        };
        let status = |id: &'static str| store.read_blocking(move |c| plan(c, id)).unwrap().unwrap();
        for (id, left_as) in [
            ("plan-expired", PlanStatus::Expired),
            ("plan-stale", PlanStatus::Stale),
            ("plan-failed", PlanStatus::Failed),
        ] {
            assert!(register(id));
            store
                .write_blocking(|tx| {
                    tx.set_plan_status(id, PlanStatus::Approved, Some("alice"), None)
                })
                .unwrap();
            store
                .write_blocking(|tx| tx.set_plan_status(id, left_as, None, None))
                .unwrap();
            assert!(register(id), "{id} is asked for again");
            let row = status(id);
            assert_eq!(row.status, PlanStatus::AwaitingApproval);
            assert_eq!(row.decided_by, None, "the old approval does not carry over");
        }
        assert!(register("plan-rejected"));
        store
            .write_blocking(|tx| {
                tx.set_plan_status("plan-rejected", PlanStatus::Rejected, Some("bob"), None)
            })
            .unwrap();
        assert!(!register("plan-rejected"));
        assert_eq!(status("plan-rejected").status, PlanStatus::Rejected);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_kill_switch_turns_on_and_off() {
        let (store, dir) = store();
        assert_eq!(store.read_blocking(kill_switch).unwrap(), None);
        store
            .write_blocking(|tx| tx.set_kill_switch(true, Some("bob"), Some("storm")))
            .unwrap();
        assert_eq!(
            store
                .read_blocking(kill_switch)
                .unwrap()
                .unwrap()
                .reason
                .as_deref(),
            Some("storm")
        );
        store
            .write_blocking(|tx| tx.set_kill_switch(false, Some("bob"), None))
            .unwrap();
        assert_eq!(store.read_blocking(kill_switch).unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_breaker_opens_at_its_threshold_and_a_reset_forgives_earlier_failures() {
        let (store, dir) = store();
        let scopes = vec!["vpc:vpc-1".to_string(), "global".to_string()];
        let threshold = |scope: &str| if scope == "global" { 6 } else { 2 };
        let fail = || {
            store
                .write_blocking(|tx| {
                    tx.record_breaker_failure(
                        &scopes,
                        "inc-1",
                        "verification failed",
                        &threshold,
                        "0000",
                    )
                })
                .unwrap()
        };
        assert!(fail().is_empty());
        assert_eq!(fail(), vec!["vpc:vpc-1"]);
        assert_eq!(
            store.read_blocking(|c| open_breakers(c, &scopes)).unwrap(),
            vec!["vpc:vpc-1"]
        );
        assert!(
            store
                .write_blocking(|tx| tx.reset_breaker("vpc:vpc-1", "alice"))
                .unwrap()
        );
        assert!(
            store
                .read_blocking(|c| open_breakers(c, &scopes))
                .unwrap()
                .is_empty()
        );
        assert!(
            fail().is_empty(),
            "failures before the reset do not count again"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn mutations_are_counted_per_account_and_found_per_resource() {
        let (store, dir) = store();
        store
            .write_blocking(|tx| tx.record_mutation("1", "rtb-1", "add_nat_route", "inc-1"))
            .unwrap();
        store
            .write_blocking(|tx| tx.record_mutation("2", "rtb-2", "add_nat_route", "inc-1"))
            .unwrap();
        assert_eq!(
            store
                .read_blocking(|c| mutations_since(c, "1", "0000"))
                .unwrap(),
            1
        );
        assert!(
            store
                .read_blocking(|c| last_mutation(c, "rtb-1", "add_nat_route"))
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .read_blocking(|c| last_mutation(c, "rtb-1", "cycle_nodegroup"))
                .unwrap()
                .is_none()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
