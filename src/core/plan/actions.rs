//! Fix kinds and the exact API calls a step makes.

use super::*;

/// Fix kinds: stable names used in audit records, metrics labels and docs/catalog.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixKind {
    AddNatRoute,
    PatchKmsKeyPolicy,
    CycleNodegroup,
    ReplaceDefaultRoute,
    EnableVpcDns,
    EnableSubnetPublicIp,
    AttachNodeRolePolicy,
    CreateAccessEntry,
    AttachClusterRolePolicy,
    EnableEndpointPrivateDns,
    AddRoleToInstanceProfile,
}

impl FixKind {
    pub const ALL: [FixKind; 11] = [
        FixKind::AddNatRoute,
        FixKind::PatchKmsKeyPolicy,
        FixKind::CycleNodegroup,
        FixKind::ReplaceDefaultRoute,
        FixKind::EnableVpcDns,
        FixKind::EnableSubnetPublicIp,
        FixKind::AttachNodeRolePolicy,
        FixKind::CreateAccessEntry,
        FixKind::AttachClusterRolePolicy,
        FixKind::EnableEndpointPrivateDns,
        FixKind::AddRoleToInstanceProfile,
    ];

    pub fn code(self) -> &'static str {
        match self {
            FixKind::AddNatRoute => "add_nat_route",
            FixKind::PatchKmsKeyPolicy => "patch_kms_key_policy",
            FixKind::CycleNodegroup => "cycle_nodegroup",
            FixKind::ReplaceDefaultRoute => "replace_default_route",
            FixKind::EnableVpcDns => "enable_vpc_dns",
            FixKind::EnableSubnetPublicIp => "enable_subnet_public_ip",
            FixKind::AttachNodeRolePolicy => "attach_node_role_policy",
            FixKind::CreateAccessEntry => "create_access_entry",
            FixKind::AttachClusterRolePolicy => "attach_cluster_role_policy",
            FixKind::EnableEndpointPrivateDns => "enable_endpoint_private_dns",
            FixKind::AddRoleToInstanceProfile => "add_role_to_instance_profile",
        }
    }

    pub fn from_code(code: &str) -> Option<FixKind> {
        FixKind::ALL.into_iter().find(|fix| fix.code() == code)
    }

    /// Fixes that change shared infrastructure beyond the broken nodegroup (a route in use, VPC
    /// settings, IAM) wait for a human by default, even in auto mode.
    pub fn needs_approval_by_default(self) -> bool {
        !matches!(
            self,
            FixKind::AddNatRoute | FixKind::PatchKmsKeyPolicy | FixKind::CycleNodegroup
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            FixKind::AddNatRoute => {
                "ec2:CreateRoute 0.0.0.0/0 to an available public NAT gateway of the subnet's VPC, preferring \
                 the subnet's zone and a NAT gateway the cluster's node subnets already use. Never replaces an \
                 existing default route. Rollback: ec2:DeleteRoute."
            }
            FixKind::PatchKmsKeyPolicy => {
                "kms:PutKeyPolicy with the current policy plus the two statements the EC2 Auto Scaling guide \
                 requires for AWSServiceRoleForAutoScaling (CreateGrant only with kms:GrantIsForAWSResource). \
                 The previous policy is recorded for rollback; a policy that changed since diagnosis is not \
                 overwritten."
            }
            FixKind::CycleNodegroup => {
                "eks:UpdateNodegroupConfig to desired 0 (and min 0 when min > 0), wait for ACTIVE, then restore \
                 the original min and desired so that a fresh instance launches with the fix in place. Skipped \
                 when the nodegroup has healthy capacity a cycle would destroy, or when a blocking cause has no \
                 planned fix."
            }
            FixKind::ReplaceDefaultRoute => {
                "ec2:ReplaceRoute 0.0.0.0/0 of the node subnet's route table from a blackholed or unavailable \
                 target to an available public NAT gateway in the subnet's zone. Needs approval by default. \
                 Refused if the route changed since diagnosis. Rollback: ReplaceRoute back."
            }
            FixKind::EnableVpcDns => {
                "ec2:ModifyVpcAttribute enableDnsSupport / enableDnsHostnames = true, one attribute per call. \
                 Needs approval by default. Rollback: set it back to false."
            }
            FixKind::EnableSubnetPublicIp => {
                "ec2:ModifySubnetAttribute MapPublicIpOnLaunch = true on a public node subnet. Needs approval by \
                 default. Rollback: set it back to false."
            }
            FixKind::AttachNodeRolePolicy => {
                "iam:AttachRolePolicy of one missing AWS managed policy (AmazonEKSWorkerNodePolicy, \
                 AmazonEKS_CNI_Policy, AmazonEC2ContainerRegistryReadOnly) to the node role. Needs approval by \
                 default. Rollback: DetachRolePolicy."
            }
            FixKind::CreateAccessEntry => {
                "eks:CreateAccessEntry of type EC2_LINUX for the node role on a cluster that authenticates with \
                 access entries only. Needs approval by default. Rollback: DeleteAccessEntry."
            }
            FixKind::AttachClusterRolePolicy => {
                "iam:AttachRolePolicy of AmazonEKSClusterPolicy to the cluster's role, when the role exists and \
                 trusts EKS and only the policy is missing (a trust policy is never rewritten). Needs approval \
                 by default. Rollback: DetachRolePolicy."
            }
            FixKind::EnableEndpointPrivateDns => {
                "ec2:ModifyVpcEndpoint PrivateDnsEnabled = true on an available interface endpoint of a \
                 service a private join needs (ec2, ecr.api, ecr.dkr, sts) when no endpoint of that service \
                 answers its name. Needs approval by default. Not rolled back: other workloads of the VPC \
                 may resolve through it from the moment it is on."
            }
            FixKind::AddRoleToInstanceProfile => {
                "iam:AddRoleToInstanceProfile of the node role to the instance profile the nodegroup's \
                 instances launch with, when that profile exists and holds no role (a profile holding \
                 another role is left to its owner). Needs approval by default. Rollback: \
                 RemoveRoleFromInstanceProfile."
            }
        }
    }
}

