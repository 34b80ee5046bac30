//! Resuming an incident whose last run never concluded (the process died, or shut down and handed
//! the message back). The audit trail says how far it got: every step applied since the last
//! `outcome` record is taken as done, not applied again; a step whose intent was recorded but not
//! its result was interrupted, and is only redone when redoing it cannot double its effect.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use tracing::{info, warn};

use super::incident::IncidentChoice;
use super::remediation::Remediation;
use super::{Account, Accounts, Disposition, Inbound, Pipeline, PipelineError};
use crate::act::verify::{self, Nodegroup};
use crate::act::{Actuator, StepResult, StepStatus, WaitPolicy};
use crate::audit::{NodegroupKey, Record};
use crate::aws::collect::Scope;
use crate::core::evidence::CallLog;
use crate::core::evidence::Evidence;
use crate::core::evidence::Target;
use crate::core::guard::{Approval, History};
use crate::core::journal::{self, Entry, RecordKind};
use crate::core::plan::{Action, Step};
use crate::core::trigger::Trigger;

/// The exact calls of a step, as its intent record names them.
pub(super) fn calls_key(step: &Step) -> String {
    serde_json::to_string(&step.action.api_calls()).unwrap_or_default()
}

/// What the unconcluded run of an incident did, keyed by the steps' exact calls.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Unfinished {
    /// Steps whose result was recorded (applied or failed).
    pub results: HashMap<String, StepResult>,
    /// Steps whose intent was recorded but not their result.
    pub interrupted: HashSet<String>,
}

impl Unfinished {
    /// A step this run already applied.
    pub fn applied(&self, step: &Step) -> Option<&StepResult> {
        self.results
            .get(&calls_key(step))
            .filter(|r| r.status == crate::act::StepStatus::Applied)
    }

    pub fn was_interrupted(&self, step: &Step) -> bool {
        self.interrupted.contains(&calls_key(step))
    }
}

/// The kind of a stored record; kinds this build does not know are none of the ones resume reads.
fn kind_of(record: &Record) -> Option<RecordKind> {
    RecordKind::parse(&record.kind)
}

/// A record of one of the kinds resume reads, as its journal entry. A body that does not have
/// its kind's shape is logged and passed over: it cannot say what a step did.
fn entry_of(record: &Record) -> Option<Entry> {
    match Entry::decode(&record.kind, &record.body) {
        Ok(entry) => Some(entry),
        Err(error) => {
            warn!(seq = record.seq, %error, "audit record not read on resume");
            None
        }
    }
}

/// Index of the first record after the last one of `kind`.
fn after_last(records: &[Record], kind: RecordKind) -> usize {
    records
        .iter()
        .rposition(|r| kind_of(r) == Some(kind))
        .map(|i| i + 1)
        .unwrap_or(0)
}

/// What the runs of an incident's current plan did: its records (oldest first) after the last
/// `plan` record. A step rolled back is not done any more.
pub(super) fn unfinished(records: &[Record]) -> Unfinished {
    let mut pending: HashMap<usize, String> = HashMap::new();
    let mut calls_at: HashMap<usize, String> = HashMap::new();
    let mut run = Unfinished::default();
    for record in &records[after_last(records, RecordKind::Plan)..] {
        if !matches!(
            kind_of(record),
            Some(RecordKind::StepIntent | RecordKind::StepResult | RecordKind::Rollback)
        ) {
            continue;
        }
        match entry_of(record) {
            // Rollbacks and dry runs have intents of their own; they are not steps of the plan.
            Some(Entry::StepIntent(intent))
                if intent.rollback != Some(true) && intent.dry_run != Some(true) =>
            {
                let calls = serde_json::to_string(&intent.calls).unwrap_or_default();
                pending.insert(intent.position, calls.clone());
                calls_at.insert(intent.position, calls);
            }
            Some(Entry::StepResult(done)) => {
                if let Some(calls) = pending.remove(&done.position) {
                    run.results.insert(calls, done.result);
                }
            }
            Some(Entry::Rollback(undone)) if undone.result.status == StepStatus::RolledBack => {
                if let Some(calls) = calls_at.get(&undone.position) {
                    run.results.remove(calls);
                }
            }
            _ => {}
        }
    }
    run.interrupted = pending.into_values().collect();
    run
}

/// Whether the incident's last run died: it recorded step intents or results after the last
/// `outcome` record.
pub(super) fn run_died(records: &[Record]) -> bool {
    records[after_last(records, RecordKind::Outcome)..]
        .iter()
        .any(|r| {
            matches!(
                kind_of(r),
                Some(RecordKind::StepIntent | RecordKind::StepResult)
            )
        })
}

