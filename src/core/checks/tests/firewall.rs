//! Security groups and network ACLs, evaluated as AWS does.

use super::blocking;
use crate::core::checks::*;
use crate::core::evidence::fixtures::*;
use crate::core::evidence::*;

const NODE_SG: &str = "sg-nodes";

/// Nodes in their own security group (as a launch template would set), with `rules`.
fn custom_node_group(
    ingress: Vec<SecurityGroupRule>,
    egress: Vec<SecurityGroupRule>,
    cluster_ingress: Vec<SecurityGroupRule>,
) -> Evidence {
    Evidence::healthy().network(move |n| {
        n.node_security_group_ids = vec![NODE_SG.into()];
        n.security_groups.push(SecurityGroupFacts {
            id: NODE_SG.into(),
            name: "nodes".into(),
            ingress,
            egress,
        });
        n.security_groups[0].ingress = cluster_ingress;
    })
}

fn allow_all_out() -> Vec<SecurityGroupRule> {
    vec![sg_rule("-1", None, &["0.0.0.0/0"], &[])]
}

#[test]
fn the_eks_cluster_security_group_alone_admits_everything_nodes_need() {
    assert!(diagnose(&Evidence::healthy()).is_healthy());
}

#[test]
fn a_node_group_without_kubelet_ingress_from_the_control_plane_is_found() {
    let evidence = custom_node_group(
        vec![],
        allow_all_out(),
        vec![sg_rule("-1", None, &[], &[CLUSTER_SG])],
    );
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::SecurityGroupBlocksCluster);
    assert!(finding.explanation.contains("10250"));
    assert!(
        finding
            .remedy
            .unwrap()
            .contains("--port 10250 --source-group sg-cluster")
    );
}

#[test]
fn a_node_group_that_may_not_send_https_is_found() {
    let evidence = custom_node_group(
        vec![sg_rule("tcp", Some((10250, 10250)), &[], &[CLUSTER_SG])],
        vec![sg_rule("tcp", Some((80, 80)), &["0.0.0.0/0"], &[])],
        vec![],
    );
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::SecurityGroupBlocksCluster);
    assert!(finding.summary.contains("outbound TCP 443"));
}

#[test]
fn with_a_private_endpoint_the_control_plane_must_accept_https_from_the_nodes() {
    let nodes_ok = |cluster_ingress| {
        custom_node_group(
            vec![sg_rule("tcp", Some((10250, 10250)), &[], &[CLUSTER_SG])],
            allow_all_out(),
            cluster_ingress,
        )
        .cluster(|c| c.endpoint_private_access = true)
    };
    assert_eq!(
        blocking(&nodes_ok(vec![])),
        vec![Cause::SecurityGroupBlocksCluster]
    );
    assert!(
        diagnose(&nodes_ok(vec![sg_rule(
            "tcp",
            Some((443, 443)),
            &[],
            &[NODE_SG]
        )]))
        .is_healthy()
    );
    assert!(
        diagnose(&nodes_ok(vec![sg_rule(
            "tcp",
            Some((443, 443)),
            &["10.42.0.0/16"],
            &[]
        )]))
        .is_healthy()
    );
    // With a public-only endpoint the cluster security group does not see node traffic.
    let public = custom_node_group(
        vec![sg_rule("tcp", Some((10250, 10250)), &[], &[CLUSTER_SG])],
        allow_all_out(),
        vec![],
    );
    assert!(diagnose(&public).is_healthy());
}

#[test]
fn groups_nodemedic_could_not_read_are_not_judged() {
    let evidence =
        Evidence::healthy().network(|n| n.node_security_group_ids = vec!["sg-unreadable".into()]);
    assert!(diagnose(&evidence).is_healthy());
}

fn acl(entries: Vec<AclEntry>) -> Evidence {
    Evidence::healthy().network(move |n| {
        n.network_acls = vec![NetworkAclFacts {
            id: "acl-custom".into(),
            default: false,
            subnet_ids: vec!["subnet-node".into()],
            entries,
        }];
    })
}

fn allow(rule: i32, egress: bool, ports: Option<(i32, i32)>) -> AclEntry {
    acl_entry(rule, egress, "6", "allow", "0.0.0.0/0", ports)
}

#[test]
fn a_network_acl_that_denies_https_out_is_found_with_the_rule() {
    let evidence = acl(vec![
        acl_entry(50, true, "6", "deny", "0.0.0.0/0", Some((443, 443))),
        acl_entry(100, true, "-1", "allow", "0.0.0.0/0", None),
        acl_entry(100, false, "-1", "allow", "0.0.0.0/0", None),
    ]);
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::NetworkAclBlocksTraffic);
    assert!(finding.summary.contains("outbound TCP 443"));
    assert!(finding.evidence[0].observed.contains("rule 50"));
}

#[test]
fn a_network_acl_without_the_return_range_is_found() {
    let evidence = acl(vec![
        acl_entry(100, true, "-1", "allow", "0.0.0.0/0", None),
        allow(100, false, Some((443, 443))),
        allow(110, false, Some((10250, 10250))),
    ]);
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::NetworkAclBlocksTraffic);
    assert!(finding.summary.contains("1025-65535"));
    assert!(finding.evidence[0].observed.contains("implicit deny"));
}

#[test]
fn network_acl_rules_are_evaluated_in_number_order() {
    let allowed_first = acl(vec![
        acl_entry(100, true, "-1", "allow", "0.0.0.0/0", None),
        acl_entry(200, true, "6", "deny", "0.0.0.0/0", Some((443, 443))),
        acl_entry(100, false, "-1", "allow", "0.0.0.0/0", None),
    ]);
    assert!(diagnose(&allowed_first).is_healthy());
    let minimal = acl(vec![
        allow(100, true, Some((443, 443))),
        allow(110, true, Some((1024, 65535))),
        allow(100, false, Some((1024, 65535))),
    ]);
    assert!(
        diagnose(&minimal).is_healthy(),
        "the documented minimum is enough"
    );
}