impl std::fmt::Display for FixKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A change of a nodegroup's scaling configuration: the fields an UpdateNodegroupConfig sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingUpdate {
    pub min_size: Option<i32>,
    pub desired_size: i32,
}

/// One AWS mutation, with everything needed to perform, verify and undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Action {
    CreateRoute {
        route_table_id: String,
        destination_cidr_block: String,
        nat_gateway_id: String,
    },
    PutKeyPolicy {
        key_id: String,
        policy_name: String,
        policy: String,
        /// The policy the plan was made against; applying refuses if the key's policy differs.
        previous_policy: String,
    },
    CycleNodegroup {
        cluster: String,
        nodegroup: String,
        original: Scaling,
        scale_down: ScalingUpdate,
        restore: ScalingUpdate,
    },
    ReplaceRoute {
        route_table_id: String,
        destination_cidr_block: String,
        nat_gateway_id: String,
        /// The target the plan saw; applying refuses if the route points elsewhere now.
        previous_target: String,
    },
    ModifyVpcAttribute {
        vpc_id: String,
        /// `enableDnsSupport` or `enableDnsHostnames`.
        attribute: String,
    },
    ModifySubnetAttribute {
        subnet_id: String,
    },
    AddRoleToInstanceProfile {
        profile_name: String,
        role_name: String,
    },
    /// Turns private DNS on for an interface endpoint.
    ModifyVpcEndpointPrivateDns {
        endpoint_id: String,
    },
    AttachRolePolicy {
        role_name: String,
        policy_arn: String,
    },
    CreateAccessEntry {
        cluster: String,
        principal_arn: String,
        entry_type: String,
    },
}