/// An incident whose last run never concluded, with what that run was working from.
pub(super) struct Resumable {
    pub incident_id: String,
    pub outcome: Option<crate::audit::Outcome>,
    pub plan: crate::core::plan::Plan,
    pub diagnosis: crate::core::checks::Diagnosis,
}

/// The plan and diagnosis of an incident's current plan when its last run died (or, with
/// `partly_applied`, when that plan was applied in part and then held, for an approval).
pub(super) fn resumable(
    incident_id: &str,
    outcome: crate::audit::Outcome,
    records: &[Record],
    partly_applied: bool,
) -> Option<Resumable> {
    let resume = run_died(records) || (partly_applied && !unfinished(records).results.is_empty());
    if !resume {
        return None;
    }
    let last = |kind: RecordKind| {
        records
            .iter()
            .rev()
            .find(|r| kind_of(r) == Some(kind))
            .and_then(entry_of)
    };
    let Some(Entry::Plan(plan)) = last(RecordKind::Plan) else {
        return None;
    };
    let Some(Entry::Diagnosis(diagnosis)) = last(RecordKind::Diagnosis) else {
        return None;
    };
    Some(Resumable {
        incident_id: incident_id.to_string(),
        outcome: Some(outcome),
        plan: *plan,
        diagnosis: *diagnosis,
    })
}

/// How many of a nodegroup's latest incidents are looked at for an unconcluded run.
pub(super) const UNCONCLUDED_LOOKBACK: usize = 3;

impl<W: Accounts> Pipeline<W> {
    /// The nodegroup's incident whose last run never concluded, if any: it is resumed before
    /// anything else is decided for the nodegroup, because the world it sees now may be the
    /// half-done work of that run. It is looked for among the nodegroup's latest
    /// [`UNCONCLUDED_LOOKBACK`] incidents.
    pub(super) async fn resumable_for(
        &self,
        key: &NodegroupKey,
    ) -> Result<Option<Resumable>, PipelineError> {
        Ok(self
            .store
            .read(|c| {
                for incident in c.incidents_of_nodegroup(key, UNCONCLUDED_LOOKBACK)? {
                    // What `resumable` asks first, without reading every record.
                    if !c.run_died(&incident.incident_id)? {
                        continue;
                    }
                    let records = c.records(&incident.incident_id)?;
                    if let Some(found) =
                        resumable(&incident.incident_id, incident.outcome, &records, false)
                    {
                        return Ok(Some(found));
                    }
                }
                Ok(None)
            })
            .await?)
    }

