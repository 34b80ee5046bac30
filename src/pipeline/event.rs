//! One event, stage by stage: admitted (not a second delivery, an account served, a join check
//! due), located (the nodegroup it concerns), earlier work settled under the nodegroup's lock
//! (a run that died, a fix that made the event stale), examined (the evidence its scope asks
//! for) and judged (healthy, or an incident).

use std::ops::ControlFlow;

use serde_json::json;
use tracing::{Instrument, info_span};

use super::failure_evidence::{Reusable, Situation};
use super::{Account, Accounts, Pipeline, PipelineError, seconds_until};
use crate::audit::{NodegroupKey, SubjectScope};
use crate::aws::collect::{CollectError, Scope};
use crate::aws::resolve::Resolution;
use crate::core::checks::diagnose;
use crate::core::evidence::{CallLog, ClusterView, Evidence, ReusedEvidence, Target};
use crate::core::guard::Mode;
use crate::core::ids::LockKey;
use crate::core::journal;
use crate::core::plan::plan;
use crate::core::time::{Timestamp, timestamp};
use crate::core::trigger::{LaunchEvent, LaunchOutcome, Trigger, TriggerKind};
use crate::intake::{Disposition, IgnoredEvent, Inbound};

/// What a stage of handling an event leaves: go on with what it found, or stop with the
/// message's disposition, the outcome recorded.
type Stage<T> = Result<ControlFlow<Disposition, T>, PipelineError>;

/// The value a [`Stage`] goes on with, or returns its disposition from the calling function.
macro_rules! proceed {
    ($stage:expr) => {
        match $stage? {
            ControlFlow::Continue(value) => value,
            ControlFlow::Break(disposition) => return Ok(disposition),
        }
    };
}

impl<W: Accounts> Pipeline<W> {
    /// One event, as one line of stages; each either hands the next what it found or stops
    /// with the message's disposition, its outcome recorded.
    pub(super) async fn handle_trigger(
        &self,
        trigger: Trigger,
        message: &Inbound,
    ) -> Result<Disposition, PipelineError> {
        // Each stage is a span, so traces (and `benches/soak`) show where a message's time goes.
        let account = proceed!(
            self.admit(&trigger, message)
                .instrument(info_span!("admit"))
                .await
        );
        let mut calls = CallLog::default();
        let (key, target) = proceed!(
            self.locate(&trigger, message, &account, &mut calls)
                .instrument(info_span!("locate"))
                .await
        );
        // In a storm, most events predate the fix already applied: they are settled without
        // queueing for the nodegroup's lock (a lease: two more commits per event).
        if self
            .superseded_outside_the_lock(&trigger, &key, message)
            .instrument(info_span!("settled"))
            .await?
        {
            return Ok(Disposition::Delete);
        }
        let _one_incident_per_nodegroup = self
            .locks
            .lock(&LockKey::Nodegroup(&key))
            .instrument(info_span!("lock"))
            .await;
        proceed!(
            self.earlier_work(&trigger, message, &key, &account, &target)
                .instrument(info_span!("earlier_work"))
                .await
        );
        let evidence = proceed!(
            self.examine(&trigger, message, &key, &account, target, calls)
                .instrument(info_span!("examine"))
                .await
        );
        self.judge(key, trigger, message, evidence)
            .instrument(info_span!("judge"))
            .await
    }

    /// Before any AWS read: a second delivery, an account this daemon does not serve, or a join
    /// check that is not due yet.
    async fn admit(&self, trigger: &Trigger, message: &Inbound) -> Stage<W::Account> {
        if self.already_handled(trigger, message).await? {
            return Ok(ControlFlow::Break(Disposition::Delete));
        }
        let account = match self
            .accounts
            .account(&trigger.account, &trigger.region)
            .await
        {
            Ok(account) => account,
            Err(refused) => {
                self.record_refused(trigger, message, &refused).await?;
                return Ok(ControlFlow::Break(Disposition::Delete));
            }
        };
        if let TriggerKind::JoinCheck(check) = &trigger.kind
            && let Some(remaining) = seconds_until(check.due_at)
            && remaining > 5
        {
            // Deadlines longer than SQS's 15-minute delay are reached in hops.
            let hop = self.publish_join_check(trigger, check, remaining).await?;
            return Ok(ControlFlow::Break(hop));
        }
        Ok(ControlFlow::Continue(account))
    }

