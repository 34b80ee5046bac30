//! Failure evidence reuse through whole messages, as [`super::handle_tests`] runs them: what is
//! reused, for which events, and what makes it stale (a fix by this process, by another replica,
//! to a resource another nodegroup shares).

use super::handle_tests::{EARLIER, LATER, kms_failure_event, kms_failure_event_at, launch_event};
use super::test_bench::{Bench, lab_000_world};
use crate::act::fake::FakeWorld;
use crate::core::evidence::fixtures::{GROUP, KEY_ARN, KMS_MESSAGE};
use crate::core::evidence::{Evidence, InstanceFacts};
use crate::core::guard::Mode;
use crate::core::journal::Entry;
use crate::intake::Disposition;

/// The evidence recorded for `event_id`.
fn evidence_of(bench: &Bench, event_id: &str) -> Evidence {
    bench
        .records()
        .iter()
        .filter(|r| r.event_id.as_deref() == Some(event_id))
        .find_map(|r| match Entry::decode(&r.kind, &r.body) {
            Ok(Entry::Evidence(evidence)) => Some(*evidence),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no evidence recorded for {event_id}"))
}

#[tokio::test]
async fn a_storm_of_one_failure_reads_the_nodegroup_once() {
    let bench = Bench::new(Mode::DryRun, FakeWorld::default(), Evidence::lab_002());
    for event in ["kms-1", "kms-2", "kms-3"] {
        assert_eq!(
            bench.deliver(kms_failure_event(event)).await,
            Disposition::Delete
        );
    }
    assert_eq!(bench.accounts.collections(), 1, "read for the first only");
    let first = evidence_of(&bench, "kms-1");
    assert_eq!(first.reused, None);
    let third = evidence_of(&bench, "kms-3");
    let reused = third.reused.as_ref().expect("the third reuses the first's");
    assert_eq!(reused.event_id, "kms-1");
    assert_eq!(third.calls.total(), 0, "no call was made for it");
    assert_eq!(third.trigger.event_id, "kms-3", "it is about its own event");
    let incidents: std::collections::BTreeSet<_> = bench
        .records()
        .iter()
        .filter_map(|r| r.incident_id.clone())
        .collect();
    assert_eq!(incidents.len(), 1, "all three join one incident");
}

#[tokio::test]
async fn a_fix_by_another_replica_makes_a_failures_evidence_stale() {
    let bench = Bench::new(Mode::Approve, FakeWorld::default(), Evidence::lab_002());
    bench.deliver(kms_failure_event("kms-0")).await;
    assert_eq!(bench.accounts.collections(), 1);
    let incident = bench
        .records()
        .iter()
        .find_map(|r| r.incident_id.clone())
        .expect("an incident");
    // Another replica, on the same store, applies the plan's first step.
    bench
        .store
        .write_blocking(|tx| tx.set_step(&incident, 0, "applied", "by another replica"))
        .unwrap();
    bench.deliver(kms_failure_event_at("kms-1", LATER)).await;
    assert_eq!(bench.accounts.collections(), 2, "read again after the fix");
    assert_eq!(evidence_of(&bench, "kms-1").reused, None);
    bench.deliver(kms_failure_event_at("kms-2", LATER)).await;
    assert_eq!(
        bench.accounts.collections(),
        2,
        "the fresh reading is reused"
    );
    assert_eq!(
        evidence_of(&bench, "kms-2")
            .reused
            .map(|r| r.event_id)
            .as_deref(),
        Some("kms-1")
    );
}

#[tokio::test]
async fn a_fix_applied_by_this_process_drops_the_failures_evidence_it_kept() {
    use super::failure_evidence::Situation;
    use crate::audit::control::{self, PlanStatus};
    // A step without a cycle to verify (the cluster role's missing policy, approved), so the
    // pass ends with the step applied.
    let evidence = Evidence::healthy().cluster_role("eks.amazonaws.com", &[]);
    let bench = Bench::new(Mode::Approve, lab_000_world(), evidence.clone());
    bench
        .deliver(launch_event("launch-1", GROUP, EARLIER))
        .await;
    let key = crate::audit::NodegroupKey {
        account: "123456789012".into(),
        region: "us-west-2".into(),
        cluster: evidence.nodegroup.cluster,
        nodegroup: evidence.nodegroup.name,
    };
    let launched = Situation::Landed {
        subnet: "subnet-new".into(),
        instance: "i-next".into(),
    };
    assert!(
        bench
            .pipeline
            .failure_evidence
            .get(&key, &launched)
            .is_some(),
        "kept for the next launch into the subnet"
    );
    let waiting = bench
        .store
        .read_blocking(|c| control::plans(c, Some(PlanStatus::AwaitingApproval)))
        .unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    crate::operate::decide_plan(
        &bench.store,
        &waiting[0].plan_id,
        true,
        "alice",
        Some("CHG-8"),
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let pass = bench.pipeline.process_approvals().await.unwrap();
    assert_eq!(pass.applied, 1, "{pass:?}");
    // The store would also say a fix came after the reading; this is the process's own drop,
    // which holds even before the step's record is written.
    assert!(
        bench
            .pipeline
            .failure_evidence
            .get(&key, &launched)
            .is_none(),
        "the applied step dropped it"
    );
}

#[tokio::test]
async fn a_fix_to_a_key_another_nodegroup_shares_makes_a_failures_evidence_stale() {
    let bench = Bench::new(Mode::DryRun, FakeWorld::default(), Evidence::lab_002());
    bench.deliver(kms_failure_event("kms-0")).await;
    assert_eq!(bench.accounts.collections(), 1);
    // Another replica patched the same key for another nodegroup whose launches use it.
    let other = crate::audit::NodegroupKey {
        account: "123456789012".into(),
        region: "us-west-2".into(),
        cluster: "eks-workshop".into(),
        nodegroup: "other-nodegroup".into(),
    };
    let key_subject = format!("key:{KEY_ARN}");
    bench
        .store
        .write_blocking(|tx| {
            tx.open_incident(
                "other-incident",
                &other,
                "kms_key_policy_blocks_autoscaling",
                Some(&key_subject),
                "auto",
                "the key refuses the Auto Scaling role",
            )?;
            tx.set_plan(
                "other-incident",
                "other-plan",
                &[(
                    "patch_kms_key_policy".into(),
                    "pending".into(),
                    String::new(),
                )],
            )?;
            tx.set_step("other-incident", 0, "applied", "by another replica")
        })
        .unwrap();
    bench.deliver(kms_failure_event_at("kms-1", LATER)).await;
    assert_eq!(
        bench.accounts.collections(),
        2,
        "read again after the shared key was fixed"
    );
    assert_eq!(evidence_of(&bench, "kms-1").reused, None);
}

#[tokio::test]
async fn a_failure_with_another_status_is_read_for_itself() {
    let bench = Bench::new(Mode::DryRun, FakeWorld::default(), Evidence::lab_002());
    bench.deliver(kms_failure_event("kms-1")).await;
    let other = kms_failure_event("capacity-1").replace(
        KMS_MESSAGE,
        "We currently do not have sufficient capacity in the Availability Zone you requested.",
    );
    bench.deliver(other).await;
    assert_eq!(bench.accounts.collections(), 2);
}

/// Lab 000's evidence as collection gives it for instance `i-new` launched into `subnet-new`.
fn lab_000_with_instance() -> Evidence {
    let mut evidence = Evidence::lab_000();
    evidence.instance = Some(InstanceFacts {
        id: "i-new".into(),
        state: "running".into(),
        subnet_id: Some("subnet-new".into()),
        public_ip: None,
        security_group_ids: vec!["sg-node".into(), "sg-cluster".into()],
        launched_at: None,
        availability_zone: Some("us-west-2a".into()),
        private_dns_name: None,
    });
    evidence
}

fn launch_of(event_id: &str, instance: &str) -> String {
    launch_event(event_id, GROUP, EARLIER).replace("i-new", instance)
}

#[tokio::test]
async fn launches_into_a_subnet_without_egress_read_its_network_once() {
    let bench = Bench::new(Mode::DryRun, lab_000_world(), lab_000_with_instance());
    for (event, instance) in [("l-1", "i-1"), ("l-2", "i-2"), ("l-3", "i-3")] {
        assert_eq!(
            bench.deliver(launch_of(event, instance)).await,
            Disposition::Delete
        );
    }
    assert_eq!(bench.accounts.collections(), 1, "the network is read once");
    assert_eq!(
        *bench.accounts.0.instances_read.lock().unwrap(),
        ["i-2", "i-3"],
        "each later instance is read afresh"
    );
    let third = evidence_of(&bench, "l-3");
    assert_eq!(third.reused.map(|r| r.event_id).as_deref(), Some("l-1"));
    assert_eq!(third.instance.map(|i| i.id).as_deref(), Some("i-3"));
    assert_eq!(third.calls.total(), 1, "DescribeInstances only");
}

#[tokio::test]
async fn an_instance_placed_otherwise_is_read_whole() {
    let bench = Bench::new(Mode::DryRun, lab_000_world(), lab_000_with_instance());
    bench.deliver(launch_of("l-1", "i-1")).await;
    bench.accounts.instances_in_groups(&["sg-other"]);
    bench.deliver(launch_of("l-2", "i-2")).await;
    assert_eq!(bench.accounts.collections(), 2);
    assert_eq!(evidence_of(&bench, "l-2").reused, None);
}

#[tokio::test]
async fn in_auto_mode_evidence_that_plans_a_fix_is_read_afresh() {
    let bench = Bench::new(Mode::Auto, FakeWorld::default(), Evidence::lab_002());
    // Nothing is applied (the kill switch holds every step), so no fix drops the evidence:
    // only the rule that what may be changed is decided on a fresh reading.
    bench
        .store
        .write_blocking(|tx| tx.set_kill_switch(true, Some("test"), Some("hold everything")))
        .unwrap();
    bench.deliver(kms_failure_event("kms-1")).await;
    bench.deliver(kms_failure_event("kms-2")).await;
    assert_eq!(bench.accounts.collections(), 2);
    assert_eq!(evidence_of(&bench, "kms-2").reused, None);
}