    /// Finishes an incident's unconcluded run from its recorded plan: steps it applied are taken
    /// as done, interrupted ones are resolved, the rest go through the guard; then verification
    /// and the conclusion, as for any run. The event that brought it here joins the incident.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn resume_incident(
        &self,
        resumable: Resumable,
        key: &NodegroupKey,
        trigger: &Trigger,
        message: Option<&Inbound>,
        account: &W::Account,
        target: Target,
        approval: Option<Approval>,
    ) -> Result<Disposition, PipelineError> {
        let evidence = resume_evidence(account, trigger, target).await?;
        self.resume_with(resumable, key, trigger, message, evidence, approval)
            .await
    }

    /// [`resume_incident`](Self::resume_incident) with the evidence already collected.
    pub(super) async fn resume_with(
        &self,
        resumable: Resumable,
        key: &NodegroupKey,
        trigger: &Trigger,
        message: Option<&Inbound>,
        evidence: Evidence,
        approval: Option<Approval>,
    ) -> Result<Disposition, PipelineError> {
        let Resumable {
            incident_id,
            outcome,
            plan,
            diagnosis,
        } = resumable;
        info!(incident_id = %incident_id, plan_id = %plan.id, "resuming an incident whose last run did not conclude");
        let received = Entry::EventReceived(journal::EventReceived {
            trigger: trigger.clone(),
            message_id: message.and_then(|m| m.message_id.clone()),
            receive_count: None,
            resumed: Some(true),
            trace_id: crate::telemetry::current_trace_id(),
        });
        let evidence_entry = Entry::Evidence(Box::new(evidence.clone()));
        self.store
            .write(|tx| {
                tx.record(Some(&incident_id), Some(&trigger.event_id), &received)?;
                tx.record(Some(&incident_id), Some(&trigger.event_id), &evidence_entry)
                    .map(|_| ())
            })
            .await?;
        self.remediate(Remediation {
            incident: IncidentChoice {
                id: incident_id,
                is_new: false,
                previous_outcome: outcome,
            },
            key,
            trigger,
            message_id: message.map(|m| m.message_id.clone().unwrap_or_default()),
            evidence: &evidence,
            diagnosis: &diagnosis,
            plan: &plan,
            history: History::default(),
            approval,
        })
        .await?;
        Ok(Disposition::Delete)
    }

    /// For an approval of a plan applied in part: the steps not applied yet must still rest on
    /// what the plan saw. Only the cycle can tell from the evidence (the nodegroup's scaling);
    /// the other fixes re-read the world before they write.
    pub(super) fn remaining_steps_stale(
        &self,
        resumable: &Resumable,
        records: &[Record],
        evidence: &Evidence,
    ) -> Option<String> {
        let done = unfinished(records);
        resumable.plan.steps.iter().find_map(|step| match &step.action {
            Action::CycleNodegroup { original, .. }
                if done.applied(step).is_none() && *original != evidence.nodegroup.scaling =>
            {
                Some(format!(
                    "the nodegroup's scaling changed since the plan (min {} max {} desired {} then, min {} max {} desired {} now)",
                    original.min,
                    original.max,
                    original.desired,
                    evidence.nodegroup.scaling.min,
                    evidence.nodegroup.scaling.max,
                    evidence.nodegroup.scaling.desired
                ))
            }
            _ => None,
        })
    }

    pub(super) async fn resumable_incident(
        &self,
        incident_id: &str,
    ) -> Result<Option<Resumable>, PipelineError> {
        Ok(self
            .store
            .read(|c| {
                let Some(incident) = c.incident(incident_id)? else {
                    return Ok(None);
                };
                Ok(resumable(
                    incident_id,
                    incident.outcome,
                    &c.records(incident_id)?,
                    true,
                ))
            })
            .await?)
    }
    /// Records a step taken as done from an earlier, unconcluded run.
    pub(super) async fn record_resumed(
        &self,
        incident_id: &str,
        position: usize,
        step: &Step,
        result: &StepResult,
        why: &str,
    ) -> Result<(), PipelineError> {
        let detail = format!("{}: {why}", result.detail);
        let entry = Entry::StepResult(journal::StepResultEntry {
            position,
            fix: step.fix,
            result: result.clone(),
            resumed: Some(true),
            why: Some(why.to_string()),
        });
        self.store
            .write(|tx| {
                tx.record(Some(incident_id), None, &entry)?;
                tx.set_step(incident_id, position, StepStatus::Applied.as_str(), &detail)
            })
            .await?;
        Ok(())
    }

    /// What to make of a step whose intent was recorded but not its result. Every fix but the
    /// cycle reads the world before it writes, so applying it again is safe: `None`. A cycle
    /// that may have run is not run twice: if the nodegroup is healthy it is in effect; if it
    /// was left at zero the cycle only restores (`None`); otherwise a human decides.
    pub(super) async fn resolve_interrupted<A: Actuator>(
        &self,
        actuator: &A,
        unfinished: &Unfinished,
        step: &Step,
        key: &NodegroupKey,
        evidence: &Evidence,
    ) -> Option<Interrupted> {
        if !unfinished.was_interrupted(step) {
            return None;
        }
        let Action::CycleNodegroup { original, .. } = &step.action else {
            info!(fix = %step.fix, "interrupted before its result was recorded; applied again (it reads the world first)");
            return None;
        };
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
        let once = WaitPolicy {
            poll: Duration::from_millis(1),
            timeout: Duration::ZERO,
        };
        let check = verify::verify(actuator, &[step], &nodegroup, once).await;
        if check.passed {
            let detail = check
                .checks
                .first()
                .map(|c| c.detail.clone())
                .unwrap_or_default();
            return Some(Interrupted::InEffect(StepResult {
                status: StepStatus::Applied,
                detail: format!(
                    "interrupted before its result was recorded; the nodegroup is healthy ({detail}): not cycled again"
                ),
                before: Value::Null,
                after: Value::Null,
                changed: false,
            }));
        }
        match actuator.nodegroup(&key.cluster, &key.nodegroup).await {
            Ok(state) if state.scaling.desired == 0 && original.desired > 0 => {
                Some(Interrupted::RestoreOnly)
            }
            _ => Some(Interrupted::Unknown(
                "cycle_nodegroup was interrupted before its result was recorded and the nodegroup is not healthy; \
                 whether it ran is unknown, so it is not run again on its own: approve this plan to cycle"
                    .into(),
            )),
        }
    }
}

