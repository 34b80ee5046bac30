//! The cluster's IAM role: it must exist, let EKS assume it, and carry AmazonEKSClusterPolicy,
//! or the control plane cannot manage the network interfaces and nodes need it to.

use serde_json::Value;

use super::trust::{EKS, ServiceTrust, service_trust};
use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{Evidence, RoleLookup};

const CLUSTER_POLICY: &str = "AmazonEKSClusterPolicy";

pub fn findings(evidence: &Evidence) -> Vec<Finding> {
    let (Some(lookup), Some(role_arn)) = (
        &evidence.cluster_role,
        evidence.cluster.as_ref().and_then(|c| c.role_arn.as_ref()),
    ) else {
        return Vec::new();
    };
    let mut trust_invalid = false;
    let mut policy_missing = false;
    let problems: Vec<String> = match lookup {
        RoleLookup::Unreadable { .. } => return Vec::new(),
        RoleLookup::NotFound { name } => vec![format!("role {name} does not exist")],
        RoleLookup::Found {
            attached_policy_arns,
            trust_policy,
            ..
        } => {
            let mut problems = Vec::new();
            let trust = trust_policy
                .as_deref()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .map(|document| service_trust(&document, EKS));
            trust_invalid = !matches!(trust, Some(ServiceTrust::Allowed) | None);
            match trust {
                Some(ServiceTrust::Allowed) | None => {}
                Some(ServiceTrust::Denied) => {
                    problems.push("its trust policy denies eks.amazonaws.com".into())
                }
                Some(ServiceTrust::NotNamed) => {
                    problems.push("its trust policy does not let eks.amazonaws.com assume it".into())
                }
                Some(ServiceTrust::OnlyIf(key)) => problems.push(format!(
                    "its trust policy lets eks.amazonaws.com in only under {key}, which never holds for a service"
                )),
            }
            if !attached_policy_arns
                .iter()
                .any(|arn| arn.ends_with(&format!("/{CLUSTER_POLICY}")))
            {
                policy_missing = true;
                problems.push(format!("{CLUSTER_POLICY} is not attached"));
            }
            problems
        }
    };
    if problems.is_empty() {
        return Vec::new();
    }
    let name = role_arn.rsplit('/').next().unwrap_or(role_arn);
    vec![Finding {
        cause: Cause::ClusterRoleInvalid,
        blocking: true,
        summary: format!("cluster role {name}: {}", problems.join("; ")),
        explanation: "EKS assumes the cluster role to manage the control plane's network interfaces in the VPC and \
                      to work with the nodes; without it the API server cannot reach kubelets or admit new nodes."
            .into(),
        evidence: problems
            .iter()
            .map(|problem| Fact::new(role_arn, problem))
            .collect(),
        remedy: Some(remedy(
            name,
            matches!(lookup, RoleLookup::NotFound { .. }),
            trust_invalid,
            policy_missing,
        )),
        // Only a role that exists and trusts EKS gets a planned fix: a trust policy is the
        // owner's to write, and a missing role is not nodemedic's to create.
        subject: if policy_missing && !trust_invalid && matches!(lookup, RoleLookup::Found { .. }) {
            Subject::ClusterRole {
                role_name: name.to_string(),
                missing_policy_arns: vec![format!("arn:aws:iam::aws:policy/{CLUSTER_POLICY}")],
            }
        } else {
            Subject::Resource {
                id: role_arn.clone(),
            }
        },
    }]
}

/// The commands that mend the role: create it, or its trust, its policy, or both.
fn remedy(name: &str, missing: bool, trust: bool, policy: bool) -> String {
    let trust_document = format!(
        "'{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Principal\":{{\"Service\":\"{EKS}\"}},\"Action\":\"sts:AssumeRole\"}}]}}'"
    );
    let mut commands = Vec::new();
    if missing {
        commands.push(format!(
            "aws iam create-role --role-name {name} --assume-role-policy-document {trust_document}"
        ));
    } else if trust {
        commands.push(format!(
            "aws iam update-assume-role-policy --role-name {name} --policy-document {trust_document}"
        ));
    }
    if missing || policy {
        commands.push(format!(
            "aws iam attach-role-policy --role-name {name} --policy-arn arn:aws:iam::aws:policy/{CLUSTER_POLICY}"
        ));
    }
    commands.join("; ")
}
