//! The [`Actuator`] over the AWS SDK.

use std::sync::Arc;

use aws_sdk_accessanalyzer::types::{PolicyType, ValidatePolicyFindingType};
use aws_sdk_ec2::types::AttributeBooleanValue;
use aws_sdk_ec2::types::VpcAttributeName;
use aws_sdk_eks::types::NodegroupScalingConfig;

use super::{Actuator, NodegroupState, Permission, PolicyReview};
use crate::aws::collect::route_table_facts;
use crate::aws::{AwsClients, AwsError, AwsResultExt};
use crate::core::evidence::{RouteFacts, Scaling};
use crate::core::plan::Action;
use crate::core::plan::ScalingUpdate;
use crate::core::step::{FindingKind, PolicyFinding};

/// How many pages of findings a policy review reads before it gives up.
pub(super) const REVIEW_PAGES: usize = 10;

pub struct AwsActuator {
    clients: Arc<AwsClients>,
}

impl AwsActuator {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }
}

impl Actuator for AwsActuator {
    async fn nodegroup_nodes(&self, cluster: &str, nodegroup: &str) -> super::NodesSeen {
        if !self.clients.cluster_api.enabled {
            return super::NodesSeen::NotRead("cluster_api.enabled is off".into());
        }
        let described = match self
            .clients
            .eks
            .describe_cluster()
            .name(cluster)
            .send()
            .await
            .op("eks:DescribeCluster")
        {
            Ok(described) => described,
            Err(error) => return super::NodesSeen::NotRead(error.to_string()),
        };
        let found = described.cluster();
        let credentials = self.clients.credentials.get().await;
        let reference = crate::kubernetes::ClusterRef {
            name: cluster,
            region: &self.clients.region,
            endpoint: found.and_then(|c| c.endpoint()),
            certificate_authority: found
                .and_then(|c| c.certificate_authority())
                .and_then(|ca| ca.data()),
            nodegroup,
        };
        match crate::kubernetes::nodegroup_nodes(&reference, credentials, &self.clients.cluster_api)
            .await
        {
            Ok(nodes) => super::NodesSeen::Read(nodes),
            Err(reason) => super::NodesSeen::NotRead(reason),
        }
    }

    async fn routes(&self, route_table_id: &str) -> Result<Vec<RouteFacts>, AwsError> {
        let output = self
            .clients
            .ec2
            .describe_route_tables()
            .route_table_ids(route_table_id)
            .send()
            .await
            .op("ec2:DescribeRouteTables")?;
        Ok(output
            .route_tables()
            .first()
            .map(|table| route_table_facts(table).routes)
            .unwrap_or_default())
    }

    async fn create_route(
        &self,
        route_table_id: &str,
        destination: &str,
        nat_gateway_id: &str,
    ) -> Result<(), AwsError> {
        self.clients
            .ec2
            .create_route()
            .route_table_id(route_table_id)
            .destination_cidr_block(destination)
            .nat_gateway_id(nat_gateway_id)
            .send()
            .await
            .op("ec2:CreateRoute")?;
        Ok(())
    }

    async fn key_policy(&self, key_id: &str) -> Result<String, AwsError> {
        let output = self
            .clients
            .kms
            .get_key_policy()
            .key_id(key_id)
            .policy_name("default")
            .send()
            .await
            .op("kms:GetKeyPolicy")?;
        Ok(output.policy().unwrap_or_default().to_string())
    }

    async fn put_key_policy(
        &self,
        key_id: &str,
        policy_name: &str,
        policy: &str,
    ) -> Result<(), AwsError> {
        self.clients
            .kms
            .put_key_policy()
            .key_id(key_id)
            .policy_name(policy_name)
            .policy(policy)
            .bypass_policy_lockout_safety_check(false)
            .send()
            .await
            .op("kms:PutKeyPolicy")?;
        Ok(())
    }

