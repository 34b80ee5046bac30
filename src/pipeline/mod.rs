//! The pipeline: one message from its body to a recorded outcome, through resolve, evidence,
//! diagnose, plan, guard and act. Every stage writes to the audit trail; the message may be
//! deleted only once [`Pipeline::handle`] returns [`Disposition::Delete`].

mod approvals;
mod dry_run;
mod event;
mod execute;
mod expiring;
mod failure_evidence;
#[cfg(test)]
mod handle_tests;
mod incident;
mod leases;
mod remediation;
#[cfg(test)]
mod remediation_tests;
mod resolutions;
mod resume;
#[cfg(test)]
mod reuse_tests;
mod sources;
mod state;
#[cfg(test)]
mod test_bench;
mod verification;

use crate::telemetry::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::{Instrument, info, info_span, warn};

use crate::audit::{AuditError, AuditStore, NodegroupKey, Reads};
use crate::aws::AccountRefused;
use crate::core::evidence::Target;
use crate::core::guard::Policy;
use crate::core::journal::{self, Entry};
use crate::core::time::timestamp;
use crate::core::trigger::{JoinCheck, Trigger};
use crate::intake::publish::{Publisher, nodemedic_event};
use crate::intake::signing::EventKey;
use crate::intake::{JOIN_CHECK, Parsed, parse_message};
use crate::notify::Notifier;
use crate::settings::{GuardSettings, RemediationSettings, Settings, VerifySettings};
pub use approvals::ApprovalsPass;
pub use leases::{LeaseGuard, Leases};
pub use sources::{Account, Accounts, AwsAccount, AwsAccounts};
pub use state::{KeyedLocks, RouteVerdicts};

use crate::intake::{Disposition, Inbound, KeepKind, MessageHandler};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("evidence could not be collected: {0}")]
    Collect(String),
    #[error("stopped between steps: the process is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    AccountRefused(#[from] AccountRefused),
}

/// What the pipeline needs from the settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub policy: Policy,
    pub remediation: RemediationSettings,
    pub guard: GuardSettings,
    pub verify: VerifySettings,
    /// How long a replica's hold on a nodegroup outlives its last renewal.
    pub lease_ttl_secs: u64,
}

impl PipelineConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            policy: settings.policy(),
            remediation: settings.remediation.clone(),
            guard: settings.guard.clone(),
            verify: settings.verify.clone(),
            lease_ttl_secs: settings.store.lease_ttl_secs,
        }
    }
}

