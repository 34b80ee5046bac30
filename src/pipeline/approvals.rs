//! Approved plans: before one is applied the evidence is collected again and the plan made again.
//! Only when that gives the same plan id (the same calls against the same world) does it run; a
//! plan the world has moved away from is stale, is not applied, and is planned and asked for anew.

use std::time::Duration;

use serde_json::json;
use tracing::{info, warn};

use super::incident::{IncidentChoice, base_history};
use super::remediation::Remediation;
use super::{Account, Accounts, Pipeline, PipelineError};
use crate::audit::control::{self, PlanRow, PlanStatus};
use crate::audit::{NodegroupKey, Outcome, SubjectScope};
use crate::aws::collect::Scope;
use crate::core::checks::diagnose;
use crate::core::evidence::CallLog;
use crate::core::evidence::Target;
use crate::core::guard::Approval;
use crate::core::ids::LockKey;
use crate::core::journal::{self, Entry};
use crate::core::plan::plan;
use crate::core::time::Timestamp;
use crate::core::time::now;
use crate::core::trigger::Trigger;
use crate::notify::Notice;

enum Processed {
    Applied,
    Stale,
    Expired,
}

/// What one pass over the approved plans did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalsPass {
    pub applied: usize,
    pub stale: usize,
    pub expired: usize,
}

impl<W: Accounts> Pipeline<W> {
    /// Acts on every approved plan: expires the old, applies the still-valid, and re-plans the
    /// stale.
    pub async fn process_approvals(&self) -> Result<ApprovalsPass, PipelineError> {
        let mut pass = ApprovalsPass::default();
        let plan_ttl = Duration::from_secs(self.config.guard.plan_ttl_secs);
        let waiting = self
            .store
            .read(|c| control::plans(c, Some(PlanStatus::AwaitingApproval)))
            .await?;
        for row in waiting {
            if row.unanswered_at(plan_ttl, Timestamp::now()) {
                pass.expired += self.expire_unanswered(row, plan_ttl).await? as usize;
            }
        }
        let approved = self
            .store
            .read(|c| control::plans(c, Some(PlanStatus::Approved)))
            .await?;
        for row in approved {
            let plan_id = row.plan_id.clone();
            match self.process_approved(row).await {
                Ok(Some(Processed::Applied)) => pass.applied += 1,
                Ok(Some(Processed::Stale)) => pass.stale += 1,
                Ok(Some(Processed::Expired)) => pass.expired += 1,
                Ok(None) => {}
                Err(error) => {
                    warn!(%plan_id, %error, "approved plan not processed; trying again later")
                }
            }
        }
        Ok(pass)
    }

    /// Works one approved plan under the same locks a queue handler of its incident takes (its
    /// nodegroup, then its shared resource), re-reading the plan once they are held: a handler or
    /// another pass may have acted on it meanwhile. `None` when there was nothing left to do.
    async fn process_approved(&self, row: PlanRow) -> Result<Option<Processed>, PipelineError> {
        let trigger: Trigger = match serde_json::from_value(row.trigger.clone()) {
            Ok(trigger) => trigger,
            Err(error) => {
                self.mark_stale(
                    &row,
                    None,
                    &format!("the plan's trigger cannot be read: {error}"),
                )
                .await?;
                return Ok(Some(Processed::Stale));
            }
        };
        let key = NodegroupKey {
            account: trigger.account.clone(),
            region: trigger.region.clone(),
            cluster: row.cluster.clone(),
            nodegroup: row.nodegroup.clone(),
        };
        let subject = self
            .store
            .read(|c| c.incident_subject(&row.incident_id))
            .await?;
        let _nodegroup = self.locks.lock(&LockKey::Nodegroup(&key)).await;
        let _shared = match &subject {
            Some(subject) => Some(
                self.locks
                    .lock(&LockKey::Subject {
                        account: &key.account,
                        region: &key.region,
                        subject,
                    })
                    .await,
            ),
            None => None,
        };
        let Some(row) = self
            .store
            .read(|c| control::plan(c, &row.plan_id))
            .await?
            .filter(|r| r.status == PlanStatus::Approved)
        else {
            return Ok(None);
        };
        if self.expire_if_old(&row).await? {
            return Ok(Some(Processed::Expired));
        }
        Ok(Some(
            if self
                .apply_approved(&row, &trigger, &key, subject.as_deref())
                .await?
            {
                Processed::Applied
            } else {
                Processed::Stale
            },
        ))
    }