    async fn nodegroup(&self, cluster: &str, nodegroup: &str) -> Result<NodegroupState, AwsError> {
        let output = self
            .clients
            .eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(nodegroup)
            .send()
            .await
            .op("eks:DescribeNodegroup")?;
        let described = output.nodegroup();
        let scaling = described.and_then(|n| n.scaling_config());
        Ok(NodegroupState {
            status: described
                .and_then(|n| n.status())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            scaling: Scaling {
                min: scaling.and_then(|s| s.min_size()).unwrap_or(0),
                max: scaling.and_then(|s| s.max_size()).unwrap_or(0),
                desired: scaling.and_then(|s| s.desired_size()).unwrap_or(0),
            },
            issues: described
                .and_then(|n| n.health())
                .map(|h| h.issues())
                .unwrap_or_default()
                .iter()
                .filter_map(|i| i.code().map(|c| c.as_str().to_string()))
                .collect(),
        })
    }

    async fn update_scaling(
        &self,
        cluster: &str,
        nodegroup: &str,
        update: ScalingUpdate,
    ) -> Result<String, AwsError> {
        let scaling = NodegroupScalingConfig::builder()
            .set_min_size(update.min_size)
            .desired_size(update.desired_size)
            .build();
        let output = self
            .clients
            .eks
            .update_nodegroup_config()
            .cluster_name(cluster)
            .nodegroup_name(nodegroup)
            .scaling_config(scaling)
            .send()
            .await
            .op("eks:UpdateNodegroupConfig")?;
        Ok(output
            .update()
            .and_then(|u| u.id())
            .unwrap_or_default()
            .to_string())
    }

    async fn replace_route(
        &self,
        route_table_id: &str,
        destination: &str,
        target: &str,
    ) -> Result<(), AwsError> {
        let request = self
            .clients
            .ec2
            .replace_route()
            .route_table_id(route_table_id)
            .destination_cidr_block(destination);
        let request = if target.starts_with("nat-") {
            request.nat_gateway_id(target)
        } else {
            request.gateway_id(target)
        };
        request.send().await.op("ec2:ReplaceRoute")?;
        Ok(())
    }

    async fn delete_route(&self, route_table_id: &str, destination: &str) -> Result<(), AwsError> {
        self.clients
            .ec2
            .delete_route()
            .route_table_id(route_table_id)
            .destination_cidr_block(destination)
            .send()
            .await
            .op("ec2:DeleteRoute")?;
        Ok(())
    }

    async fn detach_role_policy(&self, role_name: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.clients
            .iam
            .detach_role_policy()
            .role_name(role_name)
            .policy_arn(policy_arn)
            .send()
            .await
            .op("iam:DetachRolePolicy")?;
        Ok(())
    }