/// The pipeline over the accounts it serves: their AWS clients in production, an in-memory
/// world in the unit tests.
pub struct Pipeline<W: Accounts = AwsAccounts> {
    config: PipelineConfig,
    store: AuditStore,
    accounts: W,
    locks: Leases,
    routes: RouteVerdicts,
    resolutions: resolutions::Resolutions,
    failure_evidence: failure_evidence::FailureEvidence,
    /// Where nodemedic's own events (join checks) go; `None` disables them.
    publisher: Option<Publisher>,
    join_deadline: Duration,
    /// Verifies nodemedic's own events (health, join checks); a fresh key, unless the daemon
    /// gives the one its replicas share, refuses every such event it did not sign itself.
    event_key: EventKey,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
    /// Cancelled when in-flight work must stop (the shutdown grace period ran out).
    stopping: CancellationToken,
    /// Accounts whose events were refused, so that each is logged at warn once, not per event.
    refused_accounts: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl<W: Accounts> Pipeline<W> {
    pub fn new(config: PipelineConfig, store: AuditStore, accounts: W) -> Self {
        let routes = RouteVerdicts::new(Duration::from_secs(
            config.remediation.route_verdict_ttl_secs,
        ));
        let locks = Leases::new(store.clone(), Duration::from_secs(config.lease_ttl_secs));
        let resolutions = resolutions::Resolutions::new(Duration::from_secs(
            config.remediation.resolution_ttl_secs,
        ));
        let failure_evidence = failure_evidence::FailureEvidence::new(Duration::from_secs(
            config.remediation.failure_evidence_ttl_secs,
        ));
        Self {
            config,
            store,
            accounts,
            locks,
            routes,
            resolutions,
            failure_evidence,
            publisher: None,
            join_deadline: Duration::ZERO,
            event_key: EventKey::generate(),
            notifier: Notifier::disabled(),
            metrics: Arc::new(Metrics::new()),
            stopping: CancellationToken::new(),
            refused_accounts: Default::default(),
        }
    }

    /// Work in flight stops between steps, and leaves long waits, once `stopping` is cancelled.
    pub fn with_stopping(mut self, stopping: CancellationToken) -> Self {
        self.stopping = stopping;
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn with_notifier(mut self, notifier: Arc<Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// The key nodemedic's own events are signed with (the replicas' shared one).
    pub fn with_event_key(mut self, key: EventKey) -> Self {
        self.event_key = key;
        self
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
            Err(PipelineError::ShuttingDown) => {
                info!("stopped for shutdown; the message goes back to the queue");
                Disposition::Keep {
                    reason: PipelineError::ShuttingDown.to_string(),
                    kind: KeepKind::ShuttingDown,
                }
            }
            Err(error) => {
                warn!(%error, "message kept: its outcome could not be recorded");
                Disposition::Keep {
                    reason: error.to_string(),
                    kind: KeepKind::NotRecorded,
                }
            }
        }
    }

    async fn handle_message(&self, message: &Inbound) -> Result<Disposition, PipelineError> {
        match parse_message(&message.body) {
            Err(error) => {
                warn!(receive_count = message.receive_count, %error,
                    "message is not a valid event; leaving it for the dead-letter queue");
                let entry = Entry::MessageRejected(journal::MessageRejected {
                    message_id: message.message_id.clone(),
                    receive_count: message.receive_count,
                    reason: error.to_string(),
                    body_excerpt: excerpt(&message.body, 512),
                });
                self.store.write(|tx| tx.record(None, None, &entry)).await?;
                Ok(Disposition::Keep {
                    reason: error.to_string(),
                    kind: KeepKind::Unreadable,
                })
            }
            Ok(Parsed::Ignored(event)) => {
                self.record_ignored(&event.event_id, message, json!(event), &event.reason)
                    .await?;
                Ok(Disposition::Delete)
            }
            Ok(Parsed::Trigger(trigger)) => {
                if trigger.is_own_event()
                    && let Err(forged) = self.event_key.verify(&message.body)
                {
                    warn!(event_id = %trigger.event_id, %forged, "refusing a nodemedic event it did not sign");
                    let what = json!({"event_id": trigger.event_id, "trigger": trigger.describe()});
                    self.record_ignored(&trigger.event_id, message, what, &forged.to_string())
                        .await?;
                    return Ok(Disposition::Delete);
                }
                let span = info_span!(
                    "event",
                    event_id = %trigger.event_id,
                    trigger = %trigger.describe(),
                    trace_id = tracing::field::Empty,
                    span_id = tracing::field::Empty
                );
                if let Some((trace_id, span_id)) = crate::telemetry::trace_ids(&span) {
                    span.record("trace_id", trace_id);
                    span.record("span_id", span_id);
                }
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
        let entry = Entry::EventIgnored(journal::EventIgnored {
            event: detail,
            reason: reason.to_string(),
            message_id: message.message_id.clone(),
        });
        self.store
            .write(|tx| {
                if tx.connection().event_seen(event_id)?.is_none() {
                    tx.record(None, Some(event_id), &entry)?;
                    tx.mark_event(event_id, message.message_id.as_deref(), "ignored", None)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// An event of an account this daemon does not serve: recorded, and its message deleted
    /// (it will never be served by this daemon, however often it comes back).
    async fn record_refused(
        &self,
        trigger: &Trigger,
        message: &Inbound,
        refused: &AccountRefused,
    ) -> Result<(), PipelineError> {
        let first_time = self
            .refused_accounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(refused.account.clone());
        if first_time {
            warn!(account = %refused.account, reason = %refused.reason,
                "events of this account are refused and recorded (logged once per account)");
        } else {
            info!(account = %refused.account, "event refused: account not served");
        }
        let entry = Entry::AccountRefused(journal::AccountRefused {
            event_id: trigger.event_id.clone(),
            account: refused.account.clone(),
            region: trigger.region.clone(),
            reason: refused.reason.clone(),
            trigger: trigger.clone(),
            message_id: message.message_id.clone(),
        });
        self.store
            .write(|tx| {
                tx.record(None, Some(&trigger.event_id), &entry)?;
                tx.mark_event(
                    &trigger.event_id,
                    message.message_id.as_deref(),
                    "refused",
                    None,
                )
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
        // Most events are new: a read says so without a write transaction. A seen event is
        // checked again inside the transaction that records the second delivery.
        let event_id = trigger.event_id.as_str();
        if self.store.read(|r| r.event_seen(event_id)).await?.is_none() {
            return Ok(false);
        }
        let duplicate = self
            .store
            .write(|tx| {
                let Some(seen) = tx.connection().event_seen(&trigger.event_id)? else {
                    return Ok(false);
                };
                let entry = Entry::EventDuplicate(journal::EventDuplicate {
                    message_id: message.message_id.clone(),
                    first_disposition: seen.disposition.clone(),
                });
                tx.record(seen.incident_id.as_deref(), Some(&trigger.event_id), &entry)?;
                Ok(true)
            })
            .await?;
        if duplicate {
            info!("duplicate delivery; already handled");
        }
        Ok(duplicate)
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
            due_at: OffsetDateTime::now_utc().saturating_add(time::Duration::seconds(
                i64::try_from(self.join_deadline.as_secs()).unwrap_or(i64::MAX),
            )),
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
                kind: KeepKind::AwsUnavailable,
            });
        };
        let (check, hop) = next_hop(
            check,
            remaining,
            self.join_deadline,
            OffsetDateTime::now_utc(),
        );
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
                self.store
                    .write(|tx| tx.mark_event(&trigger.event_id, None, "delayed", None))
                    .await?;
                Ok(Disposition::Delete)
            }
            Err(error) => Ok(Disposition::Keep {
                reason: error.to_string(),
                kind: KeepKind::AwsUnavailable,
            }),
        }
    }

    async fn record_healthy(
        &self,
        trigger: &Trigger,
        healthy: journal::EventHealthy,
    ) -> Result<(), PipelineError> {
        info!("launch checked: nothing wrong");
        let message_id = healthy.message_id().map(str::to_string);
        let entry = Entry::EventHealthy(healthy);
        self.store
            .write(|tx| {
                tx.record(None, Some(&trigger.event_id), &entry)?;
                tx.mark_event(&trigger.event_id, message_id.as_deref(), "healthy", None)
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
        let entry = Entry::CollectionFailed(journal::CollectionFailed {
            error: error.clone(),
            trigger: trigger.clone(),
        });
        self.store
            .write(|tx| tx.record(None, Some(&trigger.event_id), &entry))
            .await?;
        Ok(Disposition::Keep {
            reason: error,
            kind: KeepKind::AwsUnavailable,
        })
    }

    /// An event older than a fix already applied to its nodegroup describes the world before the
    /// fix: it joins that incident and changes nothing.
    async fn superseded_by_fix(
        &self,
        trigger: &Trigger,
        key: &NodegroupKey,
        message: &Inbound,
    ) -> Result<bool, PipelineError> {
        let event_time = timestamp(trigger.time);
        // Most events follow no fix: a read says so without a write transaction.
        let predates_a_fix = self
            .store
            .read(|reads| fix_after_event(reads, key, &event_time))
            .await?
            .is_some();
        if !predates_a_fix {
            return Ok(false);
        }
        self.record_superseded(trigger, key, message).await
    }

    /// Records the event as superseded by the nodegroup's latest fix, checked again in the
    /// writing transaction (or as a duplicate, when another delivery was settled first).
    async fn record_superseded(
        &self,
        trigger: &Trigger,
        key: &NodegroupKey,
        message: &Inbound,
    ) -> Result<bool, PipelineError> {
        let event_time = timestamp(trigger.time);
        let superseded = self
            .store
            .write(|tx| {
                // Another delivery of the event may have been settled meanwhile (this runs
                // outside the nodegroup's lock too): it is then a duplicate, as `admit` says.
                if let Some(seen) = tx.connection().event_seen(&trigger.event_id)? {
                    let entry = Entry::EventDuplicate(journal::EventDuplicate {
                        message_id: message.message_id.clone(),
                        first_disposition: seen.disposition.clone(),
                    });
                    tx.record(seen.incident_id.as_deref(), Some(&trigger.event_id), &entry)?;
                    return Ok(Some(Settled::Duplicate));
                }
                let Some((incident, applied_at)) =
                    fix_after_event(tx.connection(), key, &event_time)?
                else {
                    return Ok(None);
                };
                let entry = Entry::EventSuperseded(journal::EventSuperseded {
                    event_time: event_time.clone(),
                    fix_applied_at: applied_at,
                    message_id: message.message_id.clone(),
                    nodegroup: None,
                    subject: None,
                });
                tx.record(Some(&incident), Some(&trigger.event_id), &entry)?;
                tx.mark_event(
                    &trigger.event_id,
                    message.message_id.as_deref(),
                    "superseded",
                    Some(&incident),
                )?;
                Ok(Some(Settled::Superseded(incident)))
            })
            .await?;
        match &superseded {
            Some(Settled::Superseded(incident)) => {
                info!(incident_id = %incident, "event predates a fix already applied; nothing to do");
            }
            Some(Settled::Duplicate) => info!("duplicate delivery; already handled"),
            None => {}
        }
        Ok(superseded.is_some())
    }
}

/// The nodegroup's latest applied fix (its incident, when it was applied), when an event of
/// `event_time` predates it.
pub(super) fn fix_after_event(
    reads: &dyn Reads,
    key: &NodegroupKey,
    event_time: &str,
) -> Result<Option<(String, String)>, AuditError> {
    Ok(reads
        .last_fix_applied(key)?
        .filter(|(_, applied_at)| event_time < applied_at.as_str()))
}

/// How an event older than a fix was settled.
enum Settled {
    Superseded(String),
    /// Another delivery of it was recorded first.
    Duplicate,
}

/// Seconds from now until `at`, when `at` is in the future.
/// A join check that arrived early, as it is published again, and the delay before it comes
/// back. It is never due further out than one deadline (at least one SQS delay) from now: a due
/// time beyond that, from a deadline shortened since or a bad clock, would hop for ever.
fn next_hop(
    check: &JoinCheck,
    remaining: i64,
    deadline: Duration,
    now: OffsetDateTime,
) -> (JoinCheck, i64) {
    let max_delay = crate::intake::publish::MAX_DELAY_SECS;
    let cap = i64::try_from(deadline.as_secs())
        .unwrap_or(i64::MAX)
        .max(max_delay);
    let remaining = remaining.clamp(0, cap);
    let check = JoinCheck {
        due_at: now.saturating_add(time::Duration::seconds(remaining)),
        ..check.clone()
    };
    (check, remaining.min(max_delay))
}

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

#[async_trait::async_trait]
impl<W: Accounts> MessageHandler for Pipeline<W> {
    async fn handle(&self, message: &Inbound) -> Disposition {
        Pipeline::handle(self, message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_on_character_boundaries() {
        assert_eq!(excerpt("héllo", 2), "hé…");
        assert_eq!(excerpt("short", 10), "short");
    }

    #[test]
    fn a_join_check_is_never_due_further_than_one_deadline_out() {
        let now = time::macros::datetime!(2026-12-01 00:00 UTC);
        let check = JoinCheck {
            cluster: "c".into(),
            nodegroup: "n".into(),
            asg_name: "g".into(),
            instance_id: "i-1".into(),
            subnet_id: None,
            launched_at: now,
            due_at: now + time::Duration::days(365),
        };
        let year = 365 * 86_400;
        // Due in a year with a five-minute deadline: back within one SQS delay, due then.
        let (next, hop) = next_hop(&check, year, Duration::from_secs(300), now);
        assert_eq!(
            (next.due_at, hop),
            (now + time::Duration::seconds(900), 900)
        );
        // A one-hour deadline: due in an hour at most, reached in 15-minute hops.
        let (next, hop) = next_hop(&check, year, Duration::from_secs(3600), now);
        assert_eq!((next.due_at, hop), (now + time::Duration::hours(1), 900));
        // Due soon: as it was.
        let (next, hop) = next_hop(&check, 100, Duration::from_secs(300), now);
        assert_eq!(
            (next.due_at, hop),
            (now + time::Duration::seconds(100), 100)
        );
        let (_, hop) = next_hop(&check, i64::MAX, Duration::MAX, now);
        assert_eq!(hop, 900, "no overflow at the extremes");
    }
}
