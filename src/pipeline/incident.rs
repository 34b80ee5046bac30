//! Working an incident: file it (or join the one it belongs to), let the guard decide each step,
//! apply what it allows with an intent record before and a result record after, verify that the
//! cause went away, roll back what is safely reversible when it did not, and conclude.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use tracing::{Instrument, info, info_span, warn};

use super::{Inbound, Pipeline, PipelineError};
use crate::act::verify::{self, Nodegroup, Verification};
use crate::act::{self, AwsActuator, StepResult, StepStatus, WaitPolicy};
use crate::audit::control::{self, PlanStatus};
use crate::audit::store::{now, query, timestamp};
use crate::audit::{NodegroupKey, Outcome, RecordKind};
use crate::diagnose::{Cause, Diagnosis, Subject};
use crate::evidence::Evidence;
use crate::guard::{self, Approval, Decision, History, Mode, Touched};
use crate::intake::Trigger;
use crate::notify::Notice;
use crate::plan::{Action, FixKind, Plan, Step, plan};

/// How the incident an event belongs to was found.
pub(super) struct IncidentChoice {
    pub id: String,
    pub is_new: bool,
    pub previous_outcome: Option<Outcome>,
}

/// What running a plan did.
#[derive(Debug, Default)]
pub(super) struct Run {
    pub statuses: Vec<StepStatus>,
    pub awaiting_approval: bool,
    pub rolled_back: bool,
    pub escalations: Vec<String>,
}

/// Everything `conclude` records.
pub(super) struct Conclusion<'a> {
    pub incident: &'a IncidentChoice,
    pub key: &'a NodegroupKey,
    pub trigger: &'a Trigger,
    pub message_id: Option<String>,
    pub diagnosis: &'a Diagnosis,
    pub plan: &'a Plan,
    pub evidence: &'a Evidence,
    pub run: Run,
    pub approved_plan: Option<&'a str>,
}

/// The shared resource a finding is about, when failures of other nodegroups can share it: they
/// then join one incident with one fix.
pub(super) fn storm_subject(subject: &Subject) -> Option<String> {
    match subject {
        Subject::Key { key_arn, .. } => Some(format!("key:{key_arn}")),
        Subject::UnusableKey { reference, .. } => Some(format!("key:{reference}")),
        Subject::Subnet {
            route_table_id: Some(table),
            ..
        } => Some(format!("route-table:{table}")),
        Subject::DefaultRoute { route_table_id, .. } => {
            Some(format!("route-table:{route_table_id}"))
        }
        Subject::Vpc { vpc_id, .. } => Some(format!("vpc:{vpc_id}")),
        Subject::NodeRole { role_name, .. } => Some(format!("role:{role_name}")),
        Subject::AccessEntry {
            cluster,
            principal_arn,
        } => Some(format!("access-entry:{cluster}/{principal_arn}")),
        _ => None,
    }
}

/// The shared resources a nodegroup's launches depend on, as storm subjects, sorted.
pub(super) fn related_subjects(evidence: &Evidence) -> Vec<String> {
    let mut subjects: Vec<String> = Vec::new();
    for key in &evidence.keys {
        subjects.push(format!("key:{}", key.reference));
        if let crate::evidence::KeyLookup::Found(metadata) = &key.lookup {
            subjects.push(format!("key:{}", metadata.arn));
        }
    }
    if let Some(network) = &evidence.network {
        for subnet in &evidence.nodegroup.subnets {
            if let Some(table) = network.route_table_for(subnet) {
                subjects.push(format!("route-table:{}", table.id));
            }
        }
        subjects.push(format!("vpc:{}", network.vpc.id));
    }
    subjects.sort();
    subjects.dedup();
    subjects
}

