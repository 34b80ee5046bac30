//! The pipeline: one message from its body to a recorded outcome, through resolve, evidence,
//! diagnose, plan, guard and act. Every stage writes to the audit trail; the message may be
//! deleted only once [`Pipeline::handle`] returns [`Disposition::Delete`].

mod state;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::{Instrument, info, info_span, warn};

use crate::act::{self, AwsActuator, StepStatus};
use crate::audit::store::{now, query, timestamp};
use crate::audit::{AuditError, AuditStore, NodegroupKey, Outcome, RecordKind};
use crate::aws::ClientPool;
use crate::config::RemediationSettings;
use crate::diagnose::{Diagnosis, diagnose};
use crate::evidence::collect::{CollectError, Scope, collect};
use crate::evidence::{CallLog, Evidence};
use crate::guard::{self, Decision, History, Mode};
use crate::intake::publish::{Publisher, nodemedic_event};
use crate::intake::{
    IgnoredEvent, JOIN_CHECK, JoinCheck, LaunchOutcome, Parsed, Trigger, TriggerKind, parse_message,
};
use crate::plan::{Action, FixKind, Plan, plan};
use crate::resolve::{Resolution, Target, resolve};
pub use state::{NodegroupLocks, RouteVerdicts};

/// One received message.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub message_id: Option<String>,
    pub body: String,
    pub receive_count: u32,
}

