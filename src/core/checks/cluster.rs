//! The cluster and the nodegroup themselves: a control plane that is not ACTIVE takes no nodes,
//! and a nodegroup EKS marks failed with no health issue still needs a name for its trouble.

use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{ClusterFacts, Evidence};

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
        "UPDATING" => vec![updating(
            cluster,
            format!("cluster {} is being updated", cluster.name),
            fact,
        )],
        _ => match cluster.updates_in_progress.as_deref() {
            Some([first, ..]) => vec![updating(
                cluster,
                format!(
                    "cluster {} has update {} ({}) in progress",
                    cluster.name, first.id, first.kind
                ),
                fact,
            )],
            _ => Vec::new(),
        },
    }
}

/// The warning for a control plane that is changing: its status says so, or an update that
/// ListUpdates names is still in progress.
fn updating(cluster: &ClusterFacts, summary: String, status: Fact) -> Finding {
    let mut evidence = vec![status];
    evidence.extend(cluster.updates_in_progress.iter().flatten().map(|update| {
        Fact::new(
            format!("update {}", update.id),
            format!(
                "{} InProgress{}",
                update.kind,
                update
                    .created_at
                    .as_deref()
                    .map(|at| format!(" since {at}"))
                    .unwrap_or_default()
            ),
        )
    }));
    Finding {
        cause: Cause::ClusterUpdating,
        blocking: false,
        summary,
        explanation: "While the control plane updates, its endpoint may briefly refuse or reset \
                      connections, and nodes that bootstrap then can fail to register. It passes when the \
                      update finishes."
            .into(),
        evidence,
        remedy: Some(format!(
            "aws eks list-updates --name {} (then aws eks describe-update --name {} --update-id <id>)",
            cluster.name, cluster.name
        )),
        subject: Subject::Resource {
            id: cluster.name.clone(),
        },
    }
}

/// How long an instance may stay `pending` before it is stuck (EC2 normally runs it in a minute).
const PENDING_LIMIT: time::Duration = time::Duration::minutes(5);

/// The instance the trigger names, still `pending` more than five minutes after its launch.
pub fn stuck_instance(evidence: &Evidence) -> Vec<Finding> {
    let Some(instance) = &evidence.instance else {
        return Vec::new();
    };
    let Some(launched_at) = instance.launched_at else {
        return Vec::new();
    };
    let waited = evidence.trigger.time - launched_at;
    if instance.state != "pending" || waited <= PENDING_LIMIT {
        return Vec::new();
    }
    vec![Finding {
        cause: Cause::InstanceStuckPending,
        blocking: true,
        summary: format!(
            "instance {} is still pending {} minutes after its launch",
            instance.id,
            waited.whole_minutes()
        ),
        explanation: "EC2 runs an instance within a minute or two. One that stays pending never boots, so it never \
                      joins; EKS gives up on it after about 20 minutes. Capacity being found late, an EBS volume \
                      that cannot attach or an ENI that cannot be created keep it there."
            .into(),
        evidence: vec![Fact::new(
            &instance.id,
            format!("state pending, launched {launched_at}"),
        )],
        remedy: Some(format!(
            "aws ec2 describe-instances --instance-ids {} --query 'Reservations[].Instances[].StateReason'; \
             terminate it (aws ec2 terminate-instances --instance-ids {}) so the group launches another",
            instance.id, instance.id
        )),
        subject: Subject::Resource {
            id: instance.id.clone(),
        },
    }]
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