/// The resources a step changes, with their tags, for the guard's scope rules.
fn touched(step: &Step, evidence: &Evidence) -> Vec<Touched> {
    let network = evidence.network.as_ref();
    let with_tags = |id: &str, tags: Option<&crate::evidence::Tags>| Touched {
        id: id.to_string(),
        tags: tags.cloned().unwrap_or_default(),
    };
    match &step.action {
        Action::CreateRoute { route_table_id, .. }
        | Action::ReplaceRoute { route_table_id, .. } => vec![with_tags(
            route_table_id,
            network
                .and_then(|n| n.route_tables.iter().find(|t| &t.id == route_table_id))
                .map(|t| &t.tags),
        )],
        Action::PutKeyPolicy { key_id, .. } => vec![with_tags(
            key_id,
            evidence.keys.iter().find_map(|k| match &k.lookup {
                crate::evidence::KeyLookup::Found(m) if &m.arn == key_id => Some(&m.tags),
                _ => None,
            }),
        )],
        Action::CycleNodegroup {
            cluster, nodegroup, ..
        } => {
            vec![with_tags(
                &format!("{cluster}/{nodegroup}"),
                Some(&evidence.nodegroup.tags),
            )]
        }
        Action::ModifyVpcAttribute { vpc_id, .. } => {
            vec![with_tags(vpc_id, network.map(|n| &n.vpc.tags))]
        }
        Action::ModifySubnetAttribute { subnet_id } => {
            vec![with_tags(
                subnet_id,
                network.and_then(|n| n.subnet(subnet_id)).map(|s| &s.tags),
            )]
        }
        Action::AttachRolePolicy { role_name, .. } => vec![with_tags(
            role_name,
            match evidence.identity.as_ref().map(|i| &i.role) {
                Some(crate::evidence::RoleLookup::Found { tags, .. }) => Some(tags),
                _ => None,
            },
        )],
        Action::CreateAccessEntry { cluster, .. } => vec![with_tags(
            cluster,
            evidence.cluster.as_ref().map(|c| &c.tags),
        )],
    }
}

/// The id of the resource a step changes, for cooldowns.
fn resource_of(step: &Step) -> String {
    match &step.action {
        Action::CreateRoute { route_table_id, .. }
        | Action::ReplaceRoute { route_table_id, .. } => route_table_id.clone(),
        Action::PutKeyPolicy { key_id, .. } => key_id.clone(),
        Action::CycleNodegroup {
            cluster, nodegroup, ..
        } => format!("{cluster}/{nodegroup}"),
        Action::ModifyVpcAttribute { vpc_id, attribute } => format!("{vpc_id}/{attribute}"),
        Action::ModifySubnetAttribute { subnet_id } => subnet_id.clone(),
        Action::AttachRolePolicy {
            role_name,
            policy_arn,
        } => format!("{role_name}/{policy_arn}"),
        Action::CreateAccessEntry {
            cluster,
            principal_arn,
            ..
        } => format!("{cluster}/{principal_arn}"),
    }
}

/// The circuit-breaker scopes a step's failure counts against.
fn breaker_scopes(step: &Step, evidence: &Evidence, key: &NodegroupKey) -> Vec<String> {
    let mut scopes = vec![
        format!("nodegroup:{key}"),
        format!("account:{}", key.account),
        "global".to_string(),
    ];
    let vpc = evidence.network.as_ref().map(|n| n.vpc.id.clone());
    match &step.action {
        Action::CreateRoute { .. }
        | Action::ReplaceRoute { .. }
        | Action::ModifyVpcAttribute { .. }
        | Action::ModifySubnetAttribute { .. } => {
            if let Some(vpc) = vpc {
                scopes.insert(1, format!("vpc:{vpc}"));
            }
        }
        Action::PutKeyPolicy { key_id, .. } => scopes.insert(1, format!("key:{key_id}")),
        _ => {}
    }
    scopes
}

