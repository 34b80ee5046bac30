//! Whole messages through the pipeline below the integration suite: a real pipeline on a
//! temporary SQLite store and the in-memory account of [`super::test_bench`]. No AWS call is
//! made.

use serde_json::json;

use super::test_bench::{Bench, Collected, lab_000_world};
use crate::act::fake::FakeWorld;
use crate::audit::Outcome;
use crate::aws::collect::Scope;
use crate::core::evidence::Evidence;
use crate::core::evidence::fixtures::{
    GROUP, KEY_ARN, KMS_MESSAGE, ROOT_ONLY_POLICY, default_route,
};
use crate::core::guard::{Decision, Mode};
use crate::core::journal::Entry;
use crate::core::plan::FixKind;
use crate::core::step::{FindingKind, PolicyFinding, PolicyReview};
use crate::intake::{Disposition, KeepKind};

/// An EventBridge "EC2 Instance Launch Successful" event, as the queue delivers it.
pub(super) fn launch_event(event_id: &str, group: &str, time: &str) -> String {
    json!({
        "version": "0",
        "id": event_id,
        "detail-type": "EC2 Instance Launch Successful",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": time,
        "region": "us-west-2",
        "resources": [],
        "detail": {
            "StatusCode": "InProgress",
            "AutoScalingGroupName": group,
            "ActivityId": "a1",
            "Details": { "Availability Zone": "us-west-2a", "Subnet ID": "subnet-new" },
            "RequestId": "r1",
            "StatusMessage": "",
            "EC2InstanceId": "i-new",
            "Description": "Launching a new EC2 instance: i-new",
            "Cause": "At 2024-10-04T18:06:36Z an instance was started"
        }
    })
    .to_string()
}

pub(super) const EARLIER: &str = "2024-10-04T18:06:36Z";

fn healthy_lab_000() -> Evidence {
    Evidence::lab_000().network(|n| {
        if let Some(table) = n.route_tables.iter_mut().find(|t| t.id == "rtb-new") {
            table.routes.push(default_route("nat-a", "active"));
        }
    })
}

#[tokio::test]
async fn a_launch_into_a_subnet_without_egress_is_diagnosed_fixed_and_marked() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    let disposition = bench
        .deliver(launch_event("launch-1", GROUP, EARLIER))
        .await;
    assert_eq!(disposition, Disposition::Delete);
    assert_eq!(*bench.accounts.0.scopes.lock().unwrap(), [Scope::NETWORK]);
    assert_eq!(bench.outcomes(), [Outcome::Fixed]);
    let seen = bench
        .store
        .read_blocking(|c| c.event_seen("launch-1"))
        .unwrap()
        .expect("the event is marked handled");
    assert_eq!(seen.disposition, "incident");
    let incident = seen.incident_id.expect("the mark names the incident");
    let kinds: Vec<String> = bench
        .store
        .read_blocking(|c| c.records(&incident))
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    for kind in [
        "evidence",
        "diagnosis",
        "plan",
        "step_intent",
        "verification",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    let routes = bench.world().routes.lock().unwrap();
    assert!(
        routes["rtb-new"]
            .iter()
            .any(|r| r.destination == "0.0.0.0/0")
    );
}

#[tokio::test]
async fn a_second_delivery_is_recorded_and_reads_nothing() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    let body = launch_event("launch-1", GROUP, EARLIER);
    bench.deliver(body.clone()).await;
    assert_eq!(bench.deliver(body).await, Disposition::Delete);
    assert_eq!(bench.accounts.collections(), 1);
    assert_eq!(bench.outcomes(), [Outcome::Fixed]);
    assert!(
        bench
            .kinds_of_event("launch-1")
            .contains(&"event_duplicate".to_string())
    );
}

#[tokio::test]
async fn an_event_older_than_an_applied_fix_changes_nothing() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    bench
        .deliver(launch_event("launch-1", GROUP, EARLIER))
        .await;
    let disposition = bench
        .deliver(launch_event("launch-2", GROUP, EARLIER))
        .await;
    assert_eq!(disposition, Disposition::Delete);
    assert_eq!(bench.accounts.collections(), 1, "nothing is read again");
    assert_eq!(bench.kinds_of_event("launch-2"), ["event_superseded"]);
}

