//! Working an incident: find the shared resource it is about, file it (or join the incident it
//! belongs to), execute its plan (`execute`), and conclude: outcome, approval state, notices.

use std::time::Duration;

use tracing::{Instrument, info, info_span};

use super::execute::Run;
use super::remediation::Remediation;
use super::{Accounts, Inbound, Pipeline, PipelineError};
use crate::act::StepStatus;
use crate::audit::control::PlanStatus;
use crate::audit::{IncidentSummary, NodegroupKey, Outcome, SubjectScope};
use crate::core::checks::{Cause, Diagnosis, Subject};
use crate::core::evidence::Evidence;
use crate::core::guard::History;
use crate::core::ids::{LockKey, StormSubject};
use crate::core::journal::{self, Entry};
use crate::core::plan::{Plan, plan};
use crate::core::time::Timestamp;
use crate::core::time::timestamp;
use crate::core::trigger::Trigger;
use crate::notify::Notice;

/// How the incident an event belongs to was found.
pub(super) struct IncidentChoice {
    pub id: String,
    pub is_new: bool,
    pub previous_outcome: Option<Outcome>,
}

/// The storm subject of a finding, as the store keys it.
pub(super) fn storm_subject(subject: &Subject) -> Option<String> {
    StormSubject::of(subject).map(|s| s.to_string())
}

/// The shared resources a nodegroup's launches depend on, as the store keys them.
pub(super) fn related_subjects(evidence: &Evidence) -> Vec<String> {
    StormSubject::related(evidence)
        .iter()
        .map(StormSubject::to_string)
        .collect()
}

/// A notice about an incident.
pub(super) fn notice(
    event: &'static str,
    incident: &str,
    key: &NodegroupKey,
    diagnosis: &Diagnosis,
) -> Notice {
    Notice {
        event,
        incident_id: incident.to_string(),
        cluster: key.cluster.clone(),
        nodegroup: key.nodegroup.clone(),
        cause: diagnosis
            .cause()
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| "unknown".into()),
        summary: diagnosis
            .primary()
            .map(|f| f.summary.clone())
            .unwrap_or_default(),
        outcome: None,
        plan_id: None,
        detail: String::new(),
    }
}

impl<W: Accounts> Pipeline<W> {
    pub(super) async fn work_incident(
        &self,
        key: NodegroupKey,
        trigger: Trigger,
        message: &Inbound,
        evidence: Evidence,
        diagnosis: Diagnosis,
    ) -> Result<(), PipelineError> {
        let subject = diagnosis.primary().and_then(|f| storm_subject(&f.subject));
        // A failure the world no longer explains may be one a fix of a shared resource it uses
        // has just cured (the evidence was read after the fix): it is checked against those too.
        let shared: Vec<String> = match &subject {
            Some(subject) => vec![subject.clone()],
            None if diagnosis.cause() == Some(Cause::Unknown) => related_subjects(&evidence),
            None => Vec::new(),
        };
        // One fix per shared resource: other nodegroups' handlers wait, then find it done. Locks
        // are taken in sorted order so that two handlers never wait for each other.
        let mut _held = Vec::with_capacity(shared.len());
        for subject in &shared {
            _held.push(
                self.locks
                    .lock(&LockKey::Subject {
                        account: &key.account,
                        region: &key.region,
                        subject,
                    })
                    .await,
            );
        }
        for subject in &shared {
            if self
                .superseded_on_subject(&trigger, &key, subject, message)
                .await?
            {
                return Ok(());
            }
        }
        let plan = if self.config.policy.mode.plans() {
            plan(&diagnosis, &evidence)
        } else {
            Plan::empty()
        };
        let (incident, history) = self
            .file_incident(
                &key,
                subject.as_deref(),
                &trigger,
                message,
                &evidence,
                &diagnosis,
                &plan,
            )
            .await?;
        let cause = diagnosis.cause().map(|c| c.code()).unwrap_or("unknown");
        if incident.is_new {
            self.metrics.incident_opened(cause);
        }
        let span = info_span!("incident", incident_id = %incident.id, cluster = %key.cluster, nodegroup = %key.nodegroup, cause);
        async {
            info!(new = incident.is_new, plan_id = %plan.id, steps = plan.steps.len(), calls = evidence.calls.total(),
                "diagnosed: {}", diagnosis.primary().map(|f| f.summary.as_str()).unwrap_or(""));
            self.remediate(Remediation {
                incident,
                key: &key,
                trigger: &trigger,
                message_id: Some(message.message_id.clone().unwrap_or_default()),
                evidence: &evidence,
                diagnosis: &diagnosis,
                plan: &plan,
                history,
                approval: None,
            })
            .await
        }
        .instrument(span)
        .await
    }

