//! Executing a plan: the guard decides each step with the history the store holds; allowed
//! steps are applied with an intent record before and a result record after; what was applied is
//! verified and, when the cause did not go away, rolled back; failures feed the circuit breakers.

use std::time::Duration;

use tracing::{Instrument, info, info_span, warn};

use super::remediation::Remediation;
use super::resume::{self, Interrupted};
use super::{Accounts, Pipeline, PipelineError};
use crate::act::{self, Actuator, PolicyReview, StepResult, StepStatus};
use crate::audit::NodegroupKey;
use crate::audit::control::{self, KillSwitch};
use crate::core::evidence::{Evidence, ProfileLookup};
use crate::core::guard::{self, Approval, Decision, History, Mode, Touched};
use crate::core::ids::{BreakerScope, ScopeKind};
use crate::core::journal::{self, Entry};
use crate::core::plan::{Action, Step};
use crate::core::time::Timestamp;
use crate::core::time::now;

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
    let with_tags = |id: &str, tags: Result<&crate::core::evidence::Tags, String>| match tags {
        Ok(tags) => Touched {
            id: id.to_string(),
            tags: tags.clone(),
            tags_unreadable: None,
        },
        Err(why) => Touched {
            id: id.to_string(),
            tags: Default::default(),
            tags_unreadable: Some(why),
        },
    };
    let not_collected = || "it is not in the evidence".to_string();
    match &step.action {
        Action::CreateRoute { route_table_id, .. }
        | Action::ReplaceRoute { route_table_id, .. } => vec![with_tags(
            route_table_id,
            network
                .and_then(|n| n.route_tables.iter().find(|t| &t.id == route_table_id))
                .map(|t| &t.tags)
                .ok_or_else(not_collected),
        )],
        Action::PutKeyPolicy { key_id, .. } => vec![with_tags(
            key_id,
            evidence
                .keys
                .iter()
                .find_map(|k| match &k.lookup {
                    crate::core::evidence::KeyLookup::Found(m) if &m.arn == key_id => {
                        Some(match &m.tags_unreadable {
                            Some(why) => Err(why.clone()),
                            None => Ok(&m.tags),
                        })
                    }
                    _ => None,
                })
                .unwrap_or_else(|| Err(not_collected())),
        )],
        Action::CycleNodegroup {
            cluster, nodegroup, ..
        } => {
            vec![with_tags(
                &format!("{cluster}/{nodegroup}"),
                Ok(&evidence.nodegroup.tags),
            )]
        }
        Action::ModifyVpcAttribute { vpc_id, .. } => {
            vec![with_tags(
                vpc_id,
                network.map(|n| &n.vpc.tags).ok_or_else(not_collected),
            )]
        }
        Action::AddRoleToInstanceProfile { profile_name, .. } => vec![with_tags(
            profile_name,
            match evidence
                .identity
                .as_ref()
                .and_then(|i| i.instance_profile.as_ref())
            {
                Some(ProfileLookup::Found { name, tags, .. }) if name == profile_name => Ok(tags),
                _ => Err(not_collected()),
            },
        )],
        Action::ModifyVpcEndpointPrivateDns { endpoint_id } => vec![with_tags(
            endpoint_id,
            network
                .and_then(|n| n.endpoints.iter().find(|e| &e.id == endpoint_id))
                .map(|e| &e.tags)
                .ok_or_else(not_collected),
        )],
        Action::ModifySubnetAttribute { subnet_id } => {
            vec![with_tags(
                subnet_id,
                network
                    .and_then(|n| n.subnet(subnet_id))
                    .map(|s| &s.tags)
                    .ok_or_else(not_collected),
            )]
        }
        Action::AttachRolePolicy { role_name, .. } => vec![with_tags(
            role_name,
            match evidence.role_named(role_name) {
                Some(crate::core::evidence::RoleLookup::Found { tags, .. }) => Ok(tags),
                _ => Err(not_collected()),
            },
        )],
        Action::CreateAccessEntry { cluster, .. } => vec![with_tags(
            cluster,
            evidence
                .cluster
                .as_ref()
                .map(|c| &c.tags)
                .ok_or_else(not_collected),
        )],
    }
}

