//! The cluster's own view: aws-auth, taints, CSRs, registration, readiness and the boot log.

use super::*;
use crate::core::checks::{CheckId, CheckStatus, Skip};
use crate::core::evidence::*;
use crate::core::plan::FixKind;

const READ_AT: time::OffsetDateTime = time::macros::datetime!(2026-11-30 12:00:00 UTC);
const MAPPED: &str = "- rolearn: arn:aws:iam::123456789012:role/eks-node\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n";

/// A healthy nodegroup whose one instance registered a Ready Node, as the cluster shows it.
fn seen() -> Evidence {
    let mut evidence = Evidence::healthy();
    evidence.kubernetes = Some(ClusterView::Seen(ClusterObjects {
        read_at: READ_AT,
        join_deadline_secs: 300,
        instances: vec![instance("i-1", 20)],
        nodes: vec![node(
            "i-1",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        )],
        aws_auth: Some(AwsAuthFacts {
            map_roles: Some(MAPPED.into()),
        }),
        csrs: vec![],
        aws_node: Some(DaemonSetFacts {
            name: "aws-node".into(),
            tolerations: vec![Toleration {
                key: None,
                operator: Some("Exists".into()),
                value: None,
                effect: None,
            }],
        }),
    }));
    evidence
}

fn instance(id: &str, minutes_ago: i64) -> NodeInstance {
    NodeInstance {
        id: id.into(),
        availability_zone: Some("us-west-2a".into()),
        private_dns_name: Some(format!("ip-{id}.us-west-2.compute.internal")),
        launched_at: Some(READ_AT - time::Duration::minutes(minutes_ago)),
    }
}

fn node(instance_id: &str, ready: &str, reason: &str, message: &str) -> NodeFacts {
    NodeFacts {
        name: format!("ip-{instance_id}.us-west-2.compute.internal"),
        provider_id: Some(format!("aws:///us-west-2a/{instance_id}")),
        ready: Some(Condition {
            kind: "Ready".into(),
            status: ready.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
        }),
    }
}

fn objects(evidence: &mut Evidence) -> &mut ClusterObjects {
    match evidence.kubernetes.as_mut() {
        Some(ClusterView::Seen(objects)) => objects,
        _ => panic!("not seen"),
    }
}

fn with(mut evidence: Evidence, change: impl FnOnce(&mut ClusterObjects)) -> Evidence {
    change(objects(&mut evidence));
    evidence
}

fn map_roles(text: &str) -> impl FnOnce(&mut ClusterObjects) {
    let text = text.to_string();
    move |o| {
        o.aws_auth = Some(AwsAuthFacts {
            map_roles: Some(text),
        })
    }
}

fn check(evidence: &Evidence, check: CheckId) -> crate::core::checks::CheckResult {
    diagnose(evidence)
        .checks
        .into_iter()
        .find(|c| c.check == check)
        .unwrap()
}

#[test]
fn a_registered_ready_node_mapped_in_aws_auth_passes_every_cluster_check() {
    let diagnosis = diagnose(&seen());
    assert!(diagnosis.is_healthy(), "{:?}", diagnosis.findings);
    for id in [
        CheckId::AwsAuth,
        CheckId::AwsNodeTolerations,
        CheckId::NodeCsr,
        CheckId::NodeRegistered,
        CheckId::NodeReady,
    ] {
        assert_eq!(check(&seen(), id).result, CheckStatus::Pass, "{id}");
    }
    assert!(matches!(
        check(&seen(), CheckId::BootLog).skipped,
        Some(Skip::NotApplicable(_))
    ));
}

#[test]
fn an_unreachable_api_skips_every_cluster_check_with_its_reason_and_blames_nothing() {
    let mut evidence = Evidence::healthy();
    evidence.kubernetes = Some(ClusterView::Unreachable {
        kind: ApiProblem::Forbidden,
        reason: "https://x answered 403 Forbidden".into(),
    });
    let diagnosis = diagnose(&evidence);
    assert!(diagnosis.is_healthy());
    for id in [
        CheckId::AwsAuth,
        CheckId::NodeRegistered,
        CheckId::NodeReady,
        CheckId::BootLog,
    ] {
        let result = check(&evidence, id);
        assert_eq!(result.result, CheckStatus::Skipped);
        assert!(
            matches!(&result.skipped, Some(Skip::Unreachable(why)) if why.contains("403")),
            "{result:?}"
        );
    }
}