    /// An event older than a fix applied to the shared resource it is about describes the world
    /// before the fix: it joins that incident and changes nothing.
    async fn superseded_on_subject(
        &self,
        trigger: &Trigger,
        key: &NodegroupKey,
        subject: &str,
        message: &Inbound,
    ) -> Result<bool, PipelineError> {
        let event_time = timestamp(trigger.time);
        let superseded = self
            .store
            .write(|tx| {
                let Some((incident, applied_at)) = tx
                    .connection()
                    .last_fix_on_subject(SubjectScope::near(key, subject))?
                else {
                    return Ok(None);
                };
                if event_time >= applied_at {
                    return Ok(None);
                }
                let entry = Entry::EventSuperseded(journal::EventSuperseded {
                    event_time: event_time.clone(),
                    fix_applied_at: applied_at,
                    message_id: message.message_id.clone(),
                    nodegroup: Some(format!("{}/{}", key.cluster, key.nodegroup)),
                    subject: Some(subject.to_string()),
                });
                tx.record(Some(&incident), Some(&trigger.event_id), &entry)?;
                tx.join_nodegroup(&incident, &key.cluster, &key.nodegroup)?;
                tx.mark_event(
                    &trigger.event_id,
                    message.message_id.as_deref(),
                    "superseded",
                    Some(&incident),
                )?;
                Ok(Some(incident))
            })
            .await?;
        if let Some(incident) = &superseded {
            info!(incident_id = %incident, "event predates the fix of the shared resource; nothing to do");
        }
        Ok(superseded.is_some())
    }

