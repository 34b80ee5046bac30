//! The cluster and the nodegroup themselves: a control plane that is not ACTIVE takes no nodes,
//! and a nodegroup EKS marks failed with no health issue still needs a name for its trouble.

use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::Evidence;

pub fn findings(evidence: &Evidence) -> Vec<Finding> {
    let Some(cluster) = &evidence.cluster else {
        return Vec::new();
    };
    let subject = Subject::Resource {
        id: cluster.name.clone(),
    };
    let fact = Fact::new(
        format!("cluster {}", cluster.name),
        format!("status {}", cluster.status),
    );
    match cluster.status.as_str() {
        "CREATING" | "DELETING" | "FAILED" => vec![Finding {
            cause: Cause::ClusterNotActive,
            blocking: true,
            summary: format!("cluster {} is {}", cluster.name, cluster.status),
            explanation: format!(
                "Nodes join an ACTIVE control plane. A cluster that is {} has no API server for kubelet to \
                 register with, so no fix to the nodegroup helps until the cluster is ACTIVE.",
                cluster.status
            ),
            evidence: vec![fact],
            remedy: Some(format!(
                "aws eks describe-cluster --name {} --query 'cluster.{{status:status,health:health}}'; wait for \
                 CREATING to finish, or recreate a FAILED cluster",
                cluster.name
            )),
            subject,
        }],
        "UPDATING" => vec![Finding {
            cause: Cause::ClusterUpdating,
            blocking: false,
            summary: format!("cluster {} is being updated", cluster.name),
            explanation: "While the control plane updates, its endpoint may briefly refuse or reset \
                          connections, and nodes that bootstrap then can fail to register. It passes when the \
                          update finishes."
                .into(),
            evidence: vec![fact],
            remedy: Some(format!(
                "aws eks list-updates --name {} (then aws eks describe-update --name {} --update-id <id>)",
                cluster.name, cluster.name
            )),
            subject,
        }],
        _ => Vec::new(),
    }
}

/// A nodegroup EKS reports CREATE_FAILED or DEGRADED without a single health issue, when nothing
/// else was found: the status is the only evidence there is.
pub fn failed_nodegroup(evidence: &Evidence) -> Option<Finding> {
    let nodegroup = &evidence.nodegroup;
    if !matches!(nodegroup.status.as_str(), "CREATE_FAILED" | "DEGRADED")
        || !nodegroup.health_issues.is_empty()
    {
        return None;
    }
    Some(Finding {
        cause: Cause::NodegroupCreateFailed,
        blocking: true,
        summary: format!(
            "nodegroup {} is {} and EKS names no health issue",
            nodegroup.name, nodegroup.status
        ),
        explanation: "EKS marks the nodegroup failed but reports no health issue, and no other check found a cause. \
                      The Auto Scaling group's activities and the nodegroup's own description are where the reason \
                      is left."
            .into(),
        evidence: vec![Fact::new(
            format!("nodegroup {}", nodegroup.name),
            format!("status {}, no health issues", nodegroup.status),
        )],
        remedy: Some(format!(
            "aws eks describe-nodegroup --cluster-name {} --nodegroup-name {}; once the cause is fixed, delete and \
             recreate a CREATE_FAILED nodegroup",
            nodegroup.cluster, nodegroup.name
        )),
        subject: Subject::Resource {
            id: nodegroup.name.clone(),
        },
    })
}