    /// Expires a plan nobody decided in time, unless a decision got in first.
    async fn expire_unanswered(&self, row: PlanRow, ttl: Duration) -> Result<bool, PipelineError> {
        info!(plan_id = %row.plan_id, "plan not decided in time: expired");
        let expired = self
            .store
            .write(|tx| {
                let current = control::plan(tx.connection(), &row.plan_id)?;
                if !current.is_some_and(|r| r.unanswered_at(ttl, Timestamp::now())) {
                    return Ok(false);
                }
                crate::operate::expire_unanswered(tx, &row, ttl)?;
                Ok(true)
            })
            .await?;
        Ok(expired)
    }

    async fn expire_if_old(&self, row: &PlanRow) -> Result<bool, PipelineError> {
        let ttl = Duration::from_secs(self.config.guard.approval_ttl_secs);
        let decided = row
            .decided_at
            .as_deref()
            .and_then(|at| Timestamp::parse(at).ok())
            .unwrap_or_else(Timestamp::now);
        if Timestamp::now().since(decided) < ttl {
            return Ok(false);
        }
        info!(plan_id = %row.plan_id, "approval expired");
        let entry = Entry::ApprovalDecision(journal::ApprovalDecision::ApprovalExpired {
            plan_id: row.plan_id.clone(),
            decision: journal::Verdict::Expired,
            approved_by: row.decided_by.clone(),
            approved_at: row.decided_at.clone(),
            ttl_secs: ttl.as_secs(),
        });
        self.store
            .write(|tx| {
                tx.set_plan_status(&row.plan_id, PlanStatus::Expired, None, None)?;
                tx.record(Some(&row.incident_id), None, &entry).map(|_| ())
            })
            .await?;
        Ok(true)
    }

