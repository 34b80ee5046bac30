//! Planning: pure translation of findings into steps, each naming the exact AWS API call and its
//! parameters, plus notes saying why a fix was not planned. No I/O.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::core::checks::{Diagnosis, Finding, Subject};
use crate::core::evidence::{Evidence, NatGatewayFacts, NetworkFacts, Scaling};
use crate::core::key_policy::{self, KeyPolicyError, KeyPolicyPatch};

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
}

impl FixKind {
    pub const ALL: [FixKind; 8] = [
        FixKind::AddNatRoute,
        FixKind::PatchKmsKeyPolicy,
        FixKind::CycleNodegroup,
        FixKind::ReplaceDefaultRoute,
        FixKind::EnableVpcDns,
        FixKind::EnableSubnetPublicIp,
        FixKind::AttachNodeRolePolicy,
        FixKind::CreateAccessEntry,
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

fn scaling_json(update: &ScalingUpdate) -> Value {
    match update.min_size {
        Some(min) => json!({"minSize": min, "desiredSize": update.desired_size}),
        None => json!({"desiredSize": update.desired_size}),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCall {
    pub operation: String,
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub fix: FixKind,
    pub action: Action,
    /// Why this step, in a sentence.
    pub reason: String,
}

/// Why a fix was not planned (or what a human must do instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub fix: Option<FixKind>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Content address: a hash of the steps (calls and parameters) and the state they rest on.
    /// An approval binds to this id; a changed world gives another id.
    pub id: String,
    pub steps: Vec<Step>,
    pub notes: Vec<Note>,
    /// The observed state each step depends on, by resource.
    pub rests_on: Vec<RestsOn>,
}

/// One piece of observed state a plan depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestsOn {
    pub resource: String,
    pub state: Value,
}

impl Plan {
    /// A plan with nothing to do (observe mode, or nothing fixable).
    pub fn empty() -> Plan {
        Plan {
            id: plan_id("", "", &[], &[]),
            steps: Vec::new(),
            notes: Vec::new(),
            rests_on: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Plans the fixes for a diagnosis: a step for every blocking finding a safe call can fix, a
/// note with the remedy for every other, and a cycle when every blocking cause is covered.
pub fn plan(diagnosis: &Diagnosis, evidence: &Evidence) -> Plan {
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    let mut affected_subnets = BTreeSet::new();
    let mut planned_keys = BTreeSet::new();
    let mut uncovered = Vec::new();

    for finding in diagnosis.blocking() {
        let planned = match &finding.subject {
            Subject::Key { key_arn, .. } if !planned_keys.insert(key_arn.clone()) => Ok(Vec::new()),
            Subject::Key { .. } => plan_key_policy(finding).map(|step| step.into_iter().collect()),
            Subject::Subnet { subnet_id, .. } => {
                affected_subnets.insert(subnet_id.clone());
                plan_nat_route(finding, evidence).map(|step| vec![step])
            }
            Subject::DefaultRoute { subnet_id, .. } => {
                affected_subnets.insert(subnet_id.clone());
                plan_route_replacement(finding, evidence).map(|step| vec![step])
            }
            Subject::Vpc {
                vpc_id,
                dns_support_off,
                dns_hostnames_off,
            } => Ok([
                (*dns_support_off, "enableDnsSupport"),
                (*dns_hostnames_off, "enableDnsHostnames"),
            ]
            .into_iter()
            .filter(|(off, _)| *off)
            .map(|(_, attribute)| Step {
                fix: FixKind::EnableVpcDns,
                action: Action::ModifyVpcAttribute {
                    vpc_id: vpc_id.clone(),
                    attribute: attribute.into(),
                },
                reason: format!(
                    "Turn {attribute} on for {vpc_id}: nodes cannot register without it."
                ),
            })
            .collect()),
            Subject::PublicSubnet { subnet_id } => {
                affected_subnets.insert(subnet_id.clone());
                Ok(vec![Step {
                    fix: FixKind::EnableSubnetPublicIp,
                    action: Action::ModifySubnetAttribute {
                        subnet_id: subnet_id.clone(),
                    },
                    reason: format!(
                        "Assign public IPs in public subnet {subnet_id} so nodes there can reach AWS."
                    ),
                }])
            }
            Subject::NodeRole {
                role_name,
                missing_policy_arns,
            } => Ok(missing_policy_arns
                .iter()
                .map(|arn| Step {
                    fix: FixKind::AttachNodeRolePolicy,
                    action: Action::AttachRolePolicy {
                        role_name: role_name.clone(),
                        policy_arn: arn.clone(),
                    },
                    reason: format!("Attach {arn} to node role {role_name}."),
                })
                .collect()),
            Subject::AccessEntry {
                cluster,
                principal_arn,
            } => Ok(vec![Step {
                fix: FixKind::CreateAccessEntry,
                action: Action::CreateAccessEntry {
                    cluster: cluster.clone(),
                    principal_arn: principal_arn.clone(),
                    entry_type: "EC2_LINUX".into(),
                },
                reason: format!(
                    "Admit node role {principal_arn} to cluster {cluster} with an EC2_LINUX access entry."
                ),
            }]),
            Subject::UnusableKey { .. } | Subject::Resource { .. } | Subject::None => {
                Err(remedy_note(finding))
            }
        };
        match planned {
            Ok(new_steps) => steps.extend(new_steps),
            Err(text) => {
                uncovered.push(finding.cause);
                notes.push(Note {
                    fix: fix_of(&finding.subject),
                    text,
                });
            }
        }
    }

    if !steps.is_empty() {
        if let Some(cause) = uncovered.first() {
            notes.push(Note {
                fix: Some(FixKind::CycleNodegroup),
                text: format!(
                    "Cycle skipped: {cause} has no automatic fix, so new instances would fail too; fix it first."
                ),
            });
        } else {
            match plan_cycle(evidence, &affected_subnets) {
                Ok(step) => steps.push(step),
                Err(text) => notes.push(Note {
                    fix: Some(FixKind::CycleNodegroup),
                    text,
                }),
            }
        }
    }

    let rests_on = rests_on(&steps, evidence);
    Plan {
        id: plan_id(
            &evidence.trigger.account,
            &evidence.trigger.region,
            &steps,
            &rests_on,
        ),
        steps,
        notes,
        rests_on,
    }
}

/// The state each step was planned against, so that a plan made against a world that has since
/// changed gets another id.
fn rests_on(steps: &[Step], evidence: &Evidence) -> Vec<RestsOn> {
    let mut facts: Vec<RestsOn> = Vec::new();
    let mut add = |resource: String, state: Value| {
        if !facts.iter().any(|f| f.resource == resource) {
            facts.push(RestsOn { resource, state });
        }
    };
    let network = evidence.network.as_ref();
    for step in steps {
        match &step.action {
            Action::CreateRoute { route_table_id, .. } | Action::ReplaceRoute { route_table_id, .. } => {
                let routes = network
                    .and_then(|n| n.route_tables.iter().find(|t| &t.id == route_table_id))
                    .map(|t| json!(t.routes))
                    .unwrap_or(Value::Null);
                add(route_table_id.clone(), routes);
                if let Action::CreateRoute { nat_gateway_id, .. } | Action::ReplaceRoute { nat_gateway_id, .. } = &step.action {
                    let nat = network
                        .and_then(|n| n.nat_gateway(nat_gateway_id))
                        .map(|n| json!({"state": n.state, "subnet": n.subnet_id}))
                        .unwrap_or(Value::Null);
                    add(nat_gateway_id.clone(), nat);
                }
            }
            Action::PutKeyPolicy { key_id, previous_policy, .. } => add(key_id.clone(), json!({ "policy": previous_policy })),
            Action::CycleNodegroup { cluster, nodegroup, original, .. } => add(
                format!("{cluster}/{nodegroup}"),
                json!({ "scaling": original }),
            ),
            Action::ModifyVpcAttribute { vpc_id, .. } => add(
                vpc_id.clone(),
                network
                    .map(|n| json!({"dns_support": n.vpc.dns_support, "dns_hostnames": n.vpc.dns_hostnames}))
                    .unwrap_or(Value::Null),
            ),
            Action::ModifySubnetAttribute { subnet_id } => add(
                subnet_id.clone(),
                network
                    .and_then(|n| n.subnet(subnet_id))
                    .map(|s| json!({"map_public_ip_on_launch": s.map_public_ip_on_launch}))
                    .unwrap_or(Value::Null),
            ),
            Action::AttachRolePolicy { role_name, .. } => add(
                role_name.clone(),
                evidence.identity.as_ref().map(|i| json!(i.role)).unwrap_or(Value::Null),
            ),
            Action::CreateAccessEntry { principal_arn, .. } => add(
                principal_arn.clone(),
                evidence.identity.as_ref().map(|i| json!(i.access_entry)).unwrap_or(Value::Null),
            ),
        }
    }
    facts
}

fn fix_of(subject: &Subject) -> Option<FixKind> {
    match subject {
        Subject::Key { .. } => Some(FixKind::PatchKmsKeyPolicy),
        Subject::Subnet { .. } => Some(FixKind::AddNatRoute),
        Subject::DefaultRoute { .. } => Some(FixKind::ReplaceDefaultRoute),
        _ => None,
    }
}

/// What a human should do about a finding no step fixes.
fn remedy_note(finding: &Finding) -> String {
    let remedy = finding
        .remedy
        .clone()
        .unwrap_or_else(|| finding.cause.doc().remedy.to_string());
    format!("{}: no automatic fix. {remedy}", finding.cause)
}

/// The plan's identity: where it applies, the exact calls, and the state they rest on. The
/// steps' prose and the nodegroup's passing status are left out, so that an approval does not go
/// stale for a reworded reason or a DEGRADED/ACTIVE flap.
fn plan_id(account: &str, region: &str, steps: &[Step], rests_on: &[RestsOn]) -> String {
    let calls: Vec<(&FixKind, &Action)> = steps.iter().map(|s| (&s.fix, &s.action)).collect();
    let canonical = serde_json::to_vec(&(account, region, calls, rests_on)).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    format!("plan-{}", &hex::encode(digest)[..16])
}

fn plan_key_policy(finding: &Finding) -> Result<Option<Step>, String> {
    let Subject::Key {
        key_arn,
        policy,
        service_linked_role,
        cross_account,
        explicit_deny,
    } = &finding.subject
    else {
        return Ok(None);
    };
    if *cross_account {
        let owner = key_arn.split(':').nth(4).unwrap_or("another account");
        return Err(format!(
            "Key {key_arn} belongs to account {owner}: nodemedic does not change another account's key policy. Its \
             owner must allow this account in the key policy, then create a grant for the service-linked role: \
             aws kms create-grant --key-id {key_arn} --grantee-principal {service_linked_role} --operations Encrypt \
             Decrypt ReEncryptFrom ReEncryptTo GenerateDataKey GenerateDataKeyWithoutPlaintext DescribeKey CreateGrant"
        ));
    }
    if let Some(deny) = explicit_deny {
        return Err(format!(
            "Key {key_arn}: {deny}. Adding allow statements cannot override an explicit deny; a human must decide \
             whether that statement should change."
        ));
    }
    let Some(previous) = policy else {
        return Err(format!(
            "The policy of key {key_arn} could not be read, so it cannot be patched safely."
        ));
    };
    match key_policy::patch(previous, service_linked_role) {
        Ok(KeyPolicyPatch::AlreadyGranted) => Ok(None),
        Ok(KeyPolicyPatch::Patched { policy, added_sids }) => Ok(Some(Step {
            fix: FixKind::PatchKmsKeyPolicy,
            action: Action::PutKeyPolicy {
                key_id: key_arn.clone(),
                policy_name: "default".into(),
                policy,
                previous_policy: previous.clone(),
            },
            reason: format!(
                "Add statements {} so that {service_linked_role} can use key {key_arn} for encrypted volumes.",
                added_sids.join(" and ")
            ),
        })),
        Err(error @ KeyPolicyError::ExplicitDeny { .. }) => Err(format!("Key {key_arn}: {error}.")),
        Err(error) => Err(format!(
            "Key {key_arn}: {error}; the policy is left unchanged."
        )),
    }
}

fn plan_nat_route(finding: &Finding, evidence: &Evidence) -> Result<Step, String> {
    let Subject::Subnet {
        subnet_id,
        route_table_id,
        availability_zone,
        vpc_id,
    } = &finding.subject
    else {
        return Err("internal: a route fix needs a subnet finding".into());
    };
    let network = evidence
        .network
        .as_ref()
        .ok_or_else(|| "No network evidence was collected; no route can be planned.".to_string())?;
    let route_table_id = route_table_id.clone().ok_or_else(|| {
        format!("Subnet {subnet_id} has no route table; no route can be planned.")
    })?;
    let table = network.route_tables.iter().find(|t| t.id == route_table_id);
    if table.is_some_and(|t| t.routes.iter().any(|r| r.is_default_ipv4())) {
        return Err(format!(
            "Route table {route_table_id} already has a 0.0.0.0/0 route; nodemedic never replaces an existing default route."
        ));
    }
    if table.is_some_and(|t| t.main) {
        return Err(format!(
            "Subnet {subnet_id} uses the VPC's main route table {route_table_id}; adding a default route there would \
             change every subnet without its own table. Associate {subnet_id} with its own route table first."
        ));
    }
    let (nat, why) = choose_nat_gateway(network, availability_zone.as_deref()).ok_or_else(|| {
        format!(
            "No available public NAT gateway in {vpc_id}: no route can be added. Create a NAT gateway in a public \
             subnet (aws ec2 create-nat-gateway --subnet-id <public-subnet> --allocation-id <eip>), or the VPC \
             endpoints ec2, ecr.api, ecr.dkr, s3 and sts."
        )
    })?;
    Ok(Step {
        fix: FixKind::AddNatRoute,
        action: Action::CreateRoute {
            route_table_id: route_table_id.clone(),
            destination_cidr_block: "0.0.0.0/0".into(),
            nat_gateway_id: nat.id.clone(),
        },
        reason: format!(
            "Route 0.0.0.0/0 from {route_table_id} (subnet {subnet_id}) to {}: {why}.",
            nat.id
        ),
    })
}

fn plan_route_replacement(finding: &Finding, evidence: &Evidence) -> Result<Step, String> {
    let Subject::DefaultRoute {
        subnet_id,
        route_table_id,
        current_target,
        availability_zone,
    } = &finding.subject
    else {
        return Err("internal: a route replacement needs a default-route finding".into());
    };
    let network = evidence
        .network
        .as_ref()
        .ok_or_else(|| "No network evidence was collected; no route can be planned.".to_string())?;
    if network
        .route_tables
        .iter()
        .any(|t| t.id == *route_table_id && t.main)
    {
        return Err(format!(
            "{}: route table {route_table_id} is the VPC's main table; replacing its default route would change every \
             subnet without its own table. {}",
            finding.cause,
            finding.remedy.clone().unwrap_or_default()
        ));
    }
    let same_zone = choose_nat_gateway(network, availability_zone.as_deref())
        .filter(|(nat, _)| nat.id != *current_target)
        .filter(|(nat, _)| {
            availability_zone.is_some()
                && network
                    .subnet(&nat.subnet_id)
                    .map(|s| Some(&s.availability_zone))
                    == Some(availability_zone.as_ref())
        });
    let (nat, why) = same_zone.ok_or_else(|| {
        format!(
            "{}: no available public NAT gateway in {} to replace {current_target} with; create one in a public subnet \
             of that zone, then: aws ec2 replace-route --route-table-id {route_table_id} --destination-cidr-block \
             0.0.0.0/0 --nat-gateway-id <nat>",
            finding.cause,
            availability_zone.as_deref().unwrap_or("the subnet's zone")
        )
    })?;
    Ok(Step {
        fix: FixKind::ReplaceDefaultRoute,
        action: Action::ReplaceRoute {
            route_table_id: route_table_id.clone(),
            destination_cidr_block: "0.0.0.0/0".into(),
            nat_gateway_id: nat.id.clone(),
            previous_target: current_target.clone(),
        },
        reason: format!(
            "Point 0.0.0.0/0 of {route_table_id} (subnet {subnet_id}) at {} instead of {current_target}: {why}.",
            nat.id
        ),
    })
}

/// Picks the NAT gateway for a default route: available and public, then same zone, then one
/// the cluster's other node subnets already use, then by id for a stable answer.
pub fn choose_nat_gateway<'a>(
    network: &'a NetworkFacts,
    availability_zone: Option<&str>,
) -> Option<(&'a NatGatewayFacts, String)> {
    let used = network.nat_gateways_used_by_cluster();
    let zone_of = |nat: &NatGatewayFacts| {
        network
            .subnet(&nat.subnet_id)
            .map(|s| s.availability_zone.clone())
    };
    network
        .nat_gateways
        .iter()
        .filter(|nat| nat.state == "available" && nat.connectivity != "private")
        .map(|nat| {
            let same_zone =
                availability_zone.is_some() && zone_of(nat).as_deref() == availability_zone;
            let used_by_cluster = used.contains(nat.id.as_str());
            (nat, same_zone, used_by_cluster)
        })
        .min_by_key(|(nat, same_zone, used_by_cluster)| {
            (!same_zone, !used_by_cluster, nat.id.clone())
        })
        .map(|(nat, same_zone, used_by_cluster)| {
            let mut reasons = vec!["available, public".to_string()];
            match (same_zone, zone_of(nat)) {
                (true, Some(zone)) => reasons.push(format!("in the subnet's zone {zone}")),
                (false, Some(zone)) => reasons.push(format!(
                    "in zone {zone} (none available in the subnet's zone)"
                )),
                _ => {}
            }
            if used_by_cluster {
                reasons.push("already used by the cluster's node subnets".into());
            }
            (nat, reasons.join(", "))
        })
}

fn plan_cycle(evidence: &Evidence, affected_subnets: &BTreeSet<String>) -> Result<Step, String> {
    let nodegroup = &evidence.nodegroup;
    let original = nodegroup.scaling;
    if original.desired == 0 {
        return Err(format!(
            "Cycle skipped: nodegroup {} has desired size 0; new instances launch with the fix when it scales up.",
            nodegroup.name
        ));
    }
    if !matches!(nodegroup.status.as_str(), "ACTIVE" | "DEGRADED") {
        return Err(format!(
            "Cycle skipped: nodegroup {} is {}, not ACTIVE or DEGRADED; nodemedic does not interfere with another update.",
            nodegroup.name, nodegroup.status
        ));
    }
    let (healthy, affected): (Vec<_>, Vec<_>) = evidence
        .group
        .iter()
        .flat_map(|group| group.instances.iter())
        .filter(|instance| instance.is_in_service_and_healthy())
        .partition(|instance| {
            !instance
                .subnet_id
                .as_ref()
                .is_some_and(|subnet| affected_subnets.contains(subnet))
        });
    if !healthy.is_empty() {
        let ids: Vec<&str> = healthy.iter().map(|i| i.id.as_str()).collect();
        let mut text = format!(
            "Cycle skipped: nodegroup {} has {} healthy instance(s) outside the affected subnets ({}) that scaling to 0 \
             would terminate.",
            nodegroup.name,
            ids.len(),
            ids.join(", ")
        );
        for instance in &affected {
            text.push_str(&format!(
                " Replace {} instead: aws autoscaling terminate-instance-in-auto-scaling-group --instance-id {} \
                 --no-should-decrement-desired-capacity.",
                instance.id, instance.id
            ));
        }
        return Err(text);
    }
    let scale_down = ScalingUpdate {
        min_size: (original.min > 0).then_some(0),
        desired_size: 0,
    };
    let restore = ScalingUpdate {
        min_size: (original.min > 0).then_some(original.min),
        desired_size: original.desired,
    };
    Ok(Step {
        fix: FixKind::CycleNodegroup,
        action: Action::CycleNodegroup {
            cluster: nodegroup.cluster.clone(),
            nodegroup: nodegroup.name.clone(),
            original,
            scale_down,
            restore,
        },
        reason: format!(
            "Scale {} to 0 and back to {} so that a new instance launches with the fix in place.",
            nodegroup.name, original.desired
        ),
    })
}

#[cfg(test)]
mod tests;
