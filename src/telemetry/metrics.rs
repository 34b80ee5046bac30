//! Prometheus metrics. Every label set is bounded: cause codes, fix kinds, statuses, AWS operations
//! nodemedic calls, scope kinds; never an event, instance, resource id or node name.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::core::ids::ScopeKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DispositionLabel {
    pub disposition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FixLabels {
    pub fix: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeKindLabel {
    pub scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    pub service: String,
    pub operation: String,
    pub outcome: String,
}

/// AWS calls by service, operation and outcome, counted where every call's result is turned into
/// nodemedic's error type ([`crate::aws::AwsResultExt::op`]); process-wide, like the calls.
pub fn aws_calls() -> &'static Family<AwsCallLabels, Counter> {
    static CALLS: OnceLock<Family<AwsCallLabels, Counter>> = OnceLock::new();
    CALLS.get_or_init(Family::default)
}

/// Records one AWS call: `operation` is `service:Operation`.
pub fn record_aws_call(operation: &str, outcome: &str) {
    let (service, name) = operation.split_once(':').unwrap_or(("unknown", operation));
    aws_calls()
        .get_or_create(&AwsCallLabels {
            service: service.to_string(),
            operation: name.to_string(),
            outcome: outcome.to_string(),
        })
        .inc();
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 10 ms to about 20 minutes.
    exponential_buckets(0.01, 2.5, 14)
}