    /// Returns whether the plan was applied (false: it was stale).
    async fn apply_approved(
        &self,
        row: &PlanRow,
        trigger: &Trigger,
        key: &NodegroupKey,
        subject: Option<&str>,
    ) -> Result<bool, PipelineError> {
        let account = match self.accounts.account(&key.account, &key.region).await {
            Ok(account) => account,
            Err(refused) => {
                // The settings changed since approval: the plan's account is no longer served.
                self.mark_stale(row, None, &refused.to_string()).await?;
                return Ok(false);
            }
        };
        // A plan held in the middle of an interrupted run is finished from where it stopped:
        // re-planning would only see that run's half-done work.
        if let Some(resumable) = self.resumable_incident(&row.incident_id).await?
            && resumable.plan.id == row.plan_id
        {
            let target = Target {
                cluster: row.cluster.clone(),
                nodegroup: row.nodegroup.clone(),
                group: None,
            };
            let evidence = super::resume::resume_evidence(&account, trigger, target).await?;
            let records = self.store.read(|c| c.records(&row.incident_id)).await?;
            if let Some(why) = self.remaining_steps_stale(&resumable, &records, &evidence) {
                self.mark_stale(row, None, &why).await?;
                return Ok(false);
            }
            let approval = approval_of(row);
            self.resume_with(resumable, key, trigger, None, evidence, Some(approval))
                .await?;
            return Ok(true);
        }
        let target = Target {
            cluster: row.cluster.clone(),
            nodegroup: row.nodegroup.clone(),
            group: None,
        };
        let evidence = account
            .collect(
                trigger,
                target,
                Scope::for_trigger(trigger),
                CallLog::default(),
            )
            .await
            .map_err(|e| PipelineError::Collect(e.to_string()))?;
        let diagnosis = diagnose(&evidence);
        let fresh = plan(&diagnosis, &evidence);
        let (previous_outcome, history) = {
            let window_start = Timestamp::window_start(Duration::from_secs(
                self.config.remediation.incident_window_secs,
            ))
            .to_string();
            self.store
                .read(|c| {
                    let previous = c.incident(&row.incident_id)?.map(|i| i.outcome);
                    let earlier = match subject {
                        Some(subject) => {
                            c.incidents_for_subject(SubjectScope::near(key, subject), &row.cause)?
                        }
                        None => c.incidents_for(key, &row.cause)?,
                    };
                    Ok((
                        previous,
                        base_history(&earlier, &row.incident_id, &window_start),
                    ))
                })
                .await?
        };
        let incident = IncidentChoice {
            id: row.incident_id.clone(),
            is_new: false,
            previous_outcome,
        };
        {
            let evidence_entry = Entry::Evidence(Box::new(evidence.clone()));
            let diagnosis_entry = Entry::Diagnosis(Box::new(diagnosis.clone()));
            self.store
                .write(|tx| {
                    tx.record(Some(&row.incident_id), None, &evidence_entry)?;
                    tx.record(Some(&row.incident_id), None, &diagnosis_entry)
                        .map(|_| ())
                })
                .await?;
        }
        // A plan that no longer matches the world runs as a new plan would: the guard asks again.
        let approval = if fresh.id != row.plan_id {
            let why = if diagnosis.is_healthy() {
                "the cause is gone".to_string()
            } else {
                let before: Vec<String> = row.plan["rests_on"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| !fresh.rests_on.iter().any(|f| json!(f) == **r))
                    .filter_map(|r| r["resource"].as_str().map(str::to_string))
                    .collect();
                format!(
                    "the world changed since approval ({})",
                    if before.is_empty() {
                        "the plan differs".into()
                    } else {
                        format!("changed: {}", before.join(", "))
                    }
                )
            };
            self.mark_stale(row, Some(&fresh.id), &why).await?;
            if diagnosis.is_healthy() {
                let entry = Entry::Outcome(journal::OutcomeEntry::Resolved {
                    outcome: Outcome::Resolved,
                    reason: "the cause went away before the approved plan ran".into(),
                });
                self.store
                    .write(|tx| {
                        tx.record(Some(&row.incident_id), None, &entry)?;
                        tx.set_outcome(
                            &row.incident_id,
                            self.config.policy.mode.as_str(),
                            Outcome::Resolved,
                        )
                    })
                    .await?;
                self.notifier
                    .send(&Notice {
                        event: "outcome",
                        incident_id: row.incident_id.clone(),
                        cluster: key.cluster.clone(),
                        nodegroup: key.nodegroup.clone(),
                        cause: row.cause.clone(),
                        summary: "the cause went away before the approved plan ran".into(),
                        outcome: Some("resolved".into()),
                        plan_id: Some(row.plan_id.clone()),
                        detail: String::new(),
                    })
                    .await;
                return Ok(false);
            }
            // Plan again and let the guard decide as for any new plan: what needs approval asks again.
            let plan_entry = Entry::Plan(Box::new(fresh.clone()));
            let steps: Vec<(String, String, String)> = fresh
                .steps
                .iter()
                .map(|s| {
                    (
                        s.fix.code().to_string(),
                        "planned".to_string(),
                        s.reason.clone(),
                    )
                })
                .collect();
            self.store
                .write(|tx| {
                    tx.record(Some(&row.incident_id), None, &plan_entry)?;
                    tx.set_plan(&row.incident_id, &fresh.id, &steps)
                })
                .await?;
            None
        } else {
            let approval = approval_of(row);
            info!(plan_id = %row.plan_id, approved_by = %approval.by, "applying the approved plan");
            Some(approval)
        };
        let applied_as_approved = approval.is_some();
        self.remediate(Remediation {
            incident,
            key,
            trigger,
            message_id: None,
            evidence: &evidence,
            diagnosis: &diagnosis,
            plan: &fresh,
            history,
            approval,
        })
        .await?;
        Ok(applied_as_approved)
    }

    async fn mark_stale(
        &self,
        row: &PlanRow,
        fresh: Option<&str>,
        why: &str,
    ) -> Result<(), PipelineError> {
        warn!(plan_id = %row.plan_id, why, "approved plan is stale; not applied");
        let entry = Entry::PlanStale(journal::PlanStale {
            plan_id: row.plan_id.clone(),
            new_plan_id: fresh.map(str::to_string),
            why: why.to_string(),
            approved_by: row.decided_by.clone(),
            at: now(),
        });
        self.store
            .write(|tx| {
                tx.set_plan_status(&row.plan_id, PlanStatus::Stale, None, None)?;
                tx.record(Some(&row.incident_id), None, &entry).map(|_| ())
            })
            .await?;
        Ok(())
    }
}

/// The approval a decided plan carries.
fn approval_of(row: &PlanRow) -> Approval {
    Approval {
        plan_id: row.plan_id.clone(),
        by: row.decided_by.clone().unwrap_or_else(|| "unknown".into()),
        reason: row.decision_reason.clone(),
        at: row
            .decided_at
            .as_deref()
            .and_then(|at| Timestamp::parse(at).ok())
            .unwrap_or_else(Timestamp::now),
    }
}