#[tokio::test]
async fn dry_run_plans_and_changes_nothing() {
    let bench = Bench::new(Mode::DryRun, lab_000_world(), Evidence::lab_000());
    let disposition = bench
        .deliver(launch_event("launch-1", GROUP, EARLIER))
        .await;
    assert_eq!(disposition, Disposition::Delete);
    assert_eq!(bench.outcomes(), [Outcome::Planned]);
    assert!(bench.world().routes.lock().unwrap()["rtb-new"].is_empty());
}

#[tokio::test]
async fn an_account_not_served_is_recorded_and_read_nowhere() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    let body = launch_event("launch-1", GROUP, EARLIER).replace("123456789012", "999999999999");
    assert_eq!(bench.deliver(body).await, Disposition::Delete);
    assert_eq!(bench.accounts.collections(), 0);
    assert_eq!(bench.kinds_of_event("launch-1"), ["account_refused"]);
}

#[tokio::test]
async fn a_group_of_no_nodegroup_is_ignored() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    let disposition = bench
        .deliver(launch_event("launch-1", "web-servers", EARLIER))
        .await;
    assert_eq!(disposition, Disposition::Delete);
    assert_eq!(bench.accounts.collections(), 0);
    assert_eq!(bench.kinds_of_event("launch-1"), ["event_ignored"]);
}

#[tokio::test]
async fn a_deleted_nodegroup_is_ignored() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    bench.accounts.collect_next(Collected::Gone);
    let disposition = bench
        .deliver(launch_event("launch-1", GROUP, EARLIER))
        .await;
    assert_eq!(disposition, Disposition::Delete);
    assert_eq!(bench.kinds_of_event("launch-1"), ["event_ignored"]);
    assert!(bench.outcomes().is_empty());
}

#[tokio::test]
async fn an_aws_failure_keeps_the_message_and_the_next_delivery_is_handled() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    bench.accounts.collect_next(Collected::Throttled);
    let body = launch_event("launch-1", GROUP, EARLIER);
    match bench.deliver(body.clone()).await {
        Disposition::Keep { kind, reason } => {
            assert_eq!(kind, KeepKind::AwsUnavailable);
            assert!(reason.contains("Throttling"), "{reason}");
        }
        other => panic!("the message must be kept: {other:?}"),
    }
    assert_eq!(bench.kinds_of_event("launch-1"), ["collection_failed"]);
    bench
        .accounts
        .collect_next(Collected::Evidence(Box::new(Evidence::lab_000())));
    assert_eq!(bench.deliver(body).await, Disposition::Delete);
    assert_eq!(bench.outcomes(), [Outcome::Fixed]);
}

#[tokio::test]
async fn a_healthy_launch_is_remembered_and_the_next_in_its_subnet_reads_nothing() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), healthy_lab_000());
    let first = bench
        .deliver(launch_event("launch-1", GROUP, EARLIER))
        .await;
    let second = bench
        .deliver(launch_event("launch-2", GROUP, EARLIER))
        .await;
    assert_eq!((first, second), (Disposition::Delete, Disposition::Delete));
    assert_eq!(bench.accounts.collections(), 1);
    let healthy: Vec<bool> = bench
        .records()
        .iter()
        .filter_map(|r| match Entry::decode(&r.kind, &r.body) {
            Ok(Entry::EventHealthy(healthy)) => Some(matches!(
                healthy,
                crate::core::journal::EventHealthy::Cached { .. }
            )),
            _ => None,
        })
        .collect();
    assert_eq!(healthy, [false, true], "checked, then from the cache");
    assert!(bench.outcomes().is_empty());
}

#[tokio::test]
async fn an_unreadable_body_is_kept_for_the_dead_letter_queue() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    match bench.deliver("{\"detail-type\": 7".into()).await {
        Disposition::Keep { kind, .. } => assert_eq!(kind, KeepKind::Unreadable),
        other => panic!("the message must be kept: {other:?}"),
    }
    let kinds: Vec<String> = bench.records().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["message_rejected"]);
}

