//! What operators do to a running nodemedic through the shared store, from the CLI or the HTTP
//! API alike: approve or reject a plan, flip the kill switch, reset a circuit breaker. Each action
//! is one transaction with the audit record that says who did it.

use serde_json::json;

use crate::audit::control::{self, PlanRow, PlanStatus};
use crate::audit::store::now;
use crate::audit::{AuditError, AuditStore, RecordKind};

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

/// Approves (`approve = true`) or rejects a plan that awaits approval.
pub fn decide_plan(
    store: &AuditStore,
    plan_id: &str,
    approve: bool,
    by: &str,
    reason: Option<&str>,
) -> Result<PlanRow, OperateError> {
    let outcome: Result<Result<PlanRow, OperateError>, AuditError> = store.write_blocking(|tx| {
        let Some(row) = control::plan(tx.connection(), plan_id)? else {
            return Ok(Err(OperateError::NoSuchPlan(plan_id.to_string())));
        };
        if row.status != PlanStatus::AwaitingApproval.as_str() {
            return Ok(Err(OperateError::NotAwaiting {
                plan: plan_id.to_string(),
                status: row.status,
            }));
        }
        let status = if approve { PlanStatus::Approved } else { PlanStatus::Rejected };
        tx.set_plan_status(plan_id, status, Some(by), reason)?;
        tx.append(
            Some(&row.incident_id),
            None,
            RecordKind::ApprovalDecision,
            &json!({ "plan_id": plan_id, "decision": status.as_str(), "by": by, "reason": reason, "at": now() }),
        )?;
        Ok(control::plan(tx.connection(), plan_id)?.ok_or_else(|| OperateError::NoSuchPlan(plan_id.to_string())))
    });
    outcome?
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
        tx.append(
            None,
            None,
            RecordKind::KillSwitch,
            &json!({ "on": on, "by": by, "reason": reason, "at": now() }),
        )
        .map(|_| ())
    })?;
    Ok(())
}

/// Closes an open circuit breaker.
pub fn reset_breaker(store: &AuditStore, scope: &str, by: &str) -> Result<(), OperateError> {
    let reset = store.write_blocking(|tx| {
        let reset = tx.reset_breaker(scope, by)?;
        if reset {
            tx.append(
                None,
                None,
                RecordKind::BreakerReset,
                &json!({ "scope": scope, "by": by, "at": now() }),
            )?;
        }
        Ok(reset)
    })?;
    if reset {
        Ok(())
    } else {
        Err(OperateError::NoSuchBreaker(scope.to_string()))
    }
}
