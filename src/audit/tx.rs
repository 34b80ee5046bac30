//! One open write transaction, as the pipeline, the guard's state and the CLI write: the
//! domain verbs, and the rules that build them from the backend's primitives, written once for
//! every backend.

use serde_json::Value;

use super::backend::{
    BreakerFailure, EventMark, IncidentPlan, LeaseClaim, Member, MutationRow, NewIncident,
    NewRecord, PlanSave, PlanStatusChange, PlanWrite, Reads, StepChange, StoreResult, Writes,
};
use super::control::PlanStatus;
use super::{NodegroupKey, Outcome, RecordKind};
use crate::core::journal::Entry;
use crate::core::time::now;

pub struct Tx<'a> {
    inner: &'a dyn Writes,
}

impl<'a> Tx<'a> {
    pub(super) fn new(inner: &'a dyn Writes) -> Self {
        Self { inner }
    }

    /// Reads inside the transaction see what it already wrote.
    pub fn connection(&self) -> &dyn Reads {
        self.inner.reads()
    }

    /// Appends one journal entry: its kind and its body as the journal serialises it.
    pub fn record(
        &self,
        incident_id: Option<&str>,
        event_id: Option<&str>,
        entry: &Entry,
    ) -> StoreResult<i64> {
        self.append(incident_id, event_id, entry.kind(), &entry.body()?)
    }

    pub fn append(
        &self,
        incident_id: Option<&str>,
        event_id: Option<&str>,
        kind: RecordKind,
        body: &Value,
    ) -> StoreResult<i64> {
        self.inner.append(NewRecord {
            incident_id,
            event_id,
            kind,
            body,
        })
    }

    /// Remembers what became of an event id (the first disposition wins).
    pub fn mark_event(
        &self,
        event_id: &str,
        message_id: Option<&str>,
        disposition: &str,
        incident_id: Option<&str>,
    ) -> StoreResult<()> {
        self.inner.mark_event(EventMark {
            event_id,
            message_id,
            disposition,
            incident_id,
        })
    }

    pub fn open_incident(
        &self,
        incident_id: &str,
        key: &NodegroupKey,
        cause: &str,
        subject: Option<&str>,
        mode: &str,
        summary: &str,
    ) -> StoreResult<()> {
        self.inner.open_incident(NewIncident {
            incident_id,
            key,
            cause,
            subject,
            mode,
            summary,
        })
    }

    pub fn join_nodegroup(
        &self,
        incident_id: &str,
        cluster: &str,
        nodegroup: &str,
    ) -> StoreResult<()> {
        self.inner.join_nodegroup(Member {
            incident_id,
            cluster,
            nodegroup,
        })
    }

    pub fn set_outcome(&self, incident_id: &str, mode: &str, outcome: Outcome) -> StoreResult<()> {
        self.inner.set_outcome(incident_id, mode, outcome)
    }

    pub fn set_plan(
        &self,
        incident_id: &str,
        plan_id: &str,
        steps: &[(String, String, String)],
    ) -> StoreResult<()> {
        self.inner.set_plan(IncidentPlan {
            incident_id,
            plan_id,
            steps,
        })
    }

    pub fn set_step(
        &self,
        incident_id: &str,
        position: usize,
        status: &str,
        detail: &str,
    ) -> StoreResult<()> {
        self.inner.set_step(StepChange {
            incident_id,
            position,
            status,
            detail,
        })
    }

    /// Registers a plan as waiting for approval; whether it newly waits (a plan still waiting,
    /// or already decided and not to be asked again, does not). The incident's other waiting
    /// plans are superseded.
    pub fn register_plan(
        &self,
        incident_id: &str,
        plan_id: &str,
        plan: &Value,
        trigger: &Value,
    ) -> StoreResult<bool> {
        let write = PlanWrite {
            incident_id,
            plan_id,
            plan,
            trigger,
        };
        let before = self.inner.stored_plan(plan_id)?;
        self.inner.supersede_waiting_plans(incident_id, plan_id)?;
        match before {
            None => {
                self.inner.save_plan(write, PlanSave::Insert)?;
                Ok(true)
            }
            Some(before) if PlanStatus::settled(&before.status) => {
                // The latest event of the same incident is what an approval re-collects for.
                if before.status == PlanStatus::AwaitingApproval.as_str()
                    && before.incident_id == incident_id
                {
                    self.inner.save_plan(write, PlanSave::RefreshTrigger)?;
                }
                Ok(false)
            }
            Some(_) => {
                self.inner.save_plan(write, PlanSave::Reopen)?;
                Ok(true)
            }
        }
    }