#[tokio::test]
async fn a_missing_cluster_policy_waits_for_approval_even_in_auto_mode_then_is_attached() {
    use crate::audit::control::{self, PlanStatus};
    let evidence = Evidence::healthy().cluster_role("eks.amazonaws.com", &[]);
    let bench = Bench::new(Mode::Auto, lab_000_world(), evidence);
    let disposition = bench
        .deliver(launch_event("launch-1", GROUP, EARLIER))
        .await;
    assert_eq!(disposition, Disposition::Delete);
    let waiting = bench
        .store
        .read_blocking(|c| control::plans(c, Some(PlanStatus::AwaitingApproval)))
        .unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let attached = |world: &crate::act::fake::FakeWorld| {
        world
            .role_policies
            .lock()
            .unwrap()
            .get("eks-cluster")
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        attached(bench.world()).is_empty(),
        "nothing before approval"
    );

    crate::operate::decide_plan(
        &bench.store,
        &waiting[0].plan_id,
        true,
        "alice",
        Some("CHG-7"),
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let pass = bench.pipeline.process_approvals().await.unwrap();
    assert_eq!(pass.applied, 1, "{pass:?}");
    assert_eq!(
        attached(bench.world()),
        ["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"]
    );
}

#[tokio::test]
async fn a_cluster_role_carrying_the_ignore_tag_is_left_alone() {
    use crate::core::evidence::RoleLookup;
    let mut evidence = Evidence::healthy().cluster_role("eks.amazonaws.com", &[]);
    if let Some(RoleLookup::Found { tags, .. }) = evidence.cluster_role.as_mut() {
        tags.insert("nodemedic.io/ignore".into(), "owned by platform".into());
    }
    let bench = Bench::new(Mode::Auto, lab_000_world(), evidence);
    bench
        .deliver(launch_event("launch-1", GROUP, EARLIER))
        .await;
    let refused = bench.records().iter().any(|r| {
        r.kind == "guard_decision"
            && r.body
                .to_string()
                .contains("eks-cluster carries the nodemedic.io/ignore tag")
    });
    assert!(
        refused,
        "the cluster role's own tags were read: {:?}",
        bench.records()
    );
}

#[tokio::test]
async fn a_storm_of_launches_resolves_each_group_once() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), healthy_lab_000());
    for n in 0..5 {
        let launched = launch_event(&format!("launch-{n}"), GROUP, EARLIER);
        assert_eq!(bench.deliver(launched).await, Disposition::Delete);
        let foreign = launch_event(&format!("web-{n}"), "web-servers", EARLIER);
        assert_eq!(bench.deliver(foreign).await, Disposition::Delete);
    }
    assert_eq!(bench.accounts.resolutions(), 2, "one per group");
    assert_eq!(bench.accounts.collections(), 1, "then the subnet's verdict");
}

#[tokio::test]
async fn a_group_whose_nodegroup_is_gone_is_resolved_again() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    bench.accounts.collect_next(Collected::Gone);
    bench
        .deliver(launch_event("launch-1", GROUP, EARLIER))
        .await;
    bench
        .deliver(launch_event("launch-2", GROUP, EARLIER))
        .await;
    assert_eq!(bench.accounts.resolutions(), 2);
}

/// An EventBridge "EC2 Instance Launch Unsuccessful" event of lab 002: the volume key refuses
/// the Auto Scaling role.
pub(super) fn kms_failure_event(event_id: &str) -> String {
    kms_failure_event_at(event_id, EARLIER)
}

/// After any fix a test applies.
pub(super) const LATER: &str = "2030-01-01T00:00:00Z";

pub(super) fn kms_failure_event_at(event_id: &str, time: &str) -> String {
    json!({
        "version": "0",
        "id": event_id,
        "detail-type": "EC2 Instance Launch Unsuccessful",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": time,
        "region": "us-west-2",
        "resources": [],
        "detail": {
            "StatusCode": "Cancelled",
            "AutoScalingGroupName": GROUP,
            "ActivityId": "a2",
            "Details": { "Availability Zone": "us-west-2a", "Subnet ID": "subnet-node" },
            "RequestId": "r2",
            "StatusMessage": KMS_MESSAGE,
            "EC2InstanceId": "",
            "Description": "Launching a new EC2 instance.  Status Reason: ...",
            "Cause": "At 2024-10-04T18:06:36Z an instance was started"
        }
    })
    .to_string()
}