    /// Finds the incident this event belongs to, or opens one, and records what was found.
    #[allow(clippy::too_many_arguments)]
    async fn file_incident(
        &self,
        key: &NodegroupKey,
        subject: Option<&str>,
        trigger: &Trigger,
        message: &Inbound,
        evidence: &Evidence,
        diagnosis: &Diagnosis,
        plan: &Plan,
    ) -> Result<(IncidentChoice, History), PipelineError> {
        let cause = diagnosis.cause().map(|c| c.code()).unwrap_or("unknown");
        let summary = diagnosis
            .primary()
            .map(|f| f.summary.as_str())
            .unwrap_or_default();
        let window_start = Timestamp::window_start(Duration::from_secs(
            self.config.remediation.incident_window_secs,
        ))
        .to_string();
        let received = Entry::EventReceived(journal::EventReceived {
            trigger: trigger.clone(),
            message_id: message.message_id.clone(),
            receive_count: Some(message.receive_count),
            resumed: None,
            trace_id: crate::telemetry::current_trace_id(),
        });
        let evidence_entry = Entry::Evidence(Box::new(evidence.clone()));
        let diagnosis_entry = Entry::Diagnosis(Box::new(diagnosis.clone()));
        let plan_entry = Entry::Plan(Box::new(plan.clone()));
        let steps: Vec<(String, String, String)> = plan
            .steps
            .iter()
            .map(|s| {
                (
                    s.fix.code().to_string(),
                    StepStatus::Planned.as_str().to_string(),
                    s.reason.clone(),
                )
            })
            .collect();
        Ok(self
            .store
            .write(|tx| {
                let earlier = match subject {
                    Some(subject) => tx
                        .connection()
                        .incidents_for_subject(SubjectScope::near(key, subject), cause)?,
                    None => tx.connection().incidents_for(key, cause)?,
                };
                let reusable = earlier.iter().find(|incident| {
                    incident.updated_at >= window_start
                        && matches!(
                            Some(incident.outcome),
                            Some(
                                Outcome::InProgress
                                    | Outcome::Planned
                                    | Outcome::NoFix
                                    | Outcome::Failed
                            )
                        )
                });
                let choice = match reusable {
                    Some(incident) => {
                        tx.join_nodegroup(&incident.incident_id, &key.cluster, &key.nodegroup)?;
                        IncidentChoice {
                            id: incident.incident_id.clone(),
                            is_new: false,
                            previous_outcome: Some(incident.outcome),
                        }
                    }
                    None => {
                        let id =
                            format!("inc-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
                        tx.open_incident(
                            &id,
                            key,
                            cause,
                            subject,
                            self.config.policy.mode.as_str(),
                            summary,
                        )?;
                        IncidentChoice {
                            id,
                            is_new: true,
                            previous_outcome: None,
                        }
                    }
                };
                let history = base_history(&earlier, &choice.id, &window_start);
                let id = choice.id.as_str();
                for entry in [&received, &evidence_entry, &diagnosis_entry, &plan_entry] {
                    tx.record(Some(id), Some(&trigger.event_id), entry)?;
                }
                tx.set_plan(id, &plan.id, &steps)?;
                Ok((choice, history))
            })
            .await?)
    }
}

/// What the incidents for the same nodegroup (or shared resource) and cause, most recently
/// updated first, say about trying a fix again. The last concluded one having failed needs a
/// human, however long ago: that is how a fix that did not help is never looped on.
pub(super) fn base_history(
    earlier: &[IncidentSummary],
    current: &str,
    window_start: &str,
) -> History {
    let concluded = earlier.iter().find(|i| {
        matches!(
            Some(i.outcome),
            Some(Outcome::Failed | Outcome::Fixed | Outcome::Resolved)
        )
    });
    History {
        failed_fix: concluded
            .filter(|i| i.outcome == Outcome::Failed)
            .map(|i| i.incident_id.clone()),
        fix_did_not_hold: earlier
            .iter()
            .find(|i| {
                i.incident_id != current
                    && i.updated_at.as_str() >= window_start
                    && i.outcome == Outcome::Fixed
            })
            .map(|i| i.incident_id.clone()),
        ..History::default()
    }
}

/// What running an approved plan makes of it; `None` while steps are only held.
pub(super) fn approved_plan_status(run: &Run) -> Option<PlanStatus> {
    if run.rolled_back || run.statuses.contains(&StepStatus::Failed) {
        Some(PlanStatus::Failed)
    } else if run.statuses.contains(&StepStatus::Skipped) {
        Some(PlanStatus::Refused)
    } else if run.statuses.iter().all(|s| *s == StepStatus::Applied) {
        Some(PlanStatus::Applied)
    } else {
        None
    }
}

/// The incident's outcome from what this run did.
pub(super) fn outcome_of(run: &Run, plan: &Plan, previous: Option<Outcome>) -> Outcome {
    if run.rolled_back || run.statuses.contains(&StepStatus::Failed) {
        return Outcome::Failed;
    }
    if plan.steps.is_empty() {
        return Outcome::NoFix;
    }
    if run.statuses.iter().all(|s| *s == StepStatus::Applied) {
        return Outcome::Fixed;
    }
    // A failure stays visible until something is applied again.
    if previous == Some(Outcome::Failed) && !run.statuses.contains(&StepStatus::Applied) {
        return Outcome::Failed;
    }
    Outcome::Planned
}

#[cfg(test)]
mod tests;
