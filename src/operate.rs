//! What operators do to a running nodemedic through the shared store, from the CLI or the HTTP
//! API alike: approve or reject a plan, flip the kill switch, reset a circuit breaker. Each action
//! is one transaction with the audit record that says who did it.

use std::time::Duration;

use crate::audit::control::{self, PlanRow, PlanStatus};
use crate::audit::{AuditError, AuditStore, Tx};
use crate::core::journal::{ApprovalDecision, BreakerReset, Entry, KillSwitchEntry, Verdict};
use crate::core::time::Timestamp;
use crate::core::time::now;

#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    #[error("no plan {0}")]
    NoSuchPlan(String),
    #[error("plan {plan} is {status}, not awaiting approval")]
    NotAwaiting { plan: String, status: String },
    #[error("no open circuit breaker {0}")]
    NoSuchBreaker(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Approves (`approve = true`) or rejects a plan that awaits approval. A plan that waited longer
/// than `plan_ttl` is expired instead (recorded) and refused, even when the daemon has not got to
/// it yet.
pub fn decide_plan(
    store: &AuditStore,
    plan_id: &str,
    approve: bool,
    by: &str,
    reason: Option<&str>,
    plan_ttl: Duration,
) -> Result<PlanRow, OperateError> {
    let outcome: Result<Result<PlanRow, OperateError>, AuditError> = store.write_blocking(|tx| {
        let Some(row) = control::plan(tx.connection(), plan_id)? else {
            return Ok(Err(OperateError::NoSuchPlan(plan_id.to_string())));
        };
        if row.unanswered_at(plan_ttl, Timestamp::now()) {
            expire_unanswered(tx, &row, plan_ttl)?;
            return Ok(Err(OperateError::NotAwaiting {
                plan: plan_id.to_string(),
                status: PlanStatus::Expired.as_str().to_string(),
            }));
        }
        if row.status != PlanStatus::AwaitingApproval {
            return Ok(Err(OperateError::NotAwaiting {
                plan: plan_id.to_string(),
                status: row.status.as_str().to_string(),
            }));
        }
        let (status, verdict) = if approve {
            (PlanStatus::Approved, Verdict::Approved)
        } else {
            (PlanStatus::Rejected, Verdict::Rejected)
        };
        tx.set_plan_status(plan_id, status, Some(by), reason)?;
        let entry = Entry::ApprovalDecision(ApprovalDecision::Decided {
            plan_id: plan_id.to_string(),
            decision: verdict,
            by: by.to_string(),
            reason: reason.map(str::to_string),
            at: now(),
        });
        tx.record(Some(&row.incident_id), None, &entry)?;
        Ok(control::plan(tx.connection(), plan_id)?
            .ok_or_else(|| OperateError::NoSuchPlan(plan_id.to_string())))
    });
    outcome?
}

/// Marks a plan nobody decided within `plan_ttl` expired, with the record that says so.
pub fn expire_unanswered(tx: &Tx, row: &PlanRow, plan_ttl: Duration) -> Result<(), AuditError> {
    tx.set_plan_status(&row.plan_id, PlanStatus::Expired, None, None)?;
    let entry = Entry::ApprovalDecision(ApprovalDecision::Unanswered {
        plan_id: row.plan_id.clone(),
        decision: Verdict::Expired,
        reason: format!("not approved or rejected within {} s", plan_ttl.as_secs()),
        waiting_since: row.updated_at.clone(),
        at: now(),
    });
    tx.record(Some(&row.incident_id), None, &entry).map(|_| ())
}

/// Turns the kill switch on or off: every mutation stops at once, without a restart.
pub fn set_kill_switch(
    store: &AuditStore,
    on: bool,
    by: &str,
    reason: Option<&str>,
) -> Result<(), OperateError> {
    store.write_blocking(|tx| {
        tx.set_kill_switch(on, Some(by), reason)?;
        let entry = Entry::KillSwitch(KillSwitchEntry {
            on,
            by: by.to_string(),
            reason: reason.map(str::to_string),
            at: now(),
        });
        tx.record(None, None, &entry).map(|_| ())
    })?;
    Ok(())
}

/// Closes an open circuit breaker.
pub fn reset_breaker(store: &AuditStore, scope: &str, by: &str) -> Result<(), OperateError> {
    let reset = store.write_blocking(|tx| {
        let reset = tx.reset_breaker(scope, by)?;
        if reset {
            let entry = Entry::BreakerReset(BreakerReset {
                scope: scope.to_string(),
                by: by.to_string(),
                at: now(),
            });
            tx.record(None, None, &entry)?;
        }
        Ok(reset)
    })?;
    if reset {
        Ok(())
    } else {
        Err(OperateError::NoSuchBreaker(scope.to_string()))
    }
}