/// The id of the resource a step changes, for cooldowns.
pub(super) fn resource_of(step: &Step) -> String {
    match &step.action {
        Action::CreateRoute { route_table_id, .. }
        | Action::ReplaceRoute { route_table_id, .. } => route_table_id.clone(),
        Action::PutKeyPolicy { key_id, .. } => key_id.clone(),
        Action::CycleNodegroup {
            cluster, nodegroup, ..
        } => format!("{cluster}/{nodegroup}"),
        Action::ModifyVpcAttribute { vpc_id, attribute } => format!("{vpc_id}/{attribute}"),
        Action::ModifySubnetAttribute { subnet_id } => subnet_id.clone(),
        Action::ModifyVpcEndpointPrivateDns { endpoint_id } => endpoint_id.clone(),
        Action::AddRoleToInstanceProfile { profile_name, .. } => profile_name.clone(),
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

/// Failures that open a stored scope's breaker (see [`BreakerScope::threshold`]).
pub(super) fn breaker_threshold(scope: &str, per_resource: u32) -> u32 {
    BreakerScope::threshold(
        ScopeKind::of_stored(scope).unwrap_or(ScopeKind::Nodegroup),
        per_resource,
    )
}

/// The circuit-breaker scopes a step's failure counts against, as the store keys them.
pub(super) fn breaker_scopes(step: &Step, evidence: &Evidence, key: &NodegroupKey) -> Vec<String> {
    BreakerScope::for_step(step, evidence, key)
        .iter()
        .map(BreakerScope::to_string)
        .collect()
}

impl<W: Accounts> Pipeline<W> {
    /// Runs every step past the guard, then verifies what was applied and rolls it back when
    /// the cause did not go away.
    pub(super) async fn execute<A: Actuator>(
        &self,
        remediation: &Remediation<'_>,
        actuator: &A,
    ) -> Result<Run, PipelineError> {
        let Remediation {
            incident,
            key,
            evidence,
            plan,
            history: base,
            approval,
            ..
        } = remediation;
        let (key, evidence, plan) = (*key, *evidence, *plan);
        let incident_id = incident.id.as_str();
        let policy = &self.config.policy;
        let mut run = Run::default();
        let mut applied: Vec<(usize, StepResult)> = Vec::new();
        let mut earlier_failure = false;
        let unfinished = resume::unfinished(&self.store.read(|c| c.records(incident_id)).await?);
        for (position, step) in plan.steps.iter().enumerate() {
            if self.stopping.is_cancelled() {
                return Err(PipelineError::ShuttingDown);
            }
            let mut only_restore = false;
            if !earlier_failure && let Some(done) = unfinished.applied(step) {
                info!(fix = %step.fix, "applied before the run was interrupted; not applied again");
                self.record_resumed(
                    incident_id,
                    position,
                    step,
                    done,
                    "applied before the last run was interrupted",
                )
                .await?;
                run.statuses.push(StepStatus::Applied);
                applied.push((position, done.clone()));
                continue;
            }
            if !earlier_failure
                && approval.is_none()
                && let Some(resolution) = self
                    .resolve_interrupted(actuator, &unfinished, step, key, evidence)
                    .await
            {
                match resolution {
                    Interrupted::InEffect(result) => {
                        self.record_resumed(incident_id, position, step, &result, &result.detail)
                            .await?;
                        run.statuses.push(StepStatus::Applied);
                        applied.push((position, result));
                        continue;
                    }
                    Interrupted::RestoreOnly => only_restore = true,
                    Interrupted::Unknown(reason) => {
                        let decision = Decision::Hold {
                            reason,
                            awaiting_approval: true,
                        };
                        let resource = resource_of(step);
                        self.record_decision(
                            incident_id,
                            position,
                            step,
                            decision,
                            None,
                            None,
                            key,
                            &resource,
                            false,
                        )
                        .await?;
                        run.awaiting_approval = true;
                        self.metrics.fix_step(step.fix.code(), "held");
                        run.statuses.push(StepStatus::Planned);
                        continue;
                    }
                }
            }
            let touched = touched(step, evidence);
            let scopes = breaker_scopes(step, evidence, key);
            let resource = resource_of(step);
            let mut history = self
                .history_for(
                    incident_id,
                    key,
                    step,
                    &resource,
                    &scopes,
                    base,
                    approval.as_ref(),
                )
                .await?;
            // A second opinion on a policy before the guard judges writing it: read-only, so
            // asked in dry-run too, where the report then shows what AWS would say.
            if let Action::PutKeyPolicy { policy, .. } = &step.action {
                history.policy_review = Some(actuator.review_policy(policy).await);
            }
            let target = guard::Site {
                account: &key.account,
                region: &key.region,
                cluster: &key.cluster,
                nodegroup: &key.nodegroup,
                nodegroup_tags: &evidence.nodegroup.tags,
                touched: &touched,
            };
            let decision = guard::decide_in_run(
                policy,
                step,
                &target,
                &history,
                Timestamp::now(),
                guard::RunSoFar {
                    earlier_failure,
                    statuses: &run.statuses,
                    awaiting_approval: run.awaiting_approval,
                },
            );
            // Only what dry-run holds is checked: a step the guard refuses is never sent, not
            // even with DryRun.
            let permission =
                if policy.mode == Mode::DryRun && matches!(decision, Decision::Hold { .. }) {
                    Some(
                        self.check_permission(actuator, incident_id, key, position, step, &mut run)
                            .await?,
                    )
                } else {
                    None
                };
            let (decision, reservation) = self
                .record_decision(
                    incident_id,
                    position,
                    step,
                    decision,
                    permission,
                    history.policy_review,
                    key,
                    &resource,
                    only_restore,
                )
                .instrument(info_span!("guard", fix = %step.fix))
                .await?;
            if decision.allows() {
                crate::faults::crash_point("after_intent", Some(step.fix.code()));
            }
            if decision.awaits_approval() {
                run.awaiting_approval = true;
            }
            if !decision.allows() {
                info!(fix = %step.fix, ?decision, "step not applied");
                let status = match decision {
                    Decision::Skip { .. } => StepStatus::Skipped,
                    _ => StepStatus::Planned,
                };
                self.metrics.fix_step(
                    step.fix.code(),
                    if status == StepStatus::Skipped {
                        "skipped"
                    } else {
                        "held"
                    },
                );
                run.statuses.push(status);
                continue;
            }
            info!(fix = %step.fix, "applying");
            // A long wait (a cycle waits for the nodegroup) is left when the process must stop;
            // the intent is recorded, so the next run resumes it.
            let wait = act::WaitPolicy::from(&self.config.remediation);
            let applying = async {
                if only_restore {
                    act::restore_cycle(actuator, step, wait).await
                } else {
                    act::apply(actuator, step, wait).await
                }
            };
            let result = tokio::select! {
                result = applying.instrument(info_span!("fix_step", fix = %step.fix)) => result,
                _ = self.stopping.cancelled() => return Err(PipelineError::ShuttingDown),
            };
            crate::faults::crash_point("after_mutation", Some(step.fix.code()));
            self.metrics
                .fix_step(step.fix.code(), result.status.as_str());
            if let Action::CreateRoute { route_table_id, .. }
            | Action::ReplaceRoute { route_table_id, .. } = &step.action
            {
                self.routes.forget_table(route_table_id);
            }
            // Whatever the step did (even a failed one may have changed something), a failure's
            // evidence read before it no longer stands.
            self.failure_evidence.forget_all();
            let status = result.status;
            self.record_result(incident_id, position, step, &result, reservation)
                .await?;
            if status == StepStatus::Failed {
                warn!(fix = %step.fix, detail = %result.detail, "step failed");
                earlier_failure = true;
                let reason = format!("{} failed: {}", step.fix, result.detail);
                run.escalations.push(reason.clone());
                for scope in self.count_failure(incident_id, &scopes, &reason).await? {
                    run.escalations
                        .push(format!("circuit breaker {scope} opened"));
                }
            } else {
                info!(fix = %step.fix, detail = %result.detail, "step applied");
                applied.push((position, result));
            }
            run.statuses.push(status);
        }
        // Steps applied before a failed one are verified too, and undone if they did not help.
        if !applied.is_empty() {
            self.verify_or_roll_back(
                actuator,
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

    #[allow(clippy::too_many_arguments)]
    async fn history_for(
        &self,
        incident_id: &str,
        key: &NodegroupKey,
        step: &Step,
        resource: &str,
        scopes: &[String],
        base: &History,
        approval: Option<&Approval>,
    ) -> Result<History, PipelineError> {
        let hour_ago = Timestamp::window_start(Duration::from_secs(3600)).to_string();
        let (kill_switch, open_breakers, last_same_fix, mutations_last_hour) = self
            .store
            .read(|c| {
                Ok((
                    control::kill_switch(c)?,
                    control::open_breakers(c, scopes)?,
                    control::last_mutation(c, resource, step.fix.code())?,
                    control::mutations_since(c, &key.account, &hour_ago)?,
                ))
            })
            .await?;
        let history = History {
            failed_fix: base.failed_fix.clone(),
            fix_did_not_hold: base.fix_did_not_hold.clone(),
            kill_switch: kill_switch.map(describe_kill_switch),
            open_breakers,
            // The cooldown is between incidents: a run resuming its own interrupted step, or
            // re-applying within its own incident, is not held back by itself.
            last_same_fix: last_same_fix
                .filter(|(_, incident)| incident != incident_id)
                .and_then(|(at, _)| Timestamp::parse(&at).ok()),
            mutations_last_hour,
            approval: None,
            policy_review: None,
        };
        Ok(guard::with_approval(history, approval))
    }

    /// Records the guard's decision (and the dry-run permission check). For a step about to be
    /// applied it also reserves the mutation against the hourly limit, in the same transaction as
    /// the intent record: a step the limit was reached for meanwhile is held instead. Returns the
    /// decision as recorded and the reservation.
    #[allow(clippy::too_many_arguments)]
    async fn record_decision(
        &self,
        incident_id: &str,
        position: usize,
        step: &Step,
        decision: Decision,
        permission: Option<act::Permission>,
        policy_review: Option<PolicyReview>,
        key: &NodegroupKey,
        resource: &str,
        only_restore: bool,
    ) -> Result<(Decision, Option<i64>), PipelineError> {
        let limit = self.config.policy.max_mutations_per_hour;
        let hour_ago = Timestamp::window_start(Duration::from_secs(3600)).to_string();
        let intent = Entry::StepIntent(journal::StepIntent {
            position,
            fix: step.fix,
            rollback: None,
            dry_run: None,
            // The calls that will be sent: a resumed cycle sends only its restore.
            calls: if only_restore {
                step.action.restore_calls()
            } else {
                step.action.api_calls()
            },
            at: now(),
        });
        let permission = permission.map(|permission| {
            Entry::PermissionCheck(journal::PermissionCheck {
                position,
                fix: step.fix,
                permission,
            })
        });
        Ok(self
            .store
            .write(|tx| {
                let mut decision = decision.clone();
                let mut reservation = None;
                // Read again where the intent commits: a switch turned on since the guard
                // decided stops the step here.
                if decision.allows()
                    && let Some(switch) = tx.kill_switch_at_commit()?
                {
                    decision = guard::kill_switch_turned_on(&describe_kill_switch(switch));
                }
                if decision.allows() {
                    reservation = tx.reserve_mutation(
                        &key.account,
                        resource,
                        step.fix.code(),
                        incident_id,
                        &hour_ago,
                        limit,
                    )?;
                    if reservation.is_none() {
                        decision = guard::rate_limit_reached(limit, &key.account);
                    }
                }
                let guard = Entry::GuardDecision(journal::GuardDecision {
                    position,
                    fix: step.fix,
                    decision: decision.clone(),
                    mode: self.config.policy.mode,
                    policy_review: policy_review.clone(),
                });
                tx.record(Some(incident_id), None, &guard)?;
                if let Some(permission) = &permission {
                    tx.record(Some(incident_id), None, permission)?;
                }
                match &decision {
                    Decision::Apply { .. } => {
                        tx.record(Some(incident_id), None, &intent)?;
                    }
                    Decision::Hold { reason, .. } => {
                        tx.set_step(incident_id, position, StepStatus::Planned.as_str(), reason)?;
                    }
                    Decision::Skip { reason } => {
                        tx.set_step(incident_id, position, StepStatus::Skipped.as_str(), reason)?;
                    }
                }
                Ok((decision, reservation))
            })
            .await?)
    }

    /// Records a step's result; a reserved mutation that changed nothing is released.
    async fn record_result(
        &self,
        incident_id: &str,
        position: usize,
        step: &Step,
        result: &StepResult,
        reservation: Option<i64>,
    ) -> Result<(), PipelineError> {
        let entry = Entry::StepResult(journal::StepResultEntry {
            position,
            fix: step.fix,
            result: result.clone(),
            resumed: None,
            why: None,
        });
        self.store
            .write(|tx| {
                tx.record(Some(incident_id), None, &entry)?;
                tx.set_step(
                    incident_id,
                    position,
                    result.status.as_str(),
                    &result.detail,
                )?;
                if let Some(seq) = reservation
                    && !result.changed
                {
                    tx.release_mutation(seq)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Counts a failure against the breakers of its scopes; opens those past their threshold.
    pub(super) async fn count_failure(
        &self,
        incident_id: &str,
        scopes: &[String],
        reason: &str,
    ) -> Result<Vec<String>, PipelineError> {
        let threshold = self.config.guard.breaker_failures;
        let window_start =
            Timestamp::window_start(Duration::from_secs(self.config.guard.breaker_window_secs))
                .to_string();
        let opened = self
            .store
            .write(|tx| {
                let opened = tx.record_breaker_failure(
                    scopes,
                    incident_id,
                    reason,
                    &|scope| breaker_threshold(scope, threshold),
                    &window_start,
                )?;
                for scope in &opened {
                    let entry = Entry::BreakerOpened(journal::BreakerOpened {
                        scope: scope.clone(),
                        reason: reason.to_string(),
                        effect: "nodemedic only observes in this scope until the breaker is reset"
                            .into(),
                    });
                    tx.record(Some(incident_id), None, &entry)?;
                }
                Ok(opened)
            })
            .await?;
        for scope in &opened {
            warn!(%scope, reason, "circuit breaker opened: observing only in this scope");
        }
        Ok(opened)
    }
}

/// The kill switch as the guard's reasons quote it.
fn describe_kill_switch(switch: KillSwitch) -> String {
    format!(
        "{} by {}",
        switch.reason.unwrap_or_else(|| "no reason given".into()),
        switch.set_by.unwrap_or_else(|| "an operator".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::evidence::Evidence;
    use crate::pipeline::test_bench::{Bench, lab_000_world};

    #[tokio::test(flavor = "multi_thread")]
    async fn a_kill_switch_turned_on_after_the_guard_decided_stops_the_intent() {
        let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
        let key = NodegroupKey {
            account: "123456789012".into(),
            region: "us-west-2".into(),
            cluster: "c".into(),
            nodegroup: "n".into(),
        };
        let step = crate::act::fake::route_step();
        // The guard said apply; an operator turns the switch on before the intent commits.
        bench
            .store
            .write_blocking(|tx| {
                tx.open_incident("inc-k", &key, "subnet_no_egress_route", None, "auto", "")?;
                tx.set_kill_switch(true, Some("alice"), Some("game day"))
            })
            .unwrap();
        let (decision, reservation) = bench
            .pipeline
            .record_decision(
                "inc-k",
                0,
                &step,
                Decision::Apply { approved_by: None },
                None,
                None,
                &key,
                "rtb-new",
                false,
            )
            .await
            .unwrap();
        assert!(!decision.allows(), "{decision:?}");
        assert!(format!("{decision:?}").contains("game day by alice"));
        assert_eq!(reservation, None, "no mutation reserved");
        let kinds: Vec<String> = bench
            .store
            .read_blocking(|c| c.records("inc-k"))
            .unwrap()
            .into_iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(kinds, vec!["guard_decision"], "no intent was recorded");
    }
}