#[test]
fn a_config_map_cluster_without_the_role_in_aws_auth_is_found_and_not_fixed() {
    let evidence = with(
        seen(),
        map_roles("- rolearn: arn:aws:iam::123456789012:role/other\n  groups: [system:masters]\n"),
    )
    .cluster(|c| c.authentication_mode = Some("CONFIG_MAP".into()));
    let diagnosis = diagnose(&evidence);
    let finding = diagnosis.primary().unwrap();
    assert_eq!(finding.cause, Cause::AwsAuthMissingNodeRole);
    assert!(
        finding
            .remedy
            .as_deref()
            .unwrap()
            .contains("eksctl create iamidentitymapping")
    );
    assert!(
        matches!(finding.subject, Subject::Resource { .. }),
        "aws-auth is never written"
    );
    let absent = with(evidence, |o| o.aws_auth = None);
    assert_eq!(
        diagnose(&absent).cause(),
        Some(Cause::AwsAuthMissingNodeRole)
    );
}

#[test]
fn on_api_and_config_map_a_missing_mapping_is_fixed_by_an_access_entry() {
    let evidence =
        with(seen(), map_roles("[]")).identity(|i| i.access_entry = AccessEntryLookup::Absent);
    let diagnosis = diagnose(&evidence);
    let finding = diagnosis.primary().unwrap();
    assert_eq!(finding.cause, Cause::AwsAuthMissingNodeRole);
    assert_eq!(
        finding.subject,
        Subject::AccessEntry {
            cluster: "eks-workshop".into(),
            principal_arn: NODE_ROLE.into()
        }
    );
    let plan = crate::core::plan::plan(&diagnosis, &evidence);
    assert!(
        plan.steps
            .iter()
            .any(|s| s.fix == FixKind::CreateAccessEntry),
        "{plan:?}"
    );
}

#[test]
fn an_ec2_linux_access_entry_admits_the_role_without_aws_auth() {
    let evidence = with(seen(), |o| o.aws_auth = None).identity(|i| {
        i.access_entry = AccessEntryLookup::Present {
            kind: "EC2_LINUX".into(),
        }
    });
    assert!(diagnose(&evidence).is_healthy());
    assert_eq!(check(&evidence, CheckId::AwsAuth).result, CheckStatus::Pass);
}

#[test]
fn a_mapping_without_the_node_groups_does_not_admit_the_role() {
    let evidence = with(
        seen(),
        map_roles("- rolearn: arn:aws:iam::123456789012:role/eks-node\n  groups: [system:nodes]\n"),
    )
    .identity(|i| i.access_entry = AccessEntryLookup::Absent);
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::AwsAuthMissingNodeRole);
    assert!(
        finding
            .evidence
            .iter()
            .any(|f| f.observed.contains("[system:nodes]"))
    );
}

#[test]
fn a_path_or_an_instance_profile_in_the_mapping_never_matches() {
    let with_path = with(
        seen(),
        map_roles(
            "- rolearn: arn:aws:iam::123456789012:role/team/eks-node\n  groups: [system:bootstrappers, system:nodes]\n",
        ),
    );
    assert_eq!(
        diagnose(&with_path).cause(),
        Some(Cause::AwsAuthRoleArnHasPath)
    );
    let profile = with(
        seen(),
        map_roles(
            "- rolearn: arn:aws:iam::123456789012:instance-profile/eks-node\n  groups: [system:bootstrappers, system:nodes]\n",
        ),
    );
    assert_eq!(
        diagnose(&profile).cause(),
        Some(Cause::AwsAuthRoleArnHasPath)
    );
    // A role that has a path is mapped by its pathless ARN: that one matches.
    let mut pathless = seen();
    pathless.nodegroup.node_role = Some("arn:aws:iam::123456789012:role/team/eks-node".into());
    assert!(
        diagnose(&pathless).is_healthy(),
        "{:?}",
        diagnose(&pathless).findings
    );
}

#[test]
fn a_map_roles_that_does_not_parse_is_malformed() {
    for text in [
        "- rolearn: [unclosed",
        "rolearn: arn:aws:iam::1:role/x",
        "- just a string",
    ] {
        let evidence = with(seen(), map_roles(text));
        assert_eq!(
            diagnose(&evidence).cause(),
            Some(Cause::AwsAuthMalformed),
            "{text}"
        );
    }
    let api_only =
        with(seen(), map_roles("- [")).cluster(|c| c.authentication_mode = Some("API".into()));
    assert!(
        diagnose(&api_only).is_healthy(),
        "an API cluster ignores aws-auth"
    );
}

