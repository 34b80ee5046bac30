//! Identity rules: the node role must exist, carry the managed policies nodes need, and be
//! admitted by the cluster.

use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{AccessEntryLookup, Evidence, IdentityFacts, RoleLookup};

/// Managed policies every node role needs; the registry policy may be either one.
pub const REQUIRED_POLICIES: [&[&str]; 3] = [
    &["AmazonEKSWorkerNodePolicy"],
    &["AmazonEKS_CNI_Policy"],
    &[
        "AmazonEC2ContainerRegistryReadOnly",
        "AmazonEC2ContainerRegistryPullOnly",
    ],
];

fn policy_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

pub fn findings(evidence: &Evidence, identity: &IdentityFacts) -> Vec<Finding> {
    let role = &identity.node_role_arn;
    let partition = role.split(':').nth(1).unwrap_or("aws");
    let mut findings = Vec::new();
    match &identity.role {
        RoleLookup::NotFound { name } => findings.push(Finding {
            cause: Cause::NodeRoleNotFound,
            blocking: true,
            summary: format!("node role {name} does not exist"),
            explanation: format!(
                "Nodegroup {} uses node role {role}, which IAM does not find. Instances get no credentials and cannot \
                 register.",
                evidence.nodegroup.name
            ),
            evidence: vec![Fact::new(role, "GetRole: NoSuchEntity")],
            remedy: Some(Cause::NodeRoleNotFound.doc().remedy.into()),
            subject: Subject::Resource { id: role.clone() },
        }),
        RoleLookup::Found {
            name, attached_policy_arns, ..
        } => {
            let attached: Vec<&str> = attached_policy_arns.iter().map(|a| policy_name(a)).collect();
            let missing: Vec<String> = REQUIRED_POLICIES
                .iter()
                .filter(|any_of| !any_of.iter().any(|p| attached.contains(p)))
                .map(|any_of| format!("arn:{partition}:iam::aws:policy/{}", any_of[0]))
                .collect();
            if !missing.is_empty() {
                let names: Vec<&str> = missing.iter().map(|m| policy_name(m)).collect();
                findings.push(Finding {
                    cause: Cause::NodeRoleMissingPolicy,
                    blocking: true,
                    summary: format!("node role {name} lacks {}", names.join(", ")),
                    explanation: format!(
                        "Nodes need AmazonEKSWorkerNodePolicy (describe EC2, register), AmazonEKS_CNI_Policy (unless \
                         the VPC CNI has its own role) and AmazonEC2ContainerRegistryReadOnly or PullOnly (pull system \
                         images). Role {name} has {} but not {}.",
                        if attached.is_empty() { "no managed policies".to_string() } else { attached.join(", ") },
                        names.join(", ")
                    ),
                    evidence: vec![Fact::new(role, format!("attached managed policies: {}", attached.join(", ")))],
                    remedy: Some(
                        missing
                            .iter()
                            .map(|arn| format!("aws iam attach-role-policy --role-name {name} --policy-arn {arn}"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ),
                    subject: Subject::NodeRole {
                        role_name: name.clone(),
                        missing_policy_arns: missing,
                    },
                });
            }
        }
        RoleLookup::Unreadable { .. } => {}
    }
    // With API_AND_CONFIG_MAP the role may be in aws-auth instead: `k8s.aws_auth` judges both.
    if identity.access_entry == AccessEntryLookup::Absent
        && super::kubernetes::authentication_mode(evidence) == "API"
    {
        let cluster = &evidence.nodegroup.cluster;
        findings.push(Finding {
            cause: Cause::NodeRoleMissingAccessEntry,
            blocking: true,
            summary: format!("node role has no access entry in cluster {cluster}, which uses access entries only"),
            explanation: format!(
                "Cluster {cluster} authenticates with access entries only (authenticationMode=API), and there is no \
                 access entry for {role}, so kubelet's credentials are refused (Unauthorized)."
            ),
            evidence: vec![
                Fact::new(format!("cluster {cluster}"), "accessConfig.authenticationMode=API"),
                Fact::new(role, "DescribeAccessEntry: ResourceNotFoundException"),
            ],
            remedy: Some(format!(
                "aws eks create-access-entry --cluster-name {cluster} --principal-arn {role} --type EC2_LINUX"
            )),
            subject: Subject::AccessEntry {
                cluster: cluster.clone(),
                principal_arn: role.clone(),
            },
        });
    }
    findings
}