/// What the queue loop must do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The outcome is recorded: delete the message.
    Delete,
    /// Leave the message: it comes back after its visibility timeout (and eventually goes to the
    /// dead-letter queue if it never succeeds).
    Keep { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Audit(#[from] AuditError),
}

pub struct Pipeline {
    mode: Mode,
    remediation: RemediationSettings,
    store: AuditStore,
    clients: Arc<ClientPool>,
    locks: NodegroupLocks,
    routes: RouteVerdicts,
    /// Where nodemedic's own events (join checks) go; `None` disables them.
    publisher: Option<Publisher>,
    join_deadline: Duration,
}

/// How the incident an event belongs to was found.
struct IncidentChoice {
    id: String,
    is_new: bool,
    previous_outcome: Option<Outcome>,
}

impl Pipeline {
    pub fn new(
        mode: Mode,
        remediation: RemediationSettings,
        store: AuditStore,
        clients: Arc<ClientPool>,
    ) -> Self {
        let routes = RouteVerdicts::new(Duration::from_secs(remediation.route_verdict_ttl_secs));
        Self {
            mode,
            remediation,
            store,
            clients,
            locks: NodegroupLocks::default(),
            routes,
            publisher: None,
            join_deadline: Duration::ZERO,
        }
    }

    /// Schedules a join check `deadline` after every healthy launch, through `publisher`.
    pub fn with_join_checks(mut self, publisher: Publisher, deadline: Duration) -> Self {
        self.publisher = Some(publisher);
        self.join_deadline = deadline;
        self
    }

    pub fn store(&self) -> &AuditStore {
        &self.store
    }

    /// Handles one message. Never panics; an error keeps the message for another try.
    pub async fn handle(&self, message: &Inbound) -> Disposition {
        match self.handle_message(message).await {
            Ok(disposition) => disposition,
            Err(error) => {
                warn!(message_id = ?message.message_id, %error, "message kept: its outcome could not be recorded");
                Disposition::Keep {
                    reason: error.to_string(),
                }
            }
        }
    }

    async fn handle_message(&self, message: &Inbound) -> Result<Disposition, PipelineError> {
        match parse_message(&message.body) {
            Err(error) => {
                warn!(message_id = ?message.message_id, receive_count = message.receive_count, %error,
                    "message is not a valid event; leaving it for the dead-letter queue");
                let body = json!({
                    "message_id": message.message_id,
                    "receive_count": message.receive_count,
                    "reason": error.to_string(),
                    "body_excerpt": excerpt(&message.body, 512),
                });
                self.store
                    .write(move |tx| tx.append(None, None, RecordKind::MessageRejected, &body))
                    .await?;
                Ok(Disposition::Keep {
                    reason: error.to_string(),
                })
            }
            Ok(Parsed::Ignored(event)) => {
                self.record_ignored(&event.event_id, message, json!(event), &event.reason)
                    .await?;
                Ok(Disposition::Delete)
            }
            Ok(Parsed::Trigger(trigger)) => {
                let span = info_span!("event", event_id = %trigger.event_id, trigger = %trigger.describe());
                self.handle_trigger(*trigger, message)
                    .instrument(span)
                    .await
            }
        }
    }

    async fn record_ignored(
        &self,
        event_id: &str,
        message: &Inbound,
        detail: Value,
        reason: &str,
    ) -> Result<(), PipelineError> {
        info!(event_id, reason, "event ignored");
        let (event_id, message_id) = (event_id.to_string(), message.message_id.clone());
        let body = json!({ "event": detail, "reason": reason, "message_id": message_id });
        self.store
            .write(move |tx| {
                if query::event_seen(tx.connection(), &event_id)?.is_none() {
                    tx.append(None, Some(&event_id), RecordKind::EventIgnored, &body)?;
                    tx.mark_event(&event_id, message_id.as_deref(), "ignored", None)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Records a second delivery; returns whether the event had been handled already.
    async fn already_handled(
        &self,
        trigger: &Trigger,
        message: &Inbound,
    ) -> Result<bool, PipelineError> {
        let event_id = trigger.event_id.clone();
        let message_id = message.message_id.clone();
        let duplicate = self
            .store
            .write(move |tx| {
                let Some(seen) = query::event_seen(tx.connection(), &event_id)? else {
                    return Ok(false);
                };
                let body =
                    json!({ "message_id": message_id, "first_disposition": seen.disposition });
                tx.append(
                    seen.incident_id.as_deref(),
                    Some(&event_id),
                    RecordKind::EventDuplicate,
                    &body,
                )?;
                Ok(true)
            })
            .await?;
        if duplicate {
            info!("duplicate delivery; already handled");
        }
        Ok(duplicate)
    }

    async fn handle_trigger(
        &self,
        trigger: Trigger,
        message: &Inbound,
    ) -> Result<Disposition, PipelineError> {
        if self.already_handled(&trigger, message).await? {
            return Ok(Disposition::Delete);
        }
        if let TriggerKind::JoinCheck(check) = &trigger.kind
            && let Some(remaining) = seconds_until(check.due_at)
            && remaining > 5
        {
            // Deadlines longer than SQS's 15-minute delay are reached in hops.
            return self.publish_join_check(&trigger, check, remaining).await;
        }
        let clients = self.clients.for_region(&trigger.region);
        let mut calls = CallLog::default();
        let target = match (&trigger.kind, trigger.nodegroup()) {
            (TriggerKind::Launch(launch), _) => {
                match resolve(&clients, &launch.asg_name, &mut calls).await {
                    Ok(Resolution::Nodegroup(target)) => target,
                    Ok(Resolution::NotOurs { reason }) => {
                        self.record_ignored(
                            &trigger.event_id,
                            message,
                            json!(IgnoredEvent {
                                event_id: trigger.event_id.clone(),
                                source: "aws.autoscaling".into(),
                                detail_type: launch_detail_type(launch.outcome).into(),
                                reason: reason.clone(),
                            }),
                            &reason,
                        )
                        .await?;
                        return Ok(Disposition::Delete);
                    }
                    Err(error) => return self.collection_failed(&trigger, error.to_string()).await,
                }
            }
            (_, Some((cluster, nodegroup))) => Target {
                cluster: cluster.to_string(),
                nodegroup: nodegroup.to_string(),
                group: None,
            },
            (_, None) => {
                let reason = "the event names no nodegroup".to_string();
                self.record_ignored(&trigger.event_id, message, json!(trigger), &reason)
                    .await?;
                return Ok(Disposition::Delete);
            }
        };
        let key = NodegroupKey {
            account: trigger.account.clone(),
            region: trigger.region.clone(),
            cluster: target.cluster.clone(),
            nodegroup: target.nodegroup.clone(),
        };
        let _one_incident_per_nodegroup = self.locks.lock(&key).await;
        // Another handler may have finished the same event while this one waited.
        if self.already_handled(&trigger, message).await? {
            return Ok(Disposition::Delete);
        }
        if self.superseded_by_fix(&trigger, &key, message).await? {
            return Ok(Disposition::Delete);
        }
        let launched = trigger
            .launch()
            .filter(|launch| launch.outcome == LaunchOutcome::Successful);
        if let Some(launch) = launched
            && let Some(subnet) = &launch.subnet_id
            && let Some(table) = self.routes.healthy(subnet)
        {
            let body = json!({ "subnet": subnet, "route_table": table, "cached": true, "message_id": message.message_id });
            self.record_healthy(&trigger, body).await?;
            self.schedule_join_check(&trigger, &target).await;
            return Ok(Disposition::Delete);
        }
        let scope = Scope::for_trigger(&trigger);
        let evidence = match collect(&clients, &trigger, target.clone(), scope, calls).await {
            Ok(evidence) => evidence,
            Err(CollectError::NodegroupGone { cluster, nodegroup }) => {
                let reason = format!("nodegroup {cluster}/{nodegroup} no longer exists");
                self.record_ignored(&trigger.event_id, message, json!(trigger), &reason)
                    .await?;
                return Ok(Disposition::Delete);
            }
            Err(CollectError::Aws(error)) => {
                return self.collection_failed(&trigger, error.to_string()).await;
            }
        };
        let diagnosis = diagnose(&evidence);
        if diagnosis.is_healthy() {
            if launched.is_some()
                && let Some(network) = &evidence.network
            {
                for subnet in &network.subnet_ids {
                    if let Some(table) = network.route_table_for(subnet) {
                        self.routes.remember_healthy(subnet, &table.id);
                    }
                }
            }
            let body = json!({
                "calls": evidence.calls,
                "message_id": message.message_id,
                "cached": false,
                "warnings": diagnosis.warnings().collect::<Vec<_>>(),
            });
            self.record_healthy(&trigger, body).await?;
            if launched.is_some() {
                self.schedule_join_check(&trigger, &target).await;
            }
            return Ok(Disposition::Delete);
        }
        self.work_incident(key, trigger, message, evidence, diagnosis)
            .await?;
        Ok(Disposition::Delete)
    }

    /// After a launch that looks healthy, come back when the node should have joined. The
    /// queue's delivery delay is the timer, so it survives restarts.
    async fn schedule_join_check(&self, trigger: &Trigger, target: &Target) {
        let (Some(publisher), Some(launch)) = (&self.publisher, trigger.launch()) else {
            return;
        };
        let Some(instance) = launch.instance_id.clone() else {
            return;
        };
        if self.join_deadline.is_zero() {
            return;
        }
        let check = JoinCheck {
            cluster: target.cluster.clone(),
            nodegroup: target.nodegroup.clone(),
            asg_name: launch.asg_name.clone(),
            instance_id: instance,
            subnet_id: launch.subnet_id.clone(),
            launched_at: trigger.time,
            due_at: OffsetDateTime::now_utc() + self.join_deadline,
        };
        let delay = self.join_deadline.as_secs() as i64;
        let id = format!("join-check-{}", trigger.event_id);
        let envelope = nodemedic_event(
            JOIN_CHECK,
            &id,
            &trigger.account,
            &trigger.region,
            json!(check),
        );
        match publisher.publish(&envelope, delay).await {
            Ok(()) => {
                info!(instance = %check.instance_id, delay_secs = delay, "join check scheduled")
            }
            Err(error) => warn!(%error, "could not schedule the join check"),
        }
    }

    /// Re-delays a join check that arrived before its due time.
    async fn publish_join_check(
        &self,
        trigger: &Trigger,
        check: &JoinCheck,
        remaining: i64,
    ) -> Result<Disposition, PipelineError> {
        let Some(publisher) = &self.publisher else {
            return Ok(Disposition::Keep {
                reason: "join check not due yet and no publisher to delay it".into(),
            });
        };
        let hop = remaining.min(crate::intake::publish::MAX_DELAY_SECS);
        // Derived from this event's id, so a redelivery of this message republishes the same hop,
        // which the next handler then sees as a duplicate.
        let id = format!("{}>", trigger.event_id);
        let envelope = nodemedic_event(
            JOIN_CHECK,
            &id,
            &trigger.account,
            &trigger.region,
            json!(check),
        );
        match publisher.publish(&envelope, hop).await {
            Ok(()) => {
                let event_id = trigger.event_id.clone();
                self.store
                    .write(move |tx| tx.mark_event(&event_id, None, "delayed", None))
                    .await?;
                Ok(Disposition::Delete)
            }
            Err(error) => Ok(Disposition::Keep {
                reason: error.to_string(),
            }),
        }
    }

    async fn record_healthy(&self, trigger: &Trigger, body: Value) -> Result<(), PipelineError> {
        info!("launch checked: nothing wrong");
        let event_id = trigger.event_id.clone();
        let mut body = body;
        body["trigger"] = json!(trigger);
        self.store
            .write(move |tx| {
                tx.append(None, Some(&event_id), RecordKind::EventHealthy, &body)?;
                tx.mark_event(&event_id, body["message_id"].as_str(), "healthy", None)
            })
            .await?;
        Ok(())
    }

    /// Evidence could not be collected (AWS unreachable, throttled, denied): keep the message.
    async fn collection_failed(
        &self,
        trigger: &Trigger,
        error: String,
    ) -> Result<Disposition, PipelineError> {
        warn!(%error, "evidence collection failed; the message will be retried");
        let event_id = trigger.event_id.clone();
        let body = json!({ "error": error, "trigger": trigger });
        self.store
            .write(move |tx| tx.append(None, Some(&event_id), RecordKind::CollectionFailed, &body))
            .await?;
        Ok(Disposition::Keep { reason: error })
    }

    /// An event older than a fix already applied to its nodegroup describes the world before the
    /// fix: it joins that incident and changes nothing.
    async fn superseded_by_fix(
        &self,
        trigger: &Trigger,
        key: &NodegroupKey,
        message: &Inbound,
    ) -> Result<bool, PipelineError> {
        let key = key.clone();
        let event_id = trigger.event_id.clone();
        let event_time = timestamp(trigger.time);
        let message_id = message.message_id.clone();
        let superseded = self
            .store
            .write(move |tx| {
                let Some((incident, applied_at)) = query::last_fix_applied(tx.connection(), &key)? else {
                    return Ok(None);
                };
                if event_time >= applied_at {
                    return Ok(None);
                }
                let body = json!({ "event_time": event_time, "fix_applied_at": applied_at, "message_id": message_id });
                tx.append(Some(&incident), Some(&event_id), RecordKind::EventSuperseded, &body)?;
                tx.mark_event(&event_id, message_id.as_deref(), "superseded", Some(&incident))?;
                Ok(Some(incident))
            })
            .await?;
        if let Some(incident) = &superseded {
            info!(incident_id = %incident, "event predates a fix already applied; nothing to do");
        }
        Ok(superseded.is_some())
    }

    /// Finds the incident this event belongs to, or opens one, and records what was found.
    async fn file_incident(
        &self,
        key: &NodegroupKey,
        trigger: &Trigger,
        message: &Inbound,
        evidence: &Evidence,
        diagnosis: &Diagnosis,
        plan: &Plan,
    ) -> Result<(IncidentChoice, History), PipelineError> {
        let cause = diagnosis
            .cause()
            .map(|c| c.code())
            .unwrap_or("unknown")
            .to_string();
        let summary = diagnosis
            .primary()
            .map(|f| f.summary.clone())
            .unwrap_or_default();
        let window_start = timestamp(
            OffsetDateTime::now_utc() - Duration::from_secs(self.remediation.incident_window_secs),
        );
        let mode = self.mode.as_str().to_string();
        let key = key.clone();
        let event_id = trigger.event_id.clone();
        let received = json!({ "trigger": trigger, "message_id": message.message_id, "receive_count": message.receive_count });
        let evidence_body = json!(evidence);
        let diagnosis_body = json!(diagnosis);
        let plan_body = json!(plan);
        let plan_id = plan.id.clone();
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
            .write(move |tx| {
                let earlier = query::incidents_for(tx.connection(), &key, &cause)?;
                let reusable = earlier.iter().find(|incident| {
                    incident.updated_at >= window_start
                        && matches!(
                            Outcome::parse(&incident.outcome),
                            Some(
                                Outcome::InProgress
                                    | Outcome::Planned
                                    | Outcome::NoFix
                                    | Outcome::Failed
                            )
                        )
                });
                let choice = match reusable {
                    Some(incident) => IncidentChoice {
                        id: incident.incident_id.clone(),
                        is_new: false,
                        previous_outcome: Outcome::parse(&incident.outcome),
                    },
                    None => {
                        let id =
                            format!("inc-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
                        tx.open_incident(&id, &key, &cause, &mode, &summary)?;
                        IncidentChoice {
                            id,
                            is_new: true,
                            previous_outcome: None,
                        }
                    }
                };
                let history = History {
                    failed_fix: (choice.previous_outcome == Some(Outcome::Failed))
                        .then(|| choice.id.clone()),
                    fix_did_not_hold: earlier
                        .iter()
                        .find(|i| {
                            i.incident_id != choice.id
                                && i.updated_at >= window_start
                                && i.outcome == Outcome::Fixed.as_str()
                        })
                        .map(|i| i.incident_id.clone()),
                };
                let id = choice.id.as_str();
                tx.append(
                    Some(id),
                    Some(&event_id),
                    RecordKind::EventReceived,
                    &received,
                )?;
                tx.append(
                    Some(id),
                    Some(&event_id),
                    RecordKind::Evidence,
                    &evidence_body,
                )?;
                tx.append(
                    Some(id),
                    Some(&event_id),
                    RecordKind::Diagnosis,
                    &diagnosis_body,
                )?;
                tx.append(Some(id), Some(&event_id), RecordKind::Plan, &plan_body)?;
                tx.set_plan(id, &plan_id, &steps)?;
                Ok((choice, history))
            })
            .await?)
    }

    async fn work_incident(
        &self,
        key: NodegroupKey,
        trigger: Trigger,
        message: &Inbound,
        evidence: Evidence,
        diagnosis: Diagnosis,
    ) -> Result<(), PipelineError> {
        let plan = plan(&diagnosis, &evidence);
        let (incident, history) = self
            .file_incident(&key, &trigger, message, &evidence, &diagnosis, &plan)
            .await?;
        let cause = diagnosis.cause().map(|c| c.code()).unwrap_or("unknown");
        let span = info_span!("incident", incident_id = %incident.id, cluster = %key.cluster,
            nodegroup = %key.nodegroup, cause);
        async {
            info!(new = incident.is_new, plan_id = %plan.id, steps = plan.steps.len(), calls = evidence.calls.total(),
                "diagnosed: {}", diagnosis.primary().map(|f| f.summary.as_str()).unwrap_or(""));
            let statuses = self.apply_plan(&incident.id, &trigger, &plan, &history).await?;
            let outcome = conclude(&statuses, &plan, incident.previous_outcome);
            info!(outcome = outcome.as_str(), "incident concluded");
            let mode = self.mode.as_str().to_string();
            let id = incident.id.clone();
            let event_id = trigger.event_id.clone();
            let message_id = message.message_id.clone();
            let body = json!({
                "outcome": outcome.as_str(),
                "mode": mode,
                "cause": cause,
                "plan_id": plan.id,
                "steps": statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "notes": plan.notes,
                "aws_calls": evidence.calls,
            });
            self.store
                .write(move |tx| {
                    tx.append(Some(&id), Some(&event_id), RecordKind::Outcome, &body)?;
                    tx.set_outcome(&id, &mode, outcome)?;
                    tx.mark_event(&event_id, message_id.as_deref(), "incident", Some(&id))
                })
                .await?;
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Runs every step past the guard; an intent record precedes each mutation and a result
    /// record follows it.
    async fn apply_plan(
        &self,
        incident_id: &str,
        trigger: &Trigger,
        plan: &Plan,
        history: &History,
    ) -> Result<Vec<StepStatus>, PipelineError> {
        let actuator = AwsActuator::new(self.clients.for_region(&trigger.region));
        let mut statuses = Vec::new();
        let mut earlier_failure = false;
        for (position, step) in plan.steps.iter().enumerate() {
            let fixes_pending = statuses.iter().any(|s| *s != StepStatus::Applied);
            let decision = if earlier_failure {
                Decision::Skip {
                    reason: "an earlier step of this plan failed".into(),
                }
            } else if step.fix == FixKind::CycleNodegroup
                && fixes_pending
                && self.mode != Mode::DryRun
            {
                // Relaunching before the fixes are in would only make another failing instance.
                Decision::Hold {
                    reason: "cycle_nodegroup waits until the fixes before it are applied".into(),
                }
            } else {
                guard::decide(self.mode, step, history)
            };
            let id = incident_id.to_string();
            let guard_body = json!({ "position": position, "fix": step.fix, "decision": decision, "mode": self.mode });
            let intent_body = json!({ "position": position, "fix": step.fix, "calls": step.action.api_calls(), "at": now() });
            let held = match &decision {
                Decision::Apply => None,
                Decision::Hold { reason } => Some((StepStatus::Planned, reason.clone())),
                Decision::Skip { reason } => Some((StepStatus::Skipped, reason.clone())),
            };
            let held_for_record = held.clone();
            self.store
                .write(move |tx| {
                    tx.append(Some(&id), None, RecordKind::GuardDecision, &guard_body)?;
                    match &held_for_record {
                        Some((status, reason)) => {
                            tx.set_step(&id, position, status.as_str(), reason)
                        }
                        None => tx
                            .append(Some(&id), None, RecordKind::StepIntent, &intent_body)
                            .map(|_| ()),
                    }
                })
                .await?;
            if let Some((status, _)) = held {
                info!(fix = %step.fix, ?decision, "step not applied");
                statuses.push(status);
                continue;
            }
            info!(fix = %step.fix, "applying");
            let result = act::apply(&actuator, step, self.remediation.wait_policy()).await;
            if let Action::CreateRoute { route_table_id, .. } = &step.action {
                self.routes.forget_table(route_table_id);
            }
            if result.status == StepStatus::Failed {
                warn!(fix = %step.fix, detail = %result.detail, "step failed");
                earlier_failure = true;
            } else {
                info!(fix = %step.fix, detail = %result.detail, "step applied");
            }
            let id = incident_id.to_string();
            let status = result.status;
            let detail = result.detail.clone();
            let body = json!({ "position": position, "fix": step.fix, "result": result });
            self.store
                .write(move |tx| {
                    tx.append(Some(&id), None, RecordKind::StepResult, &body)?;
                    tx.set_step(&id, position, status.as_str(), &detail)
                })
                .await?;
            statuses.push(status);
        }
        Ok(statuses)
    }
}

/// The incident's outcome from this run's step statuses.
fn conclude(statuses: &[StepStatus], plan: &Plan, previous: Option<Outcome>) -> Outcome {
    if statuses.contains(&StepStatus::Failed) {
        return Outcome::Failed;
    }
    if plan.steps.is_empty() {
        return Outcome::NoFix;
    }
    if statuses.iter().all(|s| *s == StepStatus::Applied) {
        return Outcome::Fixed;
    }
    // A failure stays visible until something is applied again.
    if previous == Some(Outcome::Failed) && !statuses.contains(&StepStatus::Applied) {
        return Outcome::Failed;
    }
    Outcome::Planned
}

fn launch_detail_type(outcome: LaunchOutcome) -> &'static str {
    match outcome {
        LaunchOutcome::Successful => crate::intake::LAUNCH_SUCCESSFUL,
        LaunchOutcome::Unsuccessful => crate::intake::LAUNCH_UNSUCCESSFUL,
    }
}

/// Seconds from now until `at`, when `at` is in the future.
fn seconds_until(at: OffsetDateTime) -> Option<i64> {
    let remaining = (at - OffsetDateTime::now_utc()).whole_seconds();
    (remaining > 0).then_some(remaining)
}

fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{FixKind, Step};

    fn plan_with(steps: usize) -> Plan {
        Plan {
            id: "plan-x".into(),
            steps: (0..steps)
                .map(|_| Step {
                    fix: FixKind::AddNatRoute,
                    action: Action::CreateRoute {
                        route_table_id: "rtb".into(),
                        destination_cidr_block: "0.0.0.0/0".into(),
                        nat_gateway_id: "nat".into(),
                    },
                    reason: String::new(),
                })
                .collect(),
            notes: vec![],
        }
    }

    #[test]
    fn outcomes_follow_the_step_statuses() {
        use StepStatus::*;
        assert_eq!(
            conclude(&[Applied, Applied], &plan_with(2), None),
            Outcome::Fixed
        );
        assert_eq!(
            conclude(&[Applied, Failed], &plan_with(2), None),
            Outcome::Failed
        );
        assert_eq!(
            conclude(&[Planned, Planned], &plan_with(2), None),
            Outcome::Planned
        );
        assert_eq!(
            conclude(&[Skipped, Skipped], &plan_with(2), None),
            Outcome::Planned
        );
        assert_eq!(conclude(&[], &plan_with(0), None), Outcome::NoFix);
        assert_eq!(
            conclude(&[Skipped], &plan_with(1), Some(Outcome::Failed)),
            Outcome::Failed,
            "a failure is not hidden by a later run the guard held back"
        );
        assert_eq!(
            conclude(&[Applied], &plan_with(1), Some(Outcome::Failed)),
            Outcome::Fixed
        );
    }

    #[test]
    fn excerpts_cut_on_character_boundaries() {
        assert_eq!(excerpt("héllo", 2), "hé…");
        assert_eq!(excerpt("short", 10), "short");
    }
}