#[test]
fn a_taint_aws_node_does_not_tolerate_is_found_and_one_it_tolerates_is_not() {
    let mut tainted = with(seen(), |o| {
        if let Some(ds) = o.aws_node.as_mut() {
            ds.tolerations = vec![Toleration {
                key: Some("CriticalAddonsOnly".into()),
                operator: Some("Exists".into()),
                value: None,
                effect: None,
            }];
        }
    });
    tainted.nodegroup.taints = vec![NodegroupTaint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: "NO_SCHEDULE".into(),
    }];
    let finding = diagnose(&tainted).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::AwsNodeTaintNotTolerated);
    assert!(finding.summary.contains("dedicated=gpu:NoSchedule"));
    let tolerated = with(tainted.clone(), |o| {
        if let Some(ds) = o.aws_node.as_mut() {
            ds.tolerations.push(Toleration {
                key: Some("dedicated".into()),
                operator: Some("Equal".into()),
                value: Some("gpu".into()),
                effect: Some("NoSchedule".into()),
            });
        }
    });
    assert!(diagnose(&tolerated).is_healthy());
    let mut soft = tainted;
    soft.nodegroup.taints[0].effect = "PREFER_NO_SCHEDULE".into();
    assert!(
        diagnose(&soft).is_healthy(),
        "PreferNoSchedule never keeps aws-node off"
    );
}

#[test]
fn a_denied_csr_of_the_nodegroup_is_found_and_another_nodes_is_not() {
    let csr = |user: &str| CsrFacts {
        name: "csr-abc".into(),
        signer: "kubernetes.io/kubelet-serving".into(),
        username: user.into(),
        conditions: vec![Condition {
            kind: "Denied".into(),
            status: "True".into(),
            reason: Some("KubectlDeny".into()),
            message: Some("denied by policy".into()),
        }],
        issued: false,
    };
    let ours = with(seen(), |o| {
        o.csrs = vec![csr("system:node:ip-i-1.us-west-2.compute.internal")]
    });
    let finding = diagnose(&ours).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::NodeCsrDenied);
    assert!(finding.evidence[0].observed.contains("KubectlDeny"));
    let theirs = with(seen(), |o| {
        o.csrs = vec![csr("system:node:ip-10-0-0-9.ec2.internal")]
    });
    assert!(diagnose(&theirs).is_healthy());
}

#[test]
fn an_instance_past_the_deadline_without_a_node_is_not_registered() {
    let late = with(seen(), |o| {
        o.nodes.clear();
        o.instances = vec![instance("i-1", 10)];
    });
    let finding = diagnose(&late).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::NodeNotRegistered);
    assert!(
        finding.evidence[0]
            .observed
            .contains("aws:///us-west-2a/i-1")
    );
    let early = with(seen(), |o| {
        o.nodes.clear();
        o.instances = vec![instance("i-1", 2)];
    });
    assert!(diagnose(&early).is_healthy(), "still within the deadline");
}

#[test]
fn a_node_that_is_not_ready_quotes_its_condition() {
    let message = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized";
    let evidence = with(seen(), |o| {
        o.nodes = vec![node("i-1", "False", "KubeletNotReady", message)]
    });
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::NodeNotReady);
    assert!(
        finding.evidence[0]
            .observed
            .contains("cni plugin not initialized")
    );
}

fn boot_log(instance: &str, text: &str) -> BootLog {
    BootLog {
        instance_id: instance.into(),
        lookup: BootLogLookup::Read(crate::core::boot_log::digest(text.as_bytes())),
    }
}

#[test]
fn a_boot_log_line_that_confirms_an_aws_side_finding_is_attached_to_it() {
    let mut evidence = Evidence::lab_000();
    evidence.boot_logs = vec![boot_log(
        "i-1",
        "nodeadm[812]: dial tcp 10.42.0.10:443: i/o timeout\n",
    )];
    let diagnosis = diagnose(&evidence);
    let primary = diagnosis.primary().unwrap();
    assert_eq!(primary.cause, Cause::SubnetNoEgressRoute);
    assert!(
        primary
            .evidence
            .iter()
            .any(|f| f.resource == "console of i-1" && f.observed.contains("i/o timeout"))
    );
    let boot = diagnosis
        .findings
        .iter()
        .find(|f| f.cause == Cause::NodeBootError)
        .unwrap();
    assert!(!boot.blocking, "explained by the missing route");
}

#[test]
fn an_unexplained_boot_error_blocks_and_unrecognised_output_is_kept_as_an_excerpt() {
    let mut evidence = with(seen(), |o| {
        o.nodes.clear();
        o.instances = vec![instance("i-1", 10)];
    });
    evidence.boot_logs = vec![boot_log(
        "i-1",
        "x509: certificate signed by unknown authority\n",
    )];
    let diagnosis = diagnose(&evidence);
    assert_eq!(diagnosis.cause(), Some(Cause::NodeBootError));
    evidence.boot_logs = vec![boot_log(
        "i-1",
        "Booting kernel\nReached target Multi-User System\n",
    )];
    let result = check(&evidence, CheckId::BootLog);
    assert_eq!(result.result, CheckStatus::Pass);
    assert!(
        result
            .evidence
            .iter()
            .any(|f| f.observed == "Reached target Multi-User System")
    );
}
