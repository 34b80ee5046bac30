//! Executing a plan: the guard decides each step with the history the store holds; allowed
//! steps are applied with an intent record before and a result record after; what was applied is
//! verified and, when the cause did not go away, rolled back; failures feed the circuit breakers.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::{Pipeline, PipelineError};
use crate::act::verify::{self, Nodegroup, Verification};
use crate::act::{self, AwsActuator, StepResult, StepStatus, WaitPolicy};
use crate::audit::control;
use crate::audit::store::{now, timestamp};
use crate::audit::{NodegroupKey, RecordKind};
use crate::evidence::Evidence;
use crate::guard::{self, Approval, Decision, History, Mode, Touched};
use crate::intake::Trigger;
use crate::plan::{Action, FixKind, Plan, Step};

/// What running a plan did.
#[derive(Debug, Default)]
pub(super) struct Run {
    pub statuses: Vec<StepStatus>,
    pub awaiting_approval: bool,
    pub rolled_back: bool,
    pub escalations: Vec<String>,
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

impl Pipeline {
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
}