    pub fn set_plan_status(
        &self,
        plan_id: &str,
        status: PlanStatus,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> StoreResult<()> {
        self.inner.set_plan_status(PlanStatusChange {
            plan_id,
            status,
            by,
            reason,
        })
    }

    pub fn set_kill_switch(
        &self,
        on: bool,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> StoreResult<()> {
        self.inner.set_kill_switch(on, by, reason)
    }

    /// Counts a mutation against the account's limit of mutations since `since`; the
    /// reservation, or `None` when the limit is reached. Concurrent reservations of one account
    /// are serialised, so that replicas counting at once cannot all pass the limit.
    /// Ends every console session of `approver`: the epoch their sessions are signed with moves.
    pub fn end_sessions(&self, approver: &str) -> StoreResult<u64> {
        let next = super::control::session_epoch(self.connection(), approver)?.saturating_add(1);
        self.inner.set_control(
            &format!("session_epoch:{approver}"),
            &next.to_string(),
            approver,
        )?;
        Ok(next)
    }

    /// The key nodemedic signs its own queue events with, shared by every replica: the stored
    /// one, or `fresh` when there is none yet.
    pub fn event_key(&self, fresh: &str) -> StoreResult<String> {
        self.inner.ensure_control("event_key", fresh)
    }

    /// The kill switch, read so that the commit conflicts if it is flipped before then.
    pub fn kill_switch_at_commit(&self) -> StoreResult<Option<super::control::KillSwitch>> {
        self.inner.kill_switch_at_commit()
    }

    pub fn reserve_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
        since: &str,
        limit: u32,
    ) -> StoreResult<Option<i64>> {
        self.inner.lock_rate(account)?;
        if self.connection().mutations_since(account, since)? >= limit {
            return Ok(None);
        }
        let row = MutationRow {
            account,
            resource,
            fix,
            incident_id,
        };
        self.inner.record_mutation(row).map(Some)
    }

    /// Takes back a reservation whose mutation was not made.
    pub fn release_mutation(&self, reservation: i64) -> StoreResult<()> {
        self.inner.release_mutation(reservation)
    }

    pub fn record_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
    ) -> StoreResult<()> {
        let row = MutationRow {
            account,
            resource,
            fix,
            incident_id,
        };
        self.inner.record_mutation(row).map(|_| ())
    }

    /// Counts a failed fix against each scope and opens the breakers whose failures since
    /// `window_start` reach their threshold; the scopes opened now.
    pub fn record_breaker_failure(
        &self,
        scopes: &[String],
        incident_id: &str,
        reason: &str,
        threshold_for: &dyn Fn(&str) -> u32,
        window_start: &str,
    ) -> StoreResult<Vec<String>> {
        let at = now();
        let mut opened = Vec::new();
        for scope in scopes {
            self.inner.add_breaker_failure(BreakerFailure {
                scope,
                at: &at,
                incident_id,
                reason,
            })?;
            if self.inner.breaker_open(scope)? {
                continue;
            }
            let failures = self.inner.breaker_failures_since(scope, window_start)?;
            if failures >= threshold_for(scope) {
                let why = format!("{failures} failures since {window_start}: {reason}");
                self.inner.open_breaker(scope, &at, &why)?;
                opened.push(scope.clone());
            }
        }
        Ok(opened)
    }

    /// Closes an open breaker, forgiving the failures so far; whether it was open.
    pub fn reset_breaker(&self, scope: &str, by: &str) -> StoreResult<bool> {
        self.inner.reset_breaker(scope, by)
    }

    /// Takes `key` for `holder` until `expires_at_ms` when it is free, expired, or already
    /// `holder`'s; returns whether `holder` has it now.
    pub fn acquire_lease(
        &self,
        key: &str,
        holder: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> StoreResult<bool> {
        self.inner.acquire_lease(LeaseClaim {
            key,
            holder,
            now_ms,
            expires_at_ms,
        })
    }

    pub fn release_lease(&self, key: &str, holder: &str) -> StoreResult<()> {
        self.inner.release_lease(key, holder)
    }
}