    async fn delete_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
    ) -> Result<(), AwsError> {
        self.clients
            .eks
            .delete_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .send()
            .await
            .op("eks:DeleteAccessEntry")?;
        Ok(())
    }

    async fn in_service(&self, group: &str) -> Result<usize, AwsError> {
        let output = self
            .clients
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .op("autoscaling:DescribeAutoScalingGroups")?;
        Ok(output
            .auto_scaling_groups()
            .iter()
            .flat_map(|g| g.instances())
            .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
            .count())
    }

    async fn vpc_attribute(&self, vpc_id: &str, attribute: &str) -> Result<bool, AwsError> {
        let output = self
            .clients
            .ec2
            .describe_vpc_attribute()
            .vpc_id(vpc_id)
            .attribute(VpcAttributeName::from(attribute))
            .send()
            .await
            .op("ec2:DescribeVpcAttribute")?;
        let value = if attribute == "enableDnsSupport" {
            output.enable_dns_support()
        } else {
            output.enable_dns_hostnames()
        };
        Ok(value.and_then(|v| v.value()).unwrap_or(false))
    }

    async fn enable_vpc_attribute(&self, vpc_id: &str, attribute: &str) -> Result<(), AwsError> {
        let on = AttributeBooleanValue::builder().value(true).build();
        let request = self.clients.ec2.modify_vpc_attribute().vpc_id(vpc_id);
        let request = if attribute == "enableDnsSupport" {
            request.enable_dns_support(on)
        } else {
            request.enable_dns_hostnames(on)
        };
        request.send().await.op("ec2:ModifyVpcAttribute")?;
        Ok(())
    }

    async fn subnet_maps_public_ip(&self, subnet_id: &str) -> Result<bool, AwsError> {
        let output = self
            .clients
            .ec2
            .describe_subnets()
            .subnet_ids(subnet_id)
            .send()
            .await
            .op("ec2:DescribeSubnets")?;
        Ok(output
            .subnets()
            .first()
            .and_then(|s| s.map_public_ip_on_launch())
            .unwrap_or(false))
    }

    async fn enable_subnet_public_ip(&self, subnet_id: &str) -> Result<(), AwsError> {
        self.clients
            .ec2
            .modify_subnet_attribute()
            .subnet_id(subnet_id)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .op("ec2:ModifySubnetAttribute")?;
        Ok(())
    }

    async fn instance_profile_roles(&self, profile_name: &str) -> Result<Vec<String>, AwsError> {
        let output = self
            .clients
            .iam
            .get_instance_profile()
            .instance_profile_name(profile_name)
            .send()
            .await
            .op("iam:GetInstanceProfile")?;
        Ok(output
            .instance_profile()
            .map(|p| {
                p.roles()
                    .iter()
                    .map(|r| r.role_name().to_string())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn add_role_to_instance_profile(
        &self,
        profile_name: &str,
        role_name: &str,
    ) -> Result<(), AwsError> {
        self.clients
            .iam
            .add_role_to_instance_profile()
            .instance_profile_name(profile_name)
            .role_name(role_name)
            .send()
            .await
            .op("iam:AddRoleToInstanceProfile")?;
        Ok(())
    }

    async fn remove_role_from_instance_profile(
        &self,
        profile_name: &str,
        role_name: &str,
    ) -> Result<(), AwsError> {
        self.clients
            .iam
            .remove_role_from_instance_profile()
            .instance_profile_name(profile_name)
            .role_name(role_name)
            .send()
            .await
            .op("iam:RemoveRoleFromInstanceProfile")?;
        Ok(())
    }

    async fn endpoint_private_dns(&self, endpoint_id: &str) -> Result<bool, AwsError> {
        let output = self
            .clients
            .ec2
            .describe_vpc_endpoints()
            .vpc_endpoint_ids(endpoint_id)
            .send()
            .await
            .op("ec2:DescribeVpcEndpoints")?;
        Ok(output
            .vpc_endpoints()
            .first()
            .and_then(|e| e.private_dns_enabled())
            .unwrap_or(false))
    }

    async fn enable_endpoint_private_dns(&self, endpoint_id: &str) -> Result<(), AwsError> {
        self.clients
            .ec2
            .modify_vpc_endpoint()
            .vpc_endpoint_id(endpoint_id)
            .private_dns_enabled(true)
            .send()
            .await
            .op("ec2:ModifyVpcEndpoint")?;
        Ok(())
    }

    async fn attached_role_policies(&self, role_name: &str) -> Result<Vec<String>, AwsError> {
        let mut pages = self
            .clients
            .iam
            .list_attached_role_policies()
            .role_name(role_name)
            .into_paginator()
            .send();
        let mut arns = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.op("iam:ListAttachedRolePolicies")?;
            arns.extend(
                page.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn())
                    .map(str::to_string),
            );
        }
        Ok(arns)
    }

    async fn attach_role_policy(&self, role_name: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.clients
            .iam
            .attach_role_policy()
            .role_name(role_name)
            .policy_arn(policy_arn)
            .send()
            .await
            .op("iam:AttachRolePolicy")?;
        Ok(())
    }

    async fn access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
    ) -> Result<Option<String>, AwsError> {
        let described = self
            .clients
            .eks
            .describe_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .send()
            .await
            .op("eks:DescribeAccessEntry");
        match described {
            Ok(output) => Ok(Some(
                output
                    .access_entry()
                    .and_then(|e| e.r#type())
                    .unwrap_or("STANDARD")
                    .to_string(),
            )),
            Err(error) if error.is_code("ResourceNotFoundException") => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn create_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
        entry_type: &str,
    ) -> Result<(), AwsError> {
        self.clients
            .eks
            .create_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .r#type(entry_type)
            .send()
            .await
            .op("eks:CreateAccessEntry")?;
        Ok(())
    }

    async fn dry_run(&self, action: &Action) -> Permission {
        let answer = match action {
            Action::CreateRoute {
                route_table_id,
                destination_cidr_block,
                nat_gateway_id,
            } => self
                .clients
                .ec2
                .create_route()
                .dry_run(true)
                .route_table_id(route_table_id)
                .destination_cidr_block(destination_cidr_block)
                .nat_gateway_id(nat_gateway_id)
                .send()
                .await
                .op("ec2:CreateRoute")
                .map(|_| ()),
            Action::ReplaceRoute {
                route_table_id,
                destination_cidr_block,
                nat_gateway_id,
                ..
            } => self
                .clients
                .ec2
                .replace_route()
                .dry_run(true)
                .route_table_id(route_table_id)
                .destination_cidr_block(destination_cidr_block)
                .nat_gateway_id(nat_gateway_id)
                .send()
                .await
                .op("ec2:ReplaceRoute")
                .map(|_| ()),
            other => {
                let operation = other
                    .api_calls()
                    .first()
                    .map(|c| c.operation.clone())
                    .unwrap_or_default();
                return Permission::Unchecked {
                    reason: format!("{operation} has no dry run"),
                };
            }
        };
        match answer {
            Err(error) if error.is_code("DryRunOperation") => Permission::Allowed,
            Err(error)
                if error.is_code("UnauthorizedOperation") || error.is_code("AccessDenied") =>
            {
                Permission::Denied {
                    reason: error.message,
                }
            }
            Err(error) => Permission::Unchecked {
                reason: format!("{}: {}", error.code, error.message),
            },
            Ok(()) => Permission::Performed,
        }
    }

    async fn review_policy(&self, policy: &str) -> PolicyReview {
        let mut findings = Vec::new();
        let mut next_token: Option<String> = None;
        // A key policy is at most 32 KiB: a few pages at most; the bound keeps a misbehaving
        // endpoint from looping the step.
        for _ in 0..REVIEW_PAGES {
            let page = self
                .clients
                .accessanalyzer
                .validate_policy()
                .policy_document(policy)
                .policy_type(PolicyType::ResourcePolicy)
                .set_next_token(next_token.take())
                .send()
                .await
                .op("access-analyzer:ValidatePolicy");
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    return PolicyReview::Skipped {
                        reason: format!(
                            "IAM Access Analyzer could not be asked ({}: {}); judged on nodemedic's own evaluation",
                            error.code, error.message
                        ),
                    };
                }
            };
            findings.extend(page.findings().iter().map(|finding| PolicyFinding {
                kind: finding_kind(finding.finding_type()),
                issue_code: finding.issue_code().to_string(),
                detail: finding.finding_details().to_string(),
            }));
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => return PolicyReview::Reviewed { findings },
            }
        }
        // An unfinished review still holds what it found: an error already seen refuses the step.
        let blocking = findings
            .iter()
            .any(|f| matches!(f.kind, FindingKind::Error | FindingKind::SecurityWarning));
        if blocking {
            return PolicyReview::Reviewed { findings };
        }
        PolicyReview::Skipped {
            reason: format!(
                "IAM Access Analyzer kept paging past {REVIEW_PAGES} pages; judged on nodemedic's own evaluation"
            ),
        }
    }
}

fn finding_kind(kind: &ValidatePolicyFindingType) -> FindingKind {
    match kind {
        ValidatePolicyFindingType::Error => FindingKind::Error,
        ValidatePolicyFindingType::SecurityWarning => FindingKind::SecurityWarning,
        ValidatePolicyFindingType::Suggestion => FindingKind::Suggestion,
        // A kind this build does not know blocks nothing; its issue code is still recorded.
        _ => FindingKind::Warning,
    }
}
