//! What the checks of the cluster's own view examined when they found nothing, or why they
//! could not look: the API unreachable, refused or too slow is a skip, never a pass.

use super::{CheckId, Skip};
use crate::core::checks::Fact;
use crate::core::checks::kubernetes::{Mapping, authentication_mode, mapping, pathless_role_arn};
use crate::core::evidence::{
    AccessEntryLookup, BootLogLookup, ClusterObjects, ClusterView, Evidence,
};

pub(super) fn examined(check: CheckId, evidence: &Evidence) -> Result<Vec<Fact>, Skip> {
    let objects = match &evidence.kubernetes {
        Some(ClusterView::Seen(objects)) => objects,
        Some(ClusterView::Unreachable { reason, .. }) => {
            return Err(Skip::Unreachable(reason.clone()));
        }
        None => {
            return Err(Skip::NotCollected(
                "the cluster's API is read for health and join checks, preflight and `diagnose`, when \
                 cluster_api.enabled is on"
                    .into(),
            ));
        }
    };
    match check {
        CheckId::AwsAuth => aws_auth(evidence, objects),
        CheckId::AwsNodeTolerations => {
            let aws_node = objects.aws_node.as_ref().ok_or_else(|| {
                Skip::NotApplicable(
                    "no kube-system/aws-node DaemonSet: the cluster runs another CNI".into(),
                )
            })?;
            let taints: Vec<String> = evidence
                .nodegroup
                .taints
                .iter()
                .filter(|t| matches!(t.effect.as_str(), "NO_SCHEDULE" | "NO_EXECUTE"))
                .map(|t| format!("{}:{}", t.key, t.kubernetes_effect()))
                .collect();
            let observed = if taints.is_empty() {
                "the nodegroup has no NoSchedule or NoExecute taint".to_string()
            } else {
                format!("tolerates {}", taints.join(", "))
            };
            Ok(vec![Fact::new(
                format!("daemonset kube-system/{}", aws_node.name),
                observed,
            )])
        }
        CheckId::NodeCsr => Ok(vec![Fact::new(
            format!("nodegroup {}", evidence.nodegroup.name),
            format!(
                "{} kubelet CSR(s) of its nodes, none denied or failed",
                objects.csrs.len()
            ),
        )]),
        CheckId::NodeRegistered => {
            let registered = objects
                .instances
                .iter()
                .filter(|i| {
                    objects
                        .nodes
                        .iter()
                        .any(|n| n.instance_id() == Some(i.id.as_str()))
                })
                .count();
            let waiting = objects.instances.len().saturating_sub(registered);
            Ok(vec![Fact::new(
                format!("nodegroup {}", evidence.nodegroup.name),
                format!(
                    "{} running instance(s), {} with a Node, {waiting} still within the join deadline of {} s",
                    objects.instances.len(),
                    registered,
                    objects.join_deadline_secs
                ),
            )])
        }
        CheckId::NodeReady => {
            if objects.nodes.is_empty() {
                return Err(Skip::NotApplicable(
                    "no Node of the nodegroup has registered".into(),
                ));
            }
            Ok(objects
                .nodes
                .iter()
                .map(|node| {
                    Fact::new(
                        format!("node {}", crate::core::boot_log::quote(&node.name)),
                        "Ready=True",
                    )
                })
                .collect())
        }
        CheckId::BootLog => boot_log(evidence),
        _ => Err(Skip::NotApplicable(
            "not a check of the cluster's view".into(),
        )),
    }
}

fn aws_auth(evidence: &Evidence, objects: &ClusterObjects) -> Result<Vec<Fact>, Skip> {
    let mode = authentication_mode(evidence);
    if mode == "API" {
        return Err(Skip::NotApplicable(
            "authenticationMode API: the cluster ignores aws-auth (see iam.node_access_entry)"
                .into(),
        ));
    }
    let role_arn = evidence
        .nodegroup
        .node_role
        .as_deref()
        .ok_or_else(|| Skip::NotApplicable("the nodegroup names no node role".into()))?;
    let access_entry = evidence.identity.as_ref().map(|i| &i.access_entry);
    let mut facts = Vec::new();
    match access_entry {
        Some(AccessEntryLookup::Present { kind }) => {
            facts.push(Fact::new(role_arn, format!("access entry of type {kind}")));
        }
        Some(AccessEntryLookup::Unreadable { reason }) if mode == "API_AND_CONFIG_MAP" => {
            return Err(Skip::PermissionDenied(format!(
                "eks:DescribeAccessEntry: {reason}"
            )));
        }
        None if mode == "API_AND_CONFIG_MAP" => {
            return Err(Skip::NotCollected(
                "the node role's access entry was not read".into(),
            ));
        }
        _ => {}
    }
    if mapping(evidence, objects, role_arn) == Mapping::Admitted {
        facts.push(Fact::new(
            "configmap kube-system/aws-auth",
            format!(
                "maps {} to system:bootstrappers, system:nodes",
                pathless_role_arn(role_arn)
            ),
        ));
    }
    Ok(facts)
}

fn boot_log(evidence: &Evidence) -> Result<Vec<Fact>, Skip> {
    if evidence.boot_logs.is_empty() {
        return Err(Skip::NotApplicable(
            "no instance ran past the join deadline without a Node".into(),
        ));
    }
    let mut facts = Vec::new();
    for log in &evidence.boot_logs {
        let resource = format!("console of {}", log.instance_id);
        match &log.lookup {
            BootLogLookup::Read(digest) => {
                facts.push(Fact::new(
                    &resource,
                    format!("{} bytes, no line nodemedic recognises", digest.bytes),
                ));
                facts.extend(digest.excerpt.iter().map(|line| Fact::new(&resource, line)));
            }
            BootLogLookup::Unavailable { reason } => {
                if evidence.boot_logs.len() == 1 {
                    return Err(Skip::NotCollected(reason.clone()));
                }
                facts.push(Fact::new(&resource, format!("not read: {reason}")));
            }
        }
    }
    Ok(facts)
}
