//! After a plan's steps: verify that the cause is gone and, when it is not, undo what is safely
//! reversible, each undo with its intent recorded first; count the failure against the breakers.

use std::time::Duration;

use tracing::{Instrument, info, info_span, warn};

use super::execute::{Run, breaker_scopes, resource_of};
use super::{Accounts, Pipeline, PipelineError};
use crate::act::verify::{self, Nodegroup, Verification};
use crate::act::{Actuator, StepResult, StepStatus, WaitPolicy};
use crate::audit::NodegroupKey;
use crate::core::evidence::Evidence;
use crate::core::guard;
use crate::core::journal::{self, Entry};
use crate::core::plan::{Plan, Step};
use crate::core::time::now;

impl<W: Accounts> Pipeline<W> {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn verify_or_roll_back<A: Actuator>(
        &self,
        actuator: &A,
        incident_id: &str,
        key: &NodegroupKey,
        evidence: &Evidence,
        plan: &Plan,
        applied: &[(usize, StepResult)],
        run: &mut Run,
    ) -> Result<(), PipelineError> {
        let steps: Vec<&Step> = applied
            .iter()
            .map(|(position, _)| &plan.steps[*position])
            .collect();
        let group = evidence.group.as_ref().map(|g| g.name.clone());
        let instances_before: Vec<String> = evidence
            .group
            .iter()
            .flat_map(|g| g.instances.iter().map(|i| i.id.clone()))
            .collect();
        let nodegroup = Nodegroup {
            cluster: &key.cluster,
            name: &key.nodegroup,
            group: group.as_deref(),
            instances_before: &instances_before,
        };
        let wait = WaitPolicy {
            poll: Duration::from_secs_f64(self.config.verify.poll_secs),
            timeout: Duration::from_secs(self.config.verify.timeout_secs),
        };
        // Stopping mid-verification proves nothing either way: no rollback; the next run resumes.
        let verification: Verification = tokio::select! {
            verification = verify::verify(actuator, &steps, &nodegroup, wait)
                .instrument(info_span!("verification")) => verification,
            _ = self.stopping.cancelled() => return Err(PipelineError::ShuttingDown),
        };
        let entry = Entry::Verification(verification.clone());
        self.store
            .write(|tx| tx.record(Some(incident_id), None, &entry).map(|_| ()))
            .await?;
        if verification.passed {
            info!("verified: the cause is gone");
            return Ok(());
        }
        let failing: Vec<String> = verification
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{} ({})", c.what, c.detail))
            .collect();
        warn!(failing = ?failing, "verification failed; rolling back");
        run.rolled_back = true;
        self.roll_back(actuator, incident_id, key, plan, applied, run)
            .await?;
        let reason = format!("verification failed: {}", failing.join("; "));
        if run.statuses.contains(&StepStatus::Failed) {
            // The failed step already counted against the breakers: one failure per run.
            run.escalations.push(reason);
            return Ok(());
        }
        let mut scopes: Vec<String> = steps
            .iter()
            .flat_map(|s| breaker_scopes(s, evidence, key))
            .collect();
        scopes.sort();
        scopes.dedup();
        let opened = self.count_failure(incident_id, &scopes, &reason).await?;
        run.escalations.push(reason);
        for scope in opened {
            run.escalations
                .push(format!("circuit breaker {scope} opened"));
        }
        Ok(())
    }

    /// Undoes the applied steps, newest first, each with an intent record before it and a
    /// rollback record after. With the kill switch on nothing is undone either: a human decides.
    async fn roll_back<A: Actuator>(
        &self,
        actuator: &A,
        incident_id: &str,
        key: &NodegroupKey,
        plan: &Plan,
        applied: &[(usize, StepResult)],
        run: &mut Run,
    ) -> Result<(), PipelineError> {
        for (position, result) in applied.iter().rev() {
            let step = &plan.steps[*position];
            let undo = self
                .undo_step(actuator, incident_id, key, *position, step, result, true)
                .await?;
            let detail = &undo.result.detail;
            match undo.result.status {
                StepStatus::RolledBack => run.statuses[*position] = StepStatus::RolledBack,
                StepStatus::Failed => run
                    .escalations
                    .push(format!("rollback of {} failed: {detail}", step.fix)),
                _ if undo.held => run.escalations.push(format!("{} {detail}", step.fix)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Undoes one step that changed AWS: the intent first (unless the kill switch holds the
    /// undo), then the undo, then its record. `mark_step` sets the plan step rolled back; an
    /// undo of what a dry run did by accident leaves the planned step as it is.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn undo_step<A: Actuator>(
        &self,
        actuator: &A,
        incident_id: &str,
        key: &NodegroupKey,
        position: usize,
        step: &Step,
        applied: &StepResult,
        mark_step: bool,
    ) -> Result<Undo, PipelineError> {
        let calls = verify::undo_calls(step, applied);
        let intent = Entry::StepIntent(journal::StepIntent {
            position,
            fix: step.fix,
            rollback: Some(true),
            dry_run: None,
            calls: calls.clone(),
            at: now(),
        });
        let kill_switch = self
            .store
            .write(|tx| {
                let kill_switch = tx.kill_switch_at_commit()?;
                if kill_switch.is_none() && !calls.is_empty() {
                    tx.record(Some(incident_id), None, &intent)?;
                }
                Ok(kill_switch)
            })
            .await?;
        let held = kill_switch.is_some();
        let reason = kill_switch.map(|on| on.reason.unwrap_or_default());
        let undone = match guard::may_roll_back(reason.as_deref()) {
            Err(detail) => StepResult {
                status: StepStatus::Applied,
                changed: false,
                detail,
                before: applied.after.clone(),
                after: applied.after.clone(),
            },
            Ok(()) => {
                verify::rollback(actuator, step, applied)
                    .instrument(info_span!("rollback", fix = %step.fix))
                    .await
            }
        };
        // Whatever the rollback did, evidence read before it no longer stands.
        self.failure_evidence.forget_all();
        let status = undone.status;
        let detail = &undone.detail;
        let resource = resource_of(step);
        let entry = Entry::Rollback(journal::Rollback {
            position,
            fix: step.fix,
            result: undone.clone(),
        });
        self.store
            .write(|tx| {
                tx.record(Some(incident_id), None, &entry)?;
                if status == StepStatus::RolledBack {
                    if mark_step {
                        tx.set_step(incident_id, position, status.as_str(), detail)?;
                    }
                    tx.record_mutation(&key.account, &resource, "rollback", incident_id)?;
                }
                Ok(())
            })
            .await?;
        if status == StepStatus::RolledBack {
            self.metrics.fix_step(step.fix.code(), "rolled_back");
        }
        Ok(Undo {
            result: undone,
            held,
        })
    }
}

/// What became of one undo.
pub(super) struct Undo {
    pub result: StepResult,
    /// The kill switch held it: nothing was sent.
    pub held: bool,
}