/// A notice about an incident.
fn notice(
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

impl Pipeline {
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
                    .lock(&format!("subject:{}/{}/{subject}", key.account, key.region))
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
        let span = info_span!("incident", incident_id = %incident.id, cluster = %key.cluster, nodegroup = %key.nodegroup, cause);
        async {
            info!(new = incident.is_new, plan_id = %plan.id, steps = plan.steps.len(), calls = evidence.calls.total(),
                "diagnosed: {}", diagnosis.primary().map(|f| f.summary.as_str()).unwrap_or(""));
            let run = self.execute(&incident.id, &key, &trigger, &evidence, &plan, history, None).await?;
            self.conclude(Conclusion {
                incident: &incident,
                key: &key,
                trigger: &trigger,
                message_id: Some(message.message_id.clone().unwrap_or_default()),
                diagnosis: &diagnosis,
                plan: &plan,
                evidence: &evidence,
                run,
                approved_plan: None,
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
        let key = key.clone();
        let subject = subject.to_string();
        let event_id = trigger.event_id.clone();
        let event_time = timestamp(trigger.time);
        let message_id = message.message_id.clone();
        let superseded = self
            .store
            .write(move |tx| {
                let Some((incident, applied_at)) = query::last_fix_on_subject(tx.connection(), &key.account, &key.region, &subject)? else {
                    return Ok(None);
                };
                if event_time >= applied_at {
                    return Ok(None);
                }
                let body = json!({ "event_time": event_time, "fix_applied_at": applied_at, "message_id": message_id,
                    "nodegroup": format!("{}/{}", key.cluster, key.nodegroup), "subject": subject });
                tx.append(Some(&incident), Some(&event_id), RecordKind::EventSuperseded, &body)?;
                tx.join_nodegroup(&incident, &key.cluster, &key.nodegroup)?;
                tx.mark_event(&event_id, message_id.as_deref(), "superseded", Some(&incident))?;
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
            OffsetDateTime::now_utc()
                - Duration::from_secs(self.config.remediation.incident_window_secs),
        );
        let mode = self.config.policy.mode.as_str().to_string();
        let key = key.clone();
        let subject = subject.map(str::to_string);
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
                let earlier = match &subject {
                    Some(subject) => query::incidents_for_subject(
                        tx.connection(),
                        &key.account,
                        &key.region,
                        &cause,
                        subject,
                    )?,
                    None => query::incidents_for(tx.connection(), &key, &cause)?,
                };
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
                    Some(incident) => {
                        tx.join_nodegroup(&incident.incident_id, &key.cluster, &key.nodegroup)?;
                        IncidentChoice {
                            id: incident.incident_id.clone(),
                            is_new: false,
                            previous_outcome: Outcome::parse(&incident.outcome),
                        }
                    }
                    None => {
                        let id =
                            format!("inc-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
                        tx.open_incident(&id, &key, &cause, subject.as_deref(), &mode, &summary)?;
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
                    ..History::default()
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

    /// Runs every step past the guard, then verifies what was applied and rolls it back when
    /// the cause did not go away.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn execute(
        &self,
        incident_id: &str,
        key: &NodegroupKey,
        trigger: &Trigger,
        evidence: &Evidence,
        plan: &Plan,
        base: History,
        approval: Option<Approval>,
    ) -> Result<Run, PipelineError> {
        let actuator = AwsActuator::new(self.clients.for_region(&trigger.region));
        let policy = &self.config.policy;
        let mut run = Run::default();
        let mut applied: Vec<(usize, StepResult)> = Vec::new();
        let mut earlier_failure = false;
        for (position, step) in plan.steps.iter().enumerate() {
            let touched = touched(step, evidence);
            let scopes = breaker_scopes(step, evidence, key);
            let resource = resource_of(step);
            let history = self
                .history_for(key, step, &resource, &scopes, &base, approval.as_ref())
                .await?;
            let target = guard::Target {
                account: &key.account,
                region: &key.region,
                cluster: &key.cluster,
                nodegroup: &key.nodegroup,
                nodegroup_tags: &evidence.nodegroup.tags,
                touched: &touched,
            };
            let decision = if earlier_failure {
                Decision::Skip {
                    reason: "an earlier step of this plan failed".into(),
                }
            } else {
                let decided =
                    guard::decide(policy, step, &target, &history, OffsetDateTime::now_utc());
                // Relaunching before the fixes are in would only make another failing instance.
                let relaunch_too_early = step.fix == FixKind::CycleNodegroup
                    && decided.allows()
                    && run.statuses.iter().any(|s| *s != StepStatus::Applied);
                if !relaunch_too_early {
                    decided
                } else if run.statuses.contains(&StepStatus::Skipped) {
                    Decision::Skip {
                        reason: "cycle_nodegroup relaunches for fixes the guard refused".into(),
                    }
                } else {
                    Decision::Hold {
                        reason: "cycle_nodegroup waits until the fixes before it are applied"
                            .into(),
                        awaiting_approval: run.awaiting_approval,
                    }
                }
            };
            let permission = if policy.mode == Mode::DryRun {
                Some(act::check_permission(&actuator, step).await)
            } else {
                None
            };
            self.record_decision(incident_id, position, step, &decision, permission)
                .await?;
            if decision.awaits_approval() {
                run.awaiting_approval = true;
            }
            if !decision.allows() {
                info!(fix = %step.fix, ?decision, "step not applied");
                run.statuses.push(match decision {
                    Decision::Skip { .. } => StepStatus::Skipped,
                    _ => StepStatus::Planned,
                });
                continue;
            }
            info!(fix = %step.fix, "applying");
            let result = act::apply(&actuator, step, self.config.remediation.wait_policy()).await;
            if let Action::CreateRoute { route_table_id, .. }
            | Action::ReplaceRoute { route_table_id, .. } = &step.action
            {
                self.routes.forget_table(route_table_id);
            }
            let status = result.status;
            self.record_result(incident_id, position, step, &result, key, &resource)
                .await?;
            if status == StepStatus::Failed {
                warn!(fix = %step.fix, detail = %result.detail, "step failed");
                earlier_failure = true;
                let reason = format!("{} failed: {}", step.fix, result.detail);
                run.escalations.push(reason.clone());
                self.count_failure(incident_id, &scopes, &reason).await?;
            } else {
                info!(fix = %step.fix, detail = %result.detail, "step applied");
                applied.push((position, result));
            }
            run.statuses.push(status);
        }
        if !applied.is_empty() && !earlier_failure {
            self.verify_or_roll_back(
                &actuator,
                incident_id,
                key,
                evidence,
                plan,
                &applied,
                &mut run,
            )
            .await?;
        }
        Ok(run)
    }

    async fn history_for(
        &self,
        key: &NodegroupKey,
        step: &Step,
        resource: &str,
        scopes: &[String],
        base: &History,
        approval: Option<&Approval>,
    ) -> Result<History, PipelineError> {
        let account = key.account.clone();
        let resource = resource.to_string();
        let fix = step.fix.code();
        let scopes = scopes.to_vec();
        let hour_ago = timestamp(OffsetDateTime::now_utc() - Duration::from_secs(3600));
        let (kill_switch, open_breakers, last_same_fix, mutations_last_hour) = self
            .store
            .read(move |c| {
                Ok((
                    control::kill_switch(c)?,
                    control::open_breakers(c, &scopes)?,
                    control::last_mutation(c, &resource, fix)?,
                    control::mutations_since(c, &account, &hour_ago)?,
                ))
            })
            .await?;
        let parse = |at: &str| {
            OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
        };
        Ok(History {
            // A human's approval is exactly how a failed or returning fix gets another try.
            failed_fix: if approval.is_some() {
                None
            } else {
                base.failed_fix.clone()
            },
            fix_did_not_hold: if approval.is_some() {
                None
            } else {
                base.fix_did_not_hold.clone()
            },
            kill_switch: kill_switch.map(|k| {
                format!(
                    "{} by {}",
                    k.reason.unwrap_or_else(|| "no reason given".into()),
                    k.set_by.unwrap_or_else(|| "an operator".into())
                )
            }),
            open_breakers,
            last_same_fix: last_same_fix.and_then(|(at, _)| parse(&at)),
            mutations_last_hour,
            approval: approval.cloned(),
        })
    }

    async fn record_decision(
        &self,
        incident_id: &str,
        position: usize,
        step: &Step,
        decision: &Decision,
        permission: Option<act::Permission>,
    ) -> Result<(), PipelineError> {
        let id = incident_id.to_string();
        let guard_body = json!({ "position": position, "fix": step.fix, "decision": decision, "mode": self.config.policy.mode });
        let intent_body = json!({ "position": position, "fix": step.fix, "calls": step.action.api_calls(), "at": now() });
        let permission_body =
            permission.map(|p| json!({ "position": position, "fix": step.fix, "permission": p }));
        let held = match decision {
            Decision::Apply { .. } => None,
            Decision::Hold { reason, .. } => Some((StepStatus::Planned, reason.clone())),
            Decision::Skip { reason } => Some((StepStatus::Skipped, reason.clone())),
        };
        self.store
            .write(move |tx| {
                tx.append(Some(&id), None, RecordKind::GuardDecision, &guard_body)?;
                if let Some(body) = &permission_body {
                    tx.append(Some(&id), None, RecordKind::PermissionCheck, body)?;
                }
                match &held {
                    Some((status, reason)) => tx.set_step(&id, position, status.as_str(), reason),
                    None => tx
                        .append(Some(&id), None, RecordKind::StepIntent, &intent_body)
                        .map(|_| ()),
                }
            })
            .await?;
        Ok(())
    }

    async fn record_result(
        &self,
        incident_id: &str,
        position: usize,
        step: &Step,
        result: &StepResult,
        key: &NodegroupKey,
        resource: &str,
    ) -> Result<(), PipelineError> {
        let id = incident_id.to_string();
        let status = result.status;
        let detail = result.detail.clone();
        let fix = step.fix.code();
        let account = key.account.clone();
        let resource = resource.to_string();
        let body = json!({ "position": position, "fix": step.fix, "result": result });
        self.store
            .write(move |tx| {
                tx.append(Some(&id), None, RecordKind::StepResult, &body)?;
                tx.set_step(&id, position, status.as_str(), &detail)?;
                if status == StepStatus::Applied {
                    tx.record_mutation(&account, &resource, fix, &id)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Counts a failure against the breakers of its scopes; opens those past their threshold.
    async fn count_failure(
        &self,
        incident_id: &str,
        scopes: &[String],
        reason: &str,
    ) -> Result<Vec<String>, PipelineError> {
        let threshold = self.config.guard.breaker_failures;
        let window_start = timestamp(
            OffsetDateTime::now_utc() - Duration::from_secs(self.config.guard.breaker_window_secs),
        );
        let id = incident_id.to_string();
        let scopes = scopes.to_vec();
        let reason_text = reason.to_string();
        let opened = self
            .store
            .write(move |tx| {
                let opened = tx.record_breaker_failure(
                    &scopes,
                    &id,
                    &reason_text,
                    |scope| if scope == "global" { threshold * 3 } else { threshold },
                    &window_start,
                )?;
                for scope in &opened {
                    tx.append(
                        Some(&id),
                        None,
                        RecordKind::BreakerOpened,
                        &json!({ "scope": scope, "reason": reason_text, "effect": "nodemedic only observes in this scope until the breaker is reset" }),
                    )?;
                }
                Ok(opened)
            })
            .await?;
        for scope in &opened {
            warn!(%scope, reason, "circuit breaker opened: observing only in this scope");
        }
        Ok(opened)
    }

    #[allow(clippy::too_many_arguments)]
    async fn verify_or_roll_back(
        &self,
        actuator: &AwsActuator,
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
        let nodegroup = Nodegroup {
            cluster: &key.cluster,
            name: &key.nodegroup,
            group: group.as_deref(),
        };
        let wait = WaitPolicy {
            poll: Duration::from_secs_f64(self.config.verify.poll_secs),
            timeout: Duration::from_secs(self.config.verify.timeout_secs),
        };
        let verification: Verification = verify::verify(actuator, &steps, &nodegroup, wait).await;
        let id = incident_id.to_string();
        let body = json!(verification);
        self.store
            .write(move |tx| {
                tx.append(Some(&id), None, RecordKind::Verification, &body)
                    .map(|_| ())
            })
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
        for (position, result) in applied.iter().rev() {
            let step = &plan.steps[*position];
            let undone = verify::rollback(actuator, step, result).await;
            let id = incident_id.to_string();
            let position = *position;
            let status = undone.status;
            let detail = undone.detail.clone();
            let body = json!({ "position": position, "fix": step.fix, "result": undone });
            self.store
                .write(move |tx| {
                    tx.append(Some(&id), None, RecordKind::Rollback, &body)?;
                    if status == StepStatus::RolledBack {
                        tx.set_step(&id, position, status.as_str(), &detail)?;
                    }
                    Ok(())
                })
                .await?;
            if status == StepStatus::RolledBack {
                run.statuses[position] = StepStatus::RolledBack;
            }
        }
        let reason = format!("verification failed: {}", failing.join("; "));
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

    /// Records the incident's outcome, the plan's approval state, and tells people.
    pub(super) async fn conclude(&self, conclusion: Conclusion<'_>) -> Result<(), PipelineError> {
        let Conclusion {
            incident,
            key,
            trigger,
            message_id,
            diagnosis,
            plan,
            evidence,
            run,
            approved_plan,
        } = conclusion;
        let outcome = outcome_of(&run, plan, incident.previous_outcome);
        info!(outcome = outcome.as_str(), "incident concluded");
        let mode = self.config.policy.mode.as_str().to_string();
        let cause = diagnosis.cause().map(|c| c.code()).unwrap_or("unknown");
        let id = incident.id.clone();
        let event_id = trigger.event_id.clone();
        let body = json!({
            "outcome": outcome.as_str(),
            "mode": mode,
            "cause": cause,
            "plan_id": plan.id,
            "steps": run.statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "awaiting_approval": run.awaiting_approval,
            "rolled_back": run.rolled_back,
            "notes": plan.notes,
            "aws_calls": evidence.calls,
        });
        let plan_body = json!(plan);
        let trigger_body = json!(trigger);
        let plan_id = plan.id.clone();
        let awaiting = run.awaiting_approval;
        let approved = approved_plan.map(str::to_string);
        let plan_before = self
            .store
            .write(move |tx| {
                tx.append(Some(&id), Some(&event_id), RecordKind::Outcome, &body)?;
                tx.set_outcome(&id, &mode, outcome)?;
                let mut before = None;
                if let Some(approved) = &approved {
                    tx.set_plan_status(approved, PlanStatus::Applied, None, None)?;
                } else if awaiting {
                    before = tx.register_plan(
                        &id,
                        &plan_id,
                        PlanStatus::AwaitingApproval,
                        &plan_body,
                        &trigger_body,
                    )?;
                }
                if let Some(message_id) = &message_id {
                    tx.mark_event(
                        &event_id,
                        Some(message_id)
                            .filter(|m| !m.is_empty())
                            .map(String::as_str),
                        "incident",
                        Some(&id),
                    )?;
                }
                Ok(before)
            })
            .await?;
        // Announced once: a plan already waiting, approved or rejected is not asked for again.
        let newly_waiting = plan_before
            .as_deref()
            .is_none_or(|status| status == PlanStatus::Superseded.as_str());
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
mod tests {
    use super::*;
    use crate::plan::{Action, FixKind, Step};

    fn plan_with(steps: usize) -> Plan {
        let mut plan = Plan::empty();
        plan.steps = (0..steps)
            .map(|_| Step {
                fix: FixKind::AddNatRoute,
                action: Action::CreateRoute {
                    route_table_id: "rtb".into(),
                    destination_cidr_block: "0.0.0.0/0".into(),
                    nat_gateway_id: "nat".into(),
                },
                reason: String::new(),
            })
            .collect();
        plan
    }

    fn run(statuses: &[StepStatus], rolled_back: bool) -> Run {
        Run {
            statuses: statuses.to_vec(),
            rolled_back,
            ..Run::default()
        }
    }

    #[test]
    fn outcomes_follow_what_the_run_did() {
        use StepStatus::*;
        assert_eq!(
            outcome_of(&run(&[Applied, Applied], false), &plan_with(2), None),
            Outcome::Fixed
        );
        assert_eq!(
            outcome_of(&run(&[Applied, Failed], false), &plan_with(2), None),
            Outcome::Failed
        );
        assert_eq!(
            outcome_of(&run(&[RolledBack, Applied], true), &plan_with(2), None),
            Outcome::Failed
        );
        assert_eq!(
            outcome_of(&run(&[Planned, Planned], false), &plan_with(2), None),
            Outcome::Planned
        );
        assert_eq!(
            outcome_of(&run(&[Skipped], false), &plan_with(1), None),
            Outcome::Planned
        );
        assert_eq!(
            outcome_of(&run(&[], false), &plan_with(0), None),
            Outcome::NoFix
        );
        assert_eq!(
            outcome_of(
                &run(&[Skipped], false),
                &plan_with(1),
                Some(Outcome::Failed)
            ),
            Outcome::Failed,
            "a failure is not hidden by a later run the guard held back"
        );
        assert_eq!(
            outcome_of(
                &run(&[Applied], false),
                &plan_with(1),
                Some(Outcome::Failed)
            ),
            Outcome::Fixed
        );
    }

    #[test]
    fn a_launch_depends_on_its_keys_route_tables_and_vpc() {
        let evidence = Evidence::lab_002();
        let subjects = related_subjects(&evidence);
        assert!(
            subjects.contains(&format!("key:{}", crate::evidence::fixtures::KEY_ARN)),
            "{subjects:?}"
        );
        // The storm subject of the key finding is among them.
        let diagnosis = crate::diagnose::diagnose(&evidence);
        let subject = diagnosis
            .primary()
            .and_then(|f| storm_subject(&f.subject))
            .unwrap();
        assert!(subjects.contains(&subject), "{subject} in {subjects:?}");

        let evidence = Evidence::lab_000();
        let subjects = related_subjects(&evidence);
        assert!(
            subjects.iter().any(|s| s.starts_with("route-table:")),
            "{subjects:?}"
        );
        assert!(
            subjects.iter().any(|s| s.starts_with("vpc:")),
            "{subjects:?}"
        );
        let mut sorted = subjects.clone();
        sorted.sort();
        assert_eq!(
            subjects, sorted,
            "sorted, so locks are always taken in one order"
        );
        let diagnosis = crate::diagnose::diagnose(&evidence);
        let subject = diagnosis
            .primary()
            .and_then(|f| storm_subject(&f.subject))
            .unwrap();
        assert!(subjects.contains(&subject), "{subject} in {subjects:?}");
    }

    #[test]
    fn shared_resources_name_a_storm_subject_and_others_do_not() {
        assert_eq!(
            storm_subject(&Subject::Key {
                key_arn: "arn:k".into(),
                policy: None,
                service_linked_role: "r".into(),
                cross_account: false,
                explicit_deny: None
            }),
            Some("key:arn:k".into())
        );
        assert_eq!(storm_subject(&Subject::Resource { id: "x".into() }), None);
        assert_eq!(storm_subject(&Subject::None), None);
    }
}