impl Action {
    /// The calls of a cycle resumed at desired 0: the restore alone. Other actions have none.
    pub fn restore_calls(&self) -> Vec<ApiCall> {
        match self {
            Action::CycleNodegroup { .. } => {
                self.api_calls().into_iter().last().into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Whether the action's call takes EC2's `DryRun` flag, so its permission can be checked
    /// without performing it.
    pub fn takes_dry_run(&self) -> bool {
        matches!(
            self,
            Action::CreateRoute { .. } | Action::ReplaceRoute { .. }
        )
    }

    /// The API calls this action makes, as an operator would type them.
    pub fn api_calls(&self) -> Vec<ApiCall> {
        match self {
            Action::CreateRoute {
                route_table_id,
                destination_cidr_block,
                nat_gateway_id,
            } => vec![ApiCall {
                operation: "ec2:CreateRoute".into(),
                parameters: json!({
                    "RouteTableId": route_table_id,
                    "DestinationCidrBlock": destination_cidr_block,
                    "NatGatewayId": nat_gateway_id,
                }),
            }],
            Action::PutKeyPolicy {
                key_id,
                policy_name,
                policy,
                ..
            } => vec![ApiCall {
                operation: "kms:PutKeyPolicy".into(),
                parameters: json!({
                    "KeyId": key_id,
                    "PolicyName": policy_name,
                    "Policy": policy,
                    "BypassPolicyLockoutSafetyCheck": false,
                }),
            }],
            Action::CycleNodegroup {
                cluster,
                nodegroup,
                scale_down,
                restore,
                ..
            } => [scale_down, restore]
                .into_iter()
                .map(|update| ApiCall {
                    operation: "eks:UpdateNodegroupConfig".into(),
                    parameters: json!({
                        "clusterName": cluster,
                        "nodegroupName": nodegroup,
                        "scalingConfig": scaling_json(update),
                    }),
                })
                .collect(),
            Action::ReplaceRoute {
                route_table_id,
                destination_cidr_block,
                nat_gateway_id,
                ..
            } => vec![ApiCall {
                operation: "ec2:ReplaceRoute".into(),
                parameters: json!({
                    "RouteTableId": route_table_id,
                    "DestinationCidrBlock": destination_cidr_block,
                    "NatGatewayId": nat_gateway_id,
                }),
            }],
            Action::ModifyVpcAttribute { vpc_id, attribute } => {
                let key = if attribute == "enableDnsSupport" {
                    "EnableDnsSupport"
                } else {
                    "EnableDnsHostnames"
                };
                vec![ApiCall {
                    operation: "ec2:ModifyVpcAttribute".into(),
                    parameters: json!({ "VpcId": vpc_id, key: { "Value": true } }),
                }]
            }
            Action::AddRoleToInstanceProfile {
                profile_name,
                role_name,
            } => vec![ApiCall {
                operation: "iam:AddRoleToInstanceProfile".into(),
                parameters: json!({ "InstanceProfileName": profile_name, "RoleName": role_name }),
            }],
            Action::ModifyVpcEndpointPrivateDns { endpoint_id } => vec![ApiCall {
                operation: "ec2:ModifyVpcEndpoint".into(),
                parameters: json!({ "VpcEndpointId": endpoint_id, "PrivateDnsEnabled": true }),
            }],
            Action::ModifySubnetAttribute { subnet_id } => vec![ApiCall {
                operation: "ec2:ModifySubnetAttribute".into(),
                parameters: json!({ "SubnetId": subnet_id, "MapPublicIpOnLaunch": { "Value": true } }),
            }],
            Action::AttachRolePolicy {
                role_name,
                policy_arn,
            } => vec![ApiCall {
                operation: "iam:AttachRolePolicy".into(),
                parameters: json!({ "RoleName": role_name, "PolicyArn": policy_arn }),
            }],
            Action::CreateAccessEntry {
                cluster,
                principal_arn,
                entry_type,
            } => vec![ApiCall {
                operation: "eks:CreateAccessEntry".into(),
                parameters: json!({ "clusterName": cluster, "principalArn": principal_arn, "type": entry_type }),
            }],
        }
    }
}

pub(super) fn scaling_json(update: &ScalingUpdate) -> Value {
    match update.min_size {
        Some(min) => json!({"minSize": min, "desiredSize": update.desired_size}),
        None => json!({"desiredSize": update.desired_size}),
    }
}