/// An interrupted step, resolved.
pub(super) enum Interrupted {
    /// Its effect is there: taken as applied.
    InEffect(StepResult),
    /// Nobody can tell whether it ran; waits for a human.
    Unknown(String),
    /// A cycle stopped at desired 0: only its restore is left to send, and only that is
    /// announced in its intent.
    RestoreOnly,
}

/// The whole checklist: verification needs the group, whatever the event was.
pub(super) async fn resume_evidence(
    account: &impl Account,
    trigger: &Trigger,
    target: Target,
) -> Result<Evidence, PipelineError> {
    account
        .collect(trigger, target, Scope::FULL, CallLog::default())
        .await
        .map_err(|e| PipelineError::Collect(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::act::StepStatus;
    use crate::core::plan::{Action, FixKind};

    fn record(kind: &str, body: Value) -> Record {
        Record {
            seq: 0,
            at: String::new(),
            incident_id: Some("inc-1".into()),
            event_id: None,
            kind: kind.into(),
            body,
            prev_hash: String::new(),
            hash: String::new(),
            chain: "global".into(),
        }
    }

    fn route() -> Step {
        Step {
            fix: FixKind::AddNatRoute,
            action: Action::CreateRoute {
                route_table_id: "rtb-1".into(),
                destination_cidr_block: "0.0.0.0/0".into(),
                nat_gateway_id: "nat-1".into(),
            },
            reason: String::new(),
            needs_review: None,
        }
    }

    /// A record as the journal writes it.
    fn entry(entry: Entry) -> Record {
        record(entry.kind().as_str(), entry.body().unwrap())
    }

    fn step_result(status: StepStatus) -> StepResult {
        StepResult {
            status,
            detail: String::new(),
            before: Value::Null,
            after: Value::Null,
            changed: true,
        }
    }

    fn intent(position: usize, step: &Step) -> Record {
        entry(Entry::StepIntent(journal::StepIntent {
            position,
            fix: step.fix,
            rollback: None,
            dry_run: None,
            calls: step.action.api_calls(),
            at: String::new(),
        }))
    }

    fn result(position: usize, status: StepStatus) -> Record {
        entry(Entry::StepResult(journal::StepResultEntry {
            position,
            fix: FixKind::AddNatRoute,
            result: step_result(status),
            resumed: None,
            why: None,
        }))
    }

    #[test]
    fn only_the_runs_of_the_current_plan_count() {
        let step = route();
        let concluded = [
            intent(0, &step),
            result(0, StepStatus::Applied),
            record("outcome", json!({})),
            record("plan", json!({})),
        ];
        assert_eq!(unfinished(&concluded), Unfinished::default());
        assert!(!run_died(&concluded));
        let crashed_after_intent = [concluded.to_vec(), vec![intent(0, &step)]].concat();
        assert!(run_died(&crashed_after_intent));
        let run = unfinished(&crashed_after_intent);
        assert!(run.was_interrupted(&step) && run.applied(&step).is_none());
        let crashed_after_result = [
            crashed_after_intent.clone(),
            vec![result(0, StepStatus::Applied)],
        ]
        .concat();
        let run = unfinished(&crashed_after_result);
        assert!(!run.was_interrupted(&step) && run.applied(&step).is_some());
        let failed = [crashed_after_intent, vec![result(0, StepStatus::Failed)]].concat();
        assert!(
            unfinished(&failed).applied(&route()).is_none(),
            "a failed step is not done"
        );
    }

    #[test]
    fn a_rolled_back_step_is_not_done() {
        let step = route();
        let records = [
            record("plan", json!({})),
            intent(0, &step),
            result(0, StepStatus::Applied),
            entry(Entry::Rollback(journal::Rollback {
                position: 0,
                fix: step.fix,
                result: step_result(StepStatus::RolledBack),
            })),
        ];
        assert!(unfinished(&records).applied(&step).is_none());
    }

    #[test]
    fn rollback_intents_are_not_plan_steps() {
        let step = route();
        let records = [entry(Entry::StepIntent(journal::StepIntent {
            position: 0,
            fix: step.fix,
            rollback: Some(true),
            dry_run: None,
            calls: step.action.api_calls(),
            at: String::new(),
        }))];
        assert!(!unfinished(&records).was_interrupted(&step));
    }
}