pub struct Metrics {
    registry: Registry,
    pub messages_received: Counter,
    pub messages_deleted: Counter,
    /// Left for redelivery, by why.
    pub messages_kept: Family<ReasonLabel, Counter>,
    /// HTTP requests refused before any work: no token, an unknown one, a peer slowed down.
    pub http_refused: Family<ReasonLabel, Counter>,
    /// Incidents whose cluster checks were skipped because the cluster's API was not read, by
    /// why (no_endpoint, unreachable, unauthorized, forbidden, timeout, refused).
    pub cluster_api_skipped: Family<ReasonLabel, Counter>,
    process: super::process::ProcessMetrics,
    /// Kept on their last allowed receive: the queue's redrive policy moves them to the
    /// dead-letter queue.
    pub messages_dead_lettered: Counter,
    pub receive_errors: Counter,
    /// How long messages waited in the queue before nodemedic received them.
    pub message_age_seconds: Histogram,
    /// From receipt to delete or keep.
    pub handling_seconds: Family<DispositionLabel, Histogram>,
    /// Incidents opened, by cause.
    pub incidents: Family<CauseLabel, Counter>,
    /// Plan steps by fix kind and what became of them (applied, failed, rolled_back, skipped,
    /// held).
    pub fix_steps: Family<FixLabels, Counter>,
    pub plans_awaiting_approval: Gauge,
    pub breakers_open: Family<ScopeKindLabel, Gauge>,
    pub kill_switch: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nodemedic");
        let metrics = Metrics {
            messages_received: Counter::default(),
            messages_deleted: Counter::default(),
            messages_kept: Family::default(),
            http_refused: Family::default(),
            cluster_api_skipped: Family::default(),
            process: Default::default(),
            messages_dead_lettered: Counter::default(),
            receive_errors: Counter::default(),
            message_age_seconds: Histogram::new(seconds_buckets()),
            handling_seconds: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            incidents: Family::default(),
            fix_steps: Family::default(),
            plans_awaiting_approval: Gauge::default(),
            breakers_open: Family::default(),
            kill_switch: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "messages_received",
            "Messages received from the event queue",
            metrics.messages_received.clone(),
        );
        registry.register(
            "messages_deleted",
            "Messages deleted after their outcome was recorded",
            metrics.messages_deleted.clone(),
        );
        registry.register(
            "messages_kept",
            "Messages left for redelivery, by reason",
            metrics.messages_kept.clone(),
        );
        registry.register(
            "http_refused",
            "HTTP requests refused before their body was read, by reason",
            metrics.http_refused.clone(),
        );
        registry.register(
            "cluster_api_skipped",
            "Readings of a cluster's own API that did not happen, by reason; its checks were skipped",
            metrics.cluster_api_skipped.clone(),
        );
        registry.register(
            "messages_dead_lettered",
            "Messages left on their last allowed receive, which the redrive policy dead-letters",
            metrics.messages_dead_lettered.clone(),
        );
        registry.register(
            "receive_errors",
            "Failed receives from the event queue",
            metrics.receive_errors.clone(),
        );
        registry.register(
            "message_age_seconds",
            "Time messages waited in the queue before they were received",
            metrics.message_age_seconds.clone(),
        );
        registry.register(
            "message_handling_seconds",
            "Time from receipt to delete or keep, by disposition",
            metrics.handling_seconds.clone(),
        );
        registry.register(
            "incidents",
            "Incidents opened, by cause",
            metrics.incidents.clone(),
        );
        registry.register(
            "fix_steps",
            "Plan steps by fix kind and status (applied, failed, rolled_back, skipped, held)",
            metrics.fix_steps.clone(),
        );
        registry.register(
            "plans_awaiting_approval",
            "Plans waiting for a human",
            metrics.plans_awaiting_approval.clone(),
        );
        registry.register(
            "breakers_open",
            "Open circuit breakers by scope kind; nodemedic only observes in their scopes",
            metrics.breakers_open.clone(),
        );
        registry.register(
            "kill_switch",
            "1 while the kill switch stops every mutation",
            metrics.kill_switch.clone(),
        );
        registry.register(
            "aws_calls",
            "AWS API calls by service, operation and outcome",
            aws_calls().clone(),
        );
        metrics.process.register(&mut registry);
        Metrics {
            registry,
            ..metrics
        }
    }

    /// A cluster's API could not be read for an incident.
    pub fn cluster_api_skipped(&self, reason: &str) {
        self.cluster_api_skipped
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn refused(&self, reason: &str) {
        self.http_refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn kept(&self, reason: &str) {
        self.messages_kept
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn incident_opened(&self, cause: &str) {
        self.incidents
            .get_or_create(&CauseLabel {
                cause: cause.to_string(),
            })
            .inc();
    }

    pub fn fix_step(&self, fix: &str, status: &str) {
        self.fix_steps
            .get_or_create(&FixLabels {
                fix: fix.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    pub fn handled(&self, disposition: &str, seconds: f64) {
        self.handling_seconds
            .get_or_create(&DispositionLabel {
                disposition: disposition.to_string(),
            })
            .observe(seconds);
    }

    /// Sets the gauges that mirror the shared store: plans waiting, open breakers, kill switch.
    pub fn set_controls(&self, awaiting: usize, open_scopes: &[String], kill_switch: bool) {
        self.plans_awaiting_approval.set(awaiting as i64);
        for kind in ScopeKind::ALL {
            let open = open_scopes
                .iter()
                .filter(|scope| ScopeKind::of_stored(scope) == Some(kind))
                .count();
            self.breakers_open
                .get_or_create(&ScopeKindLabel {
                    scope: kind.as_str().to_string(),
                })
                .set(open as i64);
        }
        self.kill_switch.set(i64::from(kill_switch));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        self.process.observe();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family_with_bounded_labels() {
        let metrics = Metrics::new();
        metrics.messages_received.inc();
        metrics.incident_opened("subnet_no_egress_route");
        metrics.fix_step("add_nat_route", "applied");
        metrics.set_controls(2, &["vpc:vpc-1".into(), "vpc:vpc-2".into()], true);
        record_aws_call("ec2:CreateRoute", "ok");
        let text = metrics.encode();
        for line in [
            "nodemedic_messages_received_total 1",
            "nodemedic_incidents_total{cause=\"subnet_no_egress_route\"} 1",
            "nodemedic_fix_steps_total{fix=\"add_nat_route\",status=\"applied\"} 1",
            "nodemedic_plans_awaiting_approval 2",
            "nodemedic_breakers_open{scope=\"vpc\"} 2",
            "nodemedic_breakers_open{scope=\"key\"} 0",
            "nodemedic_kill_switch 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.contains(
            "nodemedic_aws_calls_total{service=\"ec2\",operation=\"CreateRoute\",outcome=\"ok\"}"
        ));
        assert!(!text.contains("vpc-1"), "no resource id as a label");
        assert!(text.ends_with("# EOF\n"));
    }
}
