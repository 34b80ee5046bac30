//! One remediation run: a plan for an incident goes past the guard step by step, what was
//! applied is verified and rolled back when it did not help, and the incident is concluded. A new
//! event, a resumed run and an approved plan only build a [`Remediation`]; this is the one place
//! that carries it out.

use serde_json::json;
use tracing::info;

use super::execute::Run;
use super::incident::{IncidentChoice, approved_plan_status, notice, outcome_of};
use super::{Account, Accounts, Pipeline, PipelineError};
use crate::act::Actuator;
use crate::audit::NodegroupKey;
use crate::core::checks::Diagnosis;
use crate::core::evidence::Evidence;
use crate::core::guard::{Approval, History};
use crate::core::journal::{self, Entry};
use crate::core::plan::Plan;
use crate::core::trigger::Trigger;

/// Everything one run works from.
pub(super) struct Remediation<'a> {
    pub incident: IncidentChoice,
    pub key: &'a NodegroupKey,
    /// The event that brought the run here (for an approved plan, the one the plan was made for).
    pub trigger: &'a Trigger,
    /// The message to mark handled with the outcome; none for the approvals worker.
    pub message_id: Option<String>,
    pub evidence: &'a Evidence,
    pub diagnosis: &'a Diagnosis,
    pub plan: &'a Plan,
    /// What earlier incidents say about trying again.
    pub history: History,
    /// A human's approval of exactly this plan.
    pub approval: Option<Approval>,
}

impl<W: Accounts> Pipeline<W> {
    /// Executes, verifies, rolls back what did not help, and concludes.
    pub(super) async fn remediate(
        &self,
        remediation: Remediation<'_>,
    ) -> Result<(), PipelineError> {
        let account = self
            .accounts
            .account(&remediation.trigger.account, &remediation.trigger.region)
            .await?;
        self.remediate_with(remediation, account.actuator()).await
    }

    /// [`Pipeline::remediate`] through a given actuator (the unit tests' in-memory world).
    pub(super) async fn remediate_with<A: Actuator>(
        &self,
        remediation: Remediation<'_>,
        actuator: &A,
    ) -> Result<(), PipelineError> {
        let run = self.execute(&remediation, actuator).await?;
        self.conclude(&remediation, run).await
    }

    /// Records the incident's outcome, the plan's approval state, and tells people.
    async fn conclude(&self, remediation: &Remediation<'_>, run: Run) -> Result<(), PipelineError> {
        let Remediation {
            incident,
            key,
            trigger,
            message_id,
            diagnosis,
            plan,
            evidence,
            ..
        } = remediation;
        let (key, trigger, diagnosis, plan, evidence) =
            (*key, *trigger, *diagnosis, *plan, *evidence);
        let approved_plan = remediation.approval.as_ref().map(|a| a.plan_id.as_str());
        let outcome = outcome_of(&run, plan, incident.previous_outcome);
        info!(outcome = outcome.as_str(), "incident concluded");
        let mode = self.config.policy.mode;
        let cause = diagnosis.cause().map(|c| c.code()).unwrap_or("unknown");
        let entry = Entry::Outcome(journal::OutcomeEntry::Concluded {
            outcome,
            mode,
            cause: cause.to_string(),
            plan_id: plan.id.clone(),
            steps: run.statuses.clone(),
            awaiting_approval: run.awaiting_approval,
            rolled_back: run.rolled_back,
            notes: plan.notes.clone(),
            aws_calls: evidence.calls.clone(),
        });
        let plan_body = json!(plan);
        let trigger_body = json!(trigger);
        let approved = approved_plan.map(|plan| (plan, approved_plan_status(&run)));
        let newly_waiting = self
            .store
            .write(|tx| {
                tx.record(Some(&incident.id), Some(&trigger.event_id), &entry)?;
                tx.set_outcome(&incident.id, mode.as_str(), outcome)?;
                let mut newly_waiting = false;
                if let Some((approved, status)) = &approved {
                    // Held steps (kill switch, freeze, rate limit) keep the approval for the
                    // next pass, until it expires.
                    if let Some(status) = status {
                        tx.set_plan_status(approved, *status, None, None)?;
                    }
                } else if run.awaiting_approval {
                    newly_waiting =
                        tx.register_plan(&incident.id, &plan.id, &plan_body, &trigger_body)?;
                }
                if let Some(message_id) = message_id {
                    tx.mark_event(
                        &trigger.event_id,
                        Some(message_id)
                            .filter(|m| !m.is_empty())
                            .map(String::as_str),
                        "incident",
                        Some(&incident.id),
                    )?;
                }
                Ok(newly_waiting)
            })
            .await?;
        // Announced once: a plan already waiting, approved or rejected is not asked for again.
        if run.awaiting_approval && approved_plan.is_none() && newly_waiting {
            let mut waiting = notice("plan_awaiting_approval", &incident.id, key, diagnosis);
            waiting.plan_id = Some(plan.id.clone());
            waiting.detail = plan
                .steps
                .iter()
                .map(|s| format!("{}: {}", s.fix, s.reason))
                .collect::<Vec<_>>()
                .join("\n");
            self.notifier.send(&waiting).await;
        }
        for reason in &run.escalations {
            let mut escalation = notice("escalation", &incident.id, key, diagnosis);
            escalation.detail = reason.clone();
            escalation.outcome = Some(outcome.as_str().into());
            self.notifier.send(&escalation).await;
        }
        // Every change of outcome, not every event of a storm.
        if incident.is_new || incident.previous_outcome != Some(outcome) {
            let mut concluded = notice("outcome", &incident.id, key, diagnosis);
            concluded.outcome = Some(outcome.as_str().into());
            concluded.plan_id = Some(plan.id.clone());
            self.notifier.send(&concluded).await;
        }
        Ok(())
    }
}
