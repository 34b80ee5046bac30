//! The IAM roles of the lab worlds, made as a user would: a node role EC2 may assume, a cluster
//! role EKS may assume, each with the AWS managed policies it needs.

use serde_json::json;

use super::{LabClients, LabError};
use crate::aws::AwsResultExt;

/// The AWS managed policies a node role needs.
pub const NODE_POLICIES: [&str; 3] = [
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
];

/// The AWS managed policies a cluster role needs.
pub const CLUSTER_POLICIES: [&str; 1] = ["AmazonEKSClusterPolicy"];

/// An EC2 role with the given AWS managed policies attached; returns its ARN.
pub async fn node_role(c: &LabClients, name: &str, policies: &[&str]) -> Result<String, LabError> {
    role(c, name, "ec2.amazonaws.com", policies).await
}

/// The cluster role EKS assumes, with AmazonEKSClusterPolicy; returns its ARN.
pub async fn cluster_role(c: &LabClients, name: &str) -> Result<String, LabError> {
    role(c, name, "eks.amazonaws.com", &CLUSTER_POLICIES).await
}

/// A role `service` may assume, with the given AWS managed policies attached; returns its ARN.
pub async fn role(
    c: &LabClients,
    name: &str,
    service: &str,
    policies: &[&str],
) -> Result<String, LabError> {
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]
    });
    let created = c
        .iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .op("iam:CreateRole")?;
    for policy in policies {
        c.iam
            .attach_role_policy()
            .role_name(name)
            .policy_arn(format!("arn:aws:iam::aws:policy/{policy}"))
            .send()
            .await
            .op("iam:AttachRolePolicy")?;
    }
    created
        .role()
        .map(|r| r.arn().to_string())
        .ok_or(LabError::Missing("a role ARN"))
}
