//! EKS nodegroup health issues and the incidents only the health watcher and join checks see.

use aws_sdk_eks::types::NodegroupIssueCode;

use super::blocking;
use crate::core::checks::*;
use crate::core::evidence::fixtures::*;
use crate::core::evidence::*;
use crate::core::trigger::{HealthEvent, JoinCheck, TriggerKind};

fn watched(evidence: Evidence) -> Evidence {
    let mut evidence = evidence;
    evidence.trigger = trigger(TriggerKind::Health(HealthEvent {
        cluster: "eks-workshop".into(),
        nodegroup: "ng".into(),
        status: "DEGRADED".into(),
        issues: vec![],
    }));
    evidence
}

#[test]
fn every_eks_health_issue_code_maps_to_a_cause() {
    for code in NodegroupIssueCode::values() {
        let message = if *code == "AsgInstanceLaunchFailures" {
            "Could not launch On-Demand Instances. InsufficientInstanceCapacity - no capacity. Launching EC2 instance failed."
        } else {
            ""
        };
        let (cause, _) = health_issue_cause(code, message);
        if *code == "Unknown" {
            assert_eq!(cause, Cause::Unknown);
        } else {
            assert_ne!(cause, Cause::Unknown, "{code} has no cause");
        }
    }
    assert_eq!(health_issue_cause("SomethingNew", "").0, Cause::Unknown);
    assert_eq!(
        health_issue_cause("AsgInstanceLaunchFailures", "brand new text").0,
        Cause::Unknown
    );
}

#[test]
fn a_health_issue_no_rule_explains_becomes_its_own_finding() {
    let evidence = watched(Evidence::healthy().health_issue(
        "ClusterUnreachable",
        "The API server timed out",
        &["ng"],
    ));
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::ClusterUnreachable);
    assert!(finding.explanation.contains("timed out"));
    let refresh =
        watched(Evidence::healthy().health_issue("AutoScalingGroupInstanceRefreshActive", "", &[]));
    let diagnosis = diagnose(&refresh);
    assert!(
        diagnosis.is_healthy(),
        "an instance refresh is a warning, not a join failure"
    );
    assert_eq!(diagnosis.warnings().count(), 1);
}

#[test]
fn a_health_issue_an_evidence_rule_explains_is_reported_once() {
    let evidence = watched(
        Evidence::healthy()
            .health_issue(
                "InsufficientFreeAddresses",
                "subnet-node has no free addresses",
                &["subnet-node"],
            )
            .network(|n| n.subnets.iter_mut().for_each(|s| s.available_ips = 0)),
    );
    assert_eq!(blocking(&evidence), vec![Cause::SubnetOutOfAddresses]);
    let diagnosis = diagnose(&evidence);
    assert!(
        diagnosis.primary().unwrap().evidence[0]
            .observed
            .contains("AvailableIpAddressCount=0")
    );
}

#[test]
fn node_creation_failure_with_a_network_cause_is_that_cause() {
    let evidence = watched(Evidence::lab_000().health_issue(
        "NodeCreationFailure",
        "Instances failed to join the kubernetes cluster",
        &["i-new"],
    ));
    assert_eq!(blocking(&evidence), vec![Cause::SubnetNoEgressRoute]);
}

#[test]
fn node_creation_failure_with_nothing_else_wrong_says_so() {
    let evidence = watched(Evidence::healthy().health_issue(
        "NodeCreationFailure",
        "Instances failed to join the kubernetes cluster",
        &["i-1"],
    ));
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::NodeCreationFailure);
    assert!(finding.remedy.unwrap().contains("aws-auth"));
}

#[test]
fn a_stale_kms_health_issue_after_the_key_was_fixed_is_not_blamed() {
    let granted = crate::core::evidence::fixtures::granted_policy();
    let evidence = watched(Evidence::lab_002().key_policy(&granted));
    assert!(
        diagnose(&evidence).is_healthy(),
        "{:?}",
        diagnose(&evidence).findings
    );
}

fn join_check(evidence: Evidence, instance: &str, state: &str) -> Evidence {
    let mut evidence = evidence;
    evidence.trigger = trigger(TriggerKind::JoinCheck(JoinCheck {
        cluster: "eks-workshop".into(),
        nodegroup: "ng".into(),
        asg_name: GROUP.into(),
        instance_id: instance.into(),
        subnet_id: Some("subnet-node".into()),
        launched_at: time::macros::datetime!(2024-10-04 18:06:36 UTC),
        due_at: time::macros::datetime!(2024-10-04 18:21:36 UTC),
    }));
    evidence.instance = Some(InstanceFacts {
        id: instance.into(),
        state: state.into(),
        subnet_id: Some("subnet-node".into()),
        public_ip: None,
        security_group_ids: vec![CLUSTER_SG.into()],
        launched_at: None,
        availability_zone: None,
        private_dns_name: None,
    });
    evidence
}

#[test]
fn a_join_check_concludes_only_when_eks_says_the_instance_did_not_join() {
    let joined = join_check(Evidence::healthy(), "i-1", "running");
    assert!(diagnose(&joined).is_healthy());
    let failed = join_check(Evidence::healthy(), "i-1", "running").health_issue(
        "NodeCreationFailure",
        "Instances failed to join the kubernetes cluster",
        &["i-1"],
    );
    assert_eq!(blocking(&failed), vec![Cause::NodeCreationFailure]);
    let blocked = join_check(Evidence::lab_000(), "i-new", "running");
    assert_eq!(blocking(&blocked), vec![Cause::SubnetNoEgressRoute]);
}