#[tokio::test]
async fn a_key_policy_access_analyzer_calls_invalid_is_not_written() {
    let world = FakeWorld::default()
        .with_nodegroup("DEGRADED", 0, 2, 1)
        .reviewing(PolicyReview::Reviewed {
            findings: vec![PolicyFinding {
                kind: FindingKind::Error,
                issue_code: "INVALID_SERVICE_PRINCIPAL_FORMAT".into(),
                detail: "the principal is not valid".into(),
            }],
        });
    world
        .policies
        .lock()
        .unwrap()
        .insert(KEY_ARN.into(), ROOT_ONLY_POLICY.into());
    let bench = Bench::new(Mode::Auto, world, Evidence::lab_002());
    bench.deliver(kms_failure_event("kms-1")).await;

    let reviewed = bench.world().reviewed.lock().unwrap().clone();
    assert_eq!(reviewed.len(), 1, "the patched policy is reviewed once");
    assert!(
        reviewed[0].contains("AWSServiceRoleForAutoScaling"),
        "what is reviewed is the policy the step would write: {}",
        reviewed[0]
    );
    assert_eq!(
        bench
            .world()
            .policies
            .lock()
            .unwrap()
            .get(KEY_ARN)
            .map(String::as_str),
        Some(ROOT_ONLY_POLICY),
        "the key policy is left as it was"
    );
    let guarded: Vec<_> = bench
        .records()
        .iter()
        .filter_map(|r| match Entry::decode(&r.kind, &r.body) {
            Ok(Entry::GuardDecision(guard)) => Some(guard),
            _ => None,
        })
        .collect();
    let patch = guarded
        .iter()
        .find(|g| g.fix == FixKind::PatchKmsKeyPolicy)
        .expect("the patch was judged");
    assert!(
        matches!(&patch.decision, Decision::Skip { reason } if reason.contains("INVALID_SERVICE_PRINCIPAL_FORMAT")),
        "{:?}",
        patch.decision
    );
    assert!(
        matches!(&patch.policy_review, Some(PolicyReview::Reviewed { findings }) if findings.len() == 1),
        "the review is recorded with the decision: {:?}",
        patch.policy_review
    );
    assert!(
        guarded.iter().all(|g| !g.decision.allows()),
        "nothing after a refused patch is applied: {guarded:?}"
    );
}

/// Holds lab 000's nodegroup lock, as a handler working it would.
async fn hold_lab_000_lock(bench: &Bench) -> super::LeaseGuard {
    let evidence = Evidence::lab_000();
    let key = crate::audit::NodegroupKey {
        account: "123456789012".into(),
        region: "us-west-2".into(),
        cluster: evidence.nodegroup.cluster,
        nodegroup: evidence.nodegroup.name,
    };
    bench
        .pipeline
        .locks
        .lock(&crate::core::ids::LockKey::Nodegroup(&key))
        .await
}

#[tokio::test]
async fn an_event_older_than_a_concluded_fix_is_settled_without_the_nodegroups_lock() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    bench
        .deliver(launch_event("launch-1", GROUP, EARLIER))
        .await;
    let _held = hold_lab_000_lock(&bench).await;
    let settled = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        bench.deliver(launch_event("launch-2", GROUP, EARLIER)),
    )
    .await;
    assert_eq!(settled, Ok(Disposition::Delete), "it did not wait");
    assert_eq!(bench.kinds_of_event("launch-2"), ["event_superseded"]);
}

#[tokio::test]
async fn an_event_older_than_a_fix_waits_for_a_run_not_concluded() {
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    bench
        .deliver(launch_event("launch-1", GROUP, EARLIER))
        .await;
    let incident = bench
        .records()
        .iter()
        .find_map(|r| r.incident_id.clone())
        .expect("an incident");
    // A run of the incident started again (or died) after its outcome: whoever holds the lock
    // finishes it first.
    let intent = Entry::StepIntent(crate::core::journal::StepIntent {
        position: 0,
        fix: FixKind::AddNatRoute,
        rollback: None,
        dry_run: None,
        calls: Vec::new(),
        at: crate::core::time::now(),
    });
    bench
        .store
        .write_blocking(|tx| tx.record(Some(&incident), None, &intent).map(drop))
        .unwrap();
    let _held = hold_lab_000_lock(&bench).await;
    let waited = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        bench.deliver(launch_event("launch-2", GROUP, EARLIER)),
    )
    .await;
    assert!(waited.is_err(), "it queued for the lock");
}