    /// The nodegroup the event concerns: named by the event, or resolved from its Auto Scaling
    /// group. An event about anything else is recorded as ignored.
    async fn locate(
        &self,
        trigger: &Trigger,
        message: &Inbound,
        account: &W::Account,
        calls: &mut CallLog,
    ) -> Stage<(NodegroupKey, Target)> {
        let target = match (&trigger.kind, trigger.nodegroup()) {
            (TriggerKind::Launch(launch), _) => {
                let (account_id, region) = (&trigger.account, &trigger.region);
                let resolved = match self.resolutions.get(account_id, region, &launch.asg_name) {
                    Some(known) => Ok(known),
                    None => account.resolve(&launch.asg_name, calls).await.inspect(|r| {
                        self.resolutions
                            .remember(account_id, region, &launch.asg_name, r)
                    }),
                };
                match resolved {
                    Ok(Resolution::Nodegroup(target)) => target,
                    Ok(Resolution::NotOurs { reason }) => {
                        let ignored = IgnoredEvent {
                            event_id: trigger.event_id.clone(),
                            source: "aws.autoscaling".into(),
                            detail_type: launch_detail_type(launch.outcome).into(),
                            reason: reason.clone(),
                        };
                        self.record_ignored(&trigger.event_id, message, json!(ignored), &reason)
                            .await?;
                        return Ok(ControlFlow::Break(Disposition::Delete));
                    }
                    Err(error) => {
                        let kept = self.collection_failed(trigger, error.to_string()).await?;
                        return Ok(ControlFlow::Break(kept));
                    }
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
                return Ok(ControlFlow::Break(Disposition::Delete));
            }
        };
        let key = NodegroupKey {
            account: trigger.account.clone(),
            region: trigger.region.clone(),
            cluster: target.cluster.clone(),
            nodegroup: target.nodegroup.clone(),
        };
        Ok(ControlFlow::Continue((key, target)))
    }

    /// An event older than a fix applied to its nodegroup is superseded whoever holds the lock,
    /// as long as no run of the nodegroup is unconcluded (in progress, or died and to be
    /// resumed under the lock): then nothing under the lock could change the verdict.
    async fn superseded_outside_the_lock(
        &self,
        trigger: &Trigger,
        key: &NodegroupKey,
        message: &Inbound,
    ) -> Result<bool, PipelineError> {
        let event_time = timestamp(trigger.time);
        let settled = self
            .store
            .read(|reads| {
                if super::fix_after_event(reads, key, &event_time)?.is_none() {
                    return Ok(false);
                }
                for incident in
                    reads.incidents_of_nodegroup(key, super::resume::UNCONCLUDED_LOOKBACK)?
                {
                    if reads.run_died(&incident.incident_id)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            })
            .await?;
        if !settled {
            return Ok(false);
        }
        self.record_superseded(trigger, key, message).await
    }

    /// Under the nodegroup's lock, before anything is judged from the world: another handler
    /// may have finished the same event while this one waited; a run that died left half-done
    /// work, which is finished first; a fix applied after the event makes the event stale.
    async fn earlier_work(
        &self,
        trigger: &Trigger,
        message: &Inbound,
        key: &NodegroupKey,
        account: &W::Account,
        target: &Target,
    ) -> Stage<()> {
        if self.already_handled(trigger, message).await? {
            return Ok(ControlFlow::Break(Disposition::Delete));
        }
        if let Some(resumable) = self.resumable_for(key).await? {
            let resumed = self
                .resume_incident(
                    resumable,
                    key,
                    trigger,
                    Some(message),
                    account,
                    target.clone(),
                    None,
                )
                .await?;
            return Ok(ControlFlow::Break(resumed));
        }
        if self.superseded_by_fix(trigger, key, message).await? {
            return Ok(ControlFlow::Break(Disposition::Delete));
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The evidence the trigger's scope asks for, unless a launch lands in a subnet whose route
    /// was found healthy moments ago, or a launch goes wrong as one read moments ago did.
    async fn examine(
        &self,
        trigger: &Trigger,
        message: &Inbound,
        key: &NodegroupKey,
        account: &W::Account,
        target: Target,
        mut calls: CallLog,
    ) -> Stage<Evidence> {
        let (read, read_at) = (self.failure_evidence.read_starts(), Timestamp::now());
        if let Some(launch) = launched(trigger)
            && let Some(subnet) = &launch.subnet_id
            && let Some(table) = self.routes.healthy(subnet)
        {
            let healthy = journal::EventHealthy::Cached {
                subnet: subnet.clone(),
                route_table: table,
                cached: true,
                message_id: message.message_id.clone(),
                trigger: trigger.clone(),
            };
            self.record_healthy(trigger, healthy).await?;
            self.schedule_join_check(trigger, &target).await;
            return Ok(ControlFlow::Break(Disposition::Delete));
        }
        let situation = Situation::of(trigger);
        if let Some(situation) = &situation
            && let Some(evidence) = self
                .reusable_evidence(trigger, key, situation, account, &mut calls)
                .instrument(info_span!("reuse"))
                .await?
        {
            return Ok(ControlFlow::Continue(evidence));
        }
        let scope = Scope::for_trigger(trigger);
        match account
            .collect(trigger, target, scope, calls)
            .instrument(info_span!("evidence"))
            .await
        {
            Ok(evidence) => {
                if let Some(situation) = &situation
                    && let Some(subjects) = unhealthy_subjects(&evidence)
                {
                    let reusable = Reusable {
                        subjects,
                        evidence: evidence.clone(),
                        collected_at: read_at,
                    };
                    self.failure_evidence
                        .remember(key, situation, reusable, read);
                }
                if let Some(ClusterView::Unreachable { kind, reason }) = &evidence.kubernetes {
                    tracing::info!(cluster = %evidence.nodegroup.cluster, reason = kind.as_str(), detail = %reason,
                        "the cluster's API was not read; its checks are skipped");
                    self.metrics.cluster_api_skipped(kind.as_str());
                }
                Ok(ControlFlow::Continue(evidence))
            }
            Err(CollectError::NodegroupGone { cluster, nodegroup }) => {
                if let Some(launch) = trigger.launch() {
                    self.resolutions
                        .forget(&trigger.account, &trigger.region, &launch.asg_name);
                }
                let reason = format!("nodegroup {cluster}/{nodegroup} no longer exists");
                self.record_ignored(&trigger.event_id, message, json!(trigger), &reason)
                    .await?;
                Ok(ControlFlow::Break(Disposition::Delete))
            }
            Err(CollectError::Aws(error)) => {
                let kept = self.collection_failed(trigger, error.to_string()).await?;
                Ok(ControlFlow::Break(kept))
            }
        }
    }

    /// The evidence read for an earlier launch gone wrong like this one, unless a fix was
    /// applied since (by any replica) to the nodegroup or to a shared resource that evidence
    /// rests on. A landed instance is read afresh, and must sit where the first one did. In
    /// auto mode, evidence that plans a fix is never reused: what may be changed is decided on
    /// a fresh reading. `calls` (those made so far for this event) go with the evidence.
    async fn reusable_evidence(
        &self,
        trigger: &Trigger,
        key: &NodegroupKey,
        situation: &Situation,
        account: &W::Account,
        calls: &mut CallLog,
    ) -> Result<Option<Evidence>, PipelineError> {
        let Some(kept) = self.failure_evidence.get(key, situation) else {
            return Ok(None);
        };
        // A fix whose time cannot be read is taken as made after the reading.
        let fixed_since = |fix: Option<(String, String)>| {
            fix.is_some_and(|(_, applied_at)| {
                Timestamp::parse(&applied_at).map_or(true, |applied| applied >= kept.collected_at)
            })
        };
        let stale = self
            .store
            .read(|reads| {
                if fixed_since(reads.last_fix_applied(key)?) {
                    return Ok(true);
                }
                for subject in &kept.subjects {
                    if fixed_since(reads.last_fix_on_subject(SubjectScope::near(key, subject))?) {
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .await?;
        if stale {
            self.failure_evidence.forget(key, situation);
            return Ok(None);
        }
        let mut evidence = kept.evidence;
        if let Situation::Landed { instance, .. } = situation {
            // Any failure to read it is left to a whole collection, which reports it.
            let Ok(fresh) = account.instance(instance, calls).await else {
                return Ok(None);
            };
            let placed_alike = evidence.instance.as_ref().is_some_and(|first| {
                first.subnet_id == fresh.subnet_id
                    && sorted(&first.security_group_ids) == sorted(&fresh.security_group_ids)
            });
            if !placed_alike {
                return Ok(None);
            }
            evidence.instance = Some(fresh);
        }
        let reused = ReusedEvidence {
            event_id: evidence.trigger.event_id.clone(),
            collected_at: kept.collected_at,
        };
        evidence.trigger = trigger.clone();
        if self.config.policy.mode == Mode::Auto
            && !plan(&diagnose(&evidence), &evidence).steps.is_empty()
        {
            return Ok(None);
        }
        evidence.calls = std::mem::take(calls);
        evidence.reused = Some(reused);
        Ok(Some(evidence))
    }

    /// The checks' verdict: a healthy nodegroup is recorded (and a launch's route remembered and
    /// its join check scheduled); anything else is an incident.
    async fn judge(
        &self,
        key: NodegroupKey,
        trigger: Trigger,
        message: &Inbound,
        evidence: Evidence,
    ) -> Result<Disposition, PipelineError> {
        let diagnosis = info_span!("diagnosis").in_scope(|| diagnose(&evidence));
        if !diagnosis.is_healthy() {
            self.work_incident(key, trigger, message, evidence, diagnosis)
                .await?;
            return Ok(Disposition::Delete);
        }
        // A join check that could not ask the cluster proves nothing yet: it waits for the
        // moment EKS reports NodeCreationFailure, as it did before the cluster could be read.
        if let TriggerKind::JoinCheck(check) = &trigger.kind
            && matches!(evidence.kubernetes, Some(ClusterView::Unreachable { .. }))
            && let Some(eks_reports_at) = check
                .launched_at
                .checked_add(time::Duration::seconds(EKS_REPORTS_AFTER_SECS))
            && let Some(remaining) = seconds_until(eks_reports_at)
        {
            tracing::info!(instance = %check.instance_id, remaining_secs = remaining,
                "the cluster's API was not read; the join check waits for EKS's own signal");
            return self.publish_join_check(&trigger, check, remaining).await;
        }
        let launched = launched(&trigger).is_some();
        if launched && let Some(network) = &evidence.network {
            for subnet in &network.subnet_ids {
                if let Some(table) = network.route_table_for(subnet) {
                    self.routes.remember_healthy(subnet, &table.id);
                }
            }
        }
        let healthy = journal::EventHealthy::Checked {
            calls: evidence.calls.clone(),
            message_id: message.message_id.clone(),
            cached: false,
            warnings: diagnosis.warnings().cloned().collect(),
            trigger: trigger.clone(),
        };
        self.record_healthy(&trigger, healthy).await?;
        if launched {
            let target = Target {
                cluster: key.cluster,
                nodegroup: key.nodegroup,
                group: None,
            };
            self.schedule_join_check(&trigger, &target).await;
        }
        Ok(Disposition::Delete)
    }
}

/// When EKS reports an instance that did not join as NodeCreationFailure, after its launch.
const EKS_REPORTS_AFTER_SECS: i64 = 900;

/// When the evidence is judged unhealthy, the shared resources its diagnosis rests on: its
/// finding's, and those its launches depend on. Healthy evidence is not kept for reuse.
fn unhealthy_subjects(evidence: &Evidence) -> Option<Vec<String>> {
    let diagnosis = diagnose(evidence);
    if diagnosis.is_healthy() {
        return None;
    }
    let mut subjects = super::incident::related_subjects(evidence);
    if let Some(subject) = diagnosis
        .primary()
        .and_then(|finding| super::incident::storm_subject(&finding.subject))
        && !subjects.contains(&subject)
    {
        subjects.push(subject);
    }
    Some(subjects)
}

fn sorted(ids: &[String]) -> Vec<&String> {
    let mut ids: Vec<&String> = ids.iter().collect();
    ids.sort();
    ids
}

/// The launch of an instance that came up (and may yet fail to join).
fn launched(trigger: &Trigger) -> Option<&LaunchEvent> {
    trigger
        .launch()
        .filter(|launch| launch.outcome == LaunchOutcome::Successful)
}

fn launch_detail_type(outcome: LaunchOutcome) -> &'static str {
    match outcome {
        LaunchOutcome::Successful => crate::intake::LAUNCH_SUCCESSFUL,
        LaunchOutcome::Unsuccessful => crate::intake::LAUNCH_UNSUCCESSFUL,
    }
}
