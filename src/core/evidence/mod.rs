//! Evidence: the AWS state an incident rests on, collected once per incident and shared by every
//! diagnosis rule. The types here are plain data; `collect` fills them from AWS.

#[cfg(test)]
pub mod fixtures;
mod kubernetes;
#[cfg(test)]
mod reused_tests;

pub use kubernetes::*;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::core::time::Timestamp;
use crate::core::trigger::Trigger;

/// The nodegroup an event concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub cluster: String,
    pub nodegroup: String,
    /// The group, when the trigger named it (launch events); otherwise looked up from the
    /// nodegroup during collection.
    pub group: Option<GroupFacts>,
}

/// Everything known about one incident, as observed. Parts that were not collected are `None`
/// (or empty); rules only judge what they were given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub trigger: Trigger,
    pub nodegroup: NodegroupFacts,
    /// The nodegroup's Auto Scaling group, when it exists.
    pub group: Option<GroupFacts>,
    /// Recent scaling activities of the group, newest first.
    pub activities: Vec<ActivityFacts>,
    pub cluster: Option<ClusterFacts>,
    pub launch_template: Option<TemplateLookup>,
    /// The launch template's AMI, when it names one.
    pub image: Option<ImageLookup>,
    /// One entry per distinct KMS key the launch template's volumes name.
    pub keys: Vec<KeyFacts>,
    pub network: Option<NetworkFacts>,
    pub identity: Option<IdentityFacts>,
    /// The cluster's IAM role, read with the node role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_role: Option<RoleLookup>,
    /// The instance a launch or join check is about.
    pub instance: Option<InstanceFacts>,
    /// The cluster's own API, read with the whole checklist when nodemedic can reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<ClusterView>,
    /// The console output of instances that run but have not registered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_logs: Vec<BootLog>,
    /// AWS API calls made to collect this evidence, by `service:Operation`.
    pub calls: CallLog,
    /// Set when this evidence was read for an earlier failure of the same nodegroup and reused
    /// (then `calls` is empty: none were made for this event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused: Option<ReusedEvidence>,
}

/// Which event's collection a reused piece of evidence comes from, and when it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReusedEvidence {
    pub event_id: String,
    pub collected_at: Timestamp,
}

impl Evidence {
    /// The node role or the cluster role, whichever is named `role_name`, as IAM showed it.
    pub fn role_named(&self, role_name: &str) -> Option<&RoleLookup> {
        let named = |role: &&RoleLookup| match role {
            RoleLookup::Found { name, .. } | RoleLookup::NotFound { name } => name == role_name,
            RoleLookup::Unreadable { .. } => false,
        };
        self.identity
            .as_ref()
            .map(|i| &i.role)
            .filter(named)
            .or(self.cluster_role.as_ref().filter(named))
    }

    pub fn launch_template_facts(&self) -> Option<&LaunchTemplateFacts> {
        match &self.launch_template {
            Some(TemplateLookup::Found(facts)) => Some(facts),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaling {
    pub min: i32,
    pub max: i32,
    pub desired: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodegroupFacts {
    pub cluster: String,
    pub name: String,
    pub status: String,
    pub scaling: Scaling,
    pub subnets: Vec<String>,
    pub health_issues: Vec<HealthIssue>,
    pub node_role: Option<String>,
    pub launch_template: Option<TemplateRef>,
    /// `AL2_x86_64`, `AL2023_x86_64_STANDARD`, `BOTTLEROCKET_x86_64`, `CUSTOM`, …
    pub ami_type: Option<String>,
    /// The Kubernetes version of the nodes (`1.33`), as EKS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The EKS AMI release (`1.33.5-20251016`); none for a custom AMI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_version: Option<String>,
    pub capacity_type: Option<String>,
    /// The root volume size EKS gives nodes launched without a launch template of the user's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<i32>,
    pub instance_types: Vec<String>,
    pub group_names: Vec<String>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<NodegroupTaint>,
}

/// A resource's tags.
pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthIssue {
    pub code: String,
    pub message: String,
    pub resource_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
}

/// The nodegroup's Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFacts {
    pub name: String,
    pub service_linked_role_arn: Option<String>,
    pub instances: Vec<GroupInstance>,
    pub launch_template: Option<TemplateRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInstance {
    pub id: String,
    pub lifecycle_state: String,
    pub health_status: String,
    pub subnet_id: Option<String>,
}

impl GroupInstance {
    pub fn is_in_service_and_healthy(&self) -> bool {
        self.lifecycle_state == "InService" && self.health_status.eq_ignore_ascii_case("Healthy")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityFacts {
    pub status_code: String,
    pub status_message: Option<String>,
    pub description: Option<String>,
}

/// The cluster as DescribeCluster shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFacts {
    pub name: String,
    pub status: String,
    /// The control plane's Kubernetes version (`1.33`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The IAM role EKS assumes to run the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_ids: Vec<String>,
    pub cluster_security_group_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub endpoint_public_access: bool,
    pub endpoint_private_access: bool,
    pub public_access_cidrs: Vec<String>,
    /// `CONFIG_MAP`, `API_AND_CONFIG_MAP` or `API`; `None` when the cluster does not say.
    pub authentication_mode: Option<String>,
    #[serde(default)]
    pub tags: Tags,
    /// The cluster's updates still in progress (ListUpdates, DescribeUpdate); `None` when they
    /// were not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates_in_progress: Option<Vec<ClusterUpdate>>,
    /// The API server's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `certificateAuthority.data`: base64 of the PEM bundle the API server's certificate chains
    /// to. Used to reach the API, not recorded.
    #[serde(skip)]
    pub certificate_authority: Option<String>,
}

/// A control-plane update (a version, endpoint access, logging or other configuration change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterUpdate {
    pub id: String,
    /// VersionUpdate, EndpointAccessUpdate, LoggingUpdate, ConfigUpdate, ...
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

impl ClusterFacts {
    /// Only reachable from inside the VPC (or connected networks).
    pub fn is_private_only(&self) -> bool {
        self.endpoint_private_access && !self.endpoint_public_access
    }

    /// Security groups on the control plane's network interfaces.
    pub fn control_plane_security_groups(&self) -> Vec<&str> {
        self.cluster_security_group_id
            .iter()
            .map(String::as_str)
            .chain(self.security_group_ids.iter().map(String::as_str))
            .collect()
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "one per incident, read in place; a box would only add an allocation"
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TemplateLookup {
    Found(LaunchTemplateFacts),
    NotFound { reference: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateFacts {
    pub id: String,
    pub version: String,
    pub volumes: Vec<VolumeFacts>,
    /// A launch template that names an AMI makes the nodegroup a custom-AMI nodegroup.
    pub image_id: Option<String>,
    /// Decoded user data (gunzipped, truncated), `None` when the template has none.
    pub user_data: Option<String>,
    /// The user data's size as EC2 counts it: after base64 decoding, before anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data_bytes: Option<usize>,
    /// Settings a managed nodegroup's launch template may not carry, as `Name=value`
    /// (a network interface's SubnetId, IamInstanceProfile, spot market options, hibernation,
    /// shutdown behaviour `terminate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forbidden_settings: Vec<String>,
    /// The instance metadata options the template sets, when it sets any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_options: Option<MetadataOptions>,
    pub security_group_ids: Vec<String>,
    /// Security groups the template names that DescribeSecurityGroups did not find.
    pub missing_security_group_ids: Vec<String>,
    pub key_name: Option<String>,
}

/// Instance metadata service options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataOptions {
    /// `required` (IMDSv2 only) or `optional`.
    pub http_tokens: Option<String>,
    /// How many network hops a token response may travel: a container behind the node needs 2.
    pub hop_limit: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFacts {
    pub device_name: String,
    pub encrypted: bool,
    /// As written in the launch template: a key id, key ARN, alias name or alias ARN.
    pub kms_key_id: Option<String>,
    /// The volume size in GiB, when the template sets one (else the AMI's snapshot size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gib: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ImageLookup {
    Found {
        image_id: String,
        state: String,
        /// The AMI's name, which tells the EKS AMI family and Kubernetes version it was built for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The root device, and the size of its snapshot in GiB: a root volume may not be smaller.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root_device_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root_snapshot_gib: Option<i32>,
    },
    NotFound {
        image_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFacts {
    /// The reference the launch template uses.
    pub reference: String,
    pub lookup: KeyLookup,
}

// One per key a launch template names, built once per event: boxing the common variant would
// cost every match a dereference and save nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum KeyLookup {
    Found(KeyMetadata),
    /// DescribeKey said the key does not exist.
    NotFound {
        reason: String,
    },
    /// DescribeKey was denied: the key exists somewhere nodemedic may not look (often another
    /// account that has not shared it).
    Unreadable {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMetadata {
    pub arn: String,
    pub key_id: String,
    /// The account that owns the key, read from its ARN.
    pub account: String,
    /// KMS `KeyState`: Enabled, Disabled, PendingDeletion, ...
    pub state: String,
    /// `CUSTOMER` or `AWS`.
    pub manager: String,
    /// The `default` key policy, verbatim; `None` when it could not be read.
    pub policy: Option<String>,
    /// Why the policy could not be read (for example a key owned by another account).
    pub policy_unreadable: Option<String>,
    #[serde(default)]
    pub tags: Tags,
    /// Why the key's tags could not be read; the guard then treats them as unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags_unreadable: Option<String>,
    /// The key's grants to the Auto Scaling role (`ListGrants`), read when the policy alone does
    /// not let the role in: a grant is as good as a policy statement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<KeyGrant>,
    /// Why the grants could not be read; access through a grant is then unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants_unreadable: Option<String>,
}

/// A KMS grant, as `ListGrants` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant {
    pub grant_id: String,
    pub grantee_principal: String,
    /// Operation names without the `kms:` prefix, as grants spell them (`Decrypt`).
    pub operations: Vec<String>,
    /// The grant only applies under an encryption context constraint.
    #[serde(default)]
    pub constrained: bool,
}

impl KeyMetadata {
    pub fn is_customer_managed(&self) -> bool {
        self.manager.eq_ignore_ascii_case("CUSTOMER")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFacts {
    /// The subnets under examination: the launched instance's, else the nodegroup's.
    pub subnet_ids: Vec<String>,
    pub vpc: VpcFacts,
    /// Every subnet of the VPC (plus examined subnets of another VPC).
    pub subnets: Vec<SubnetFacts>,
    /// Every route table of the VPC.
    pub route_tables: Vec<RouteTableFacts>,
    pub nat_gateways: Vec<NatGatewayFacts>,
    pub endpoints: Vec<EndpointFacts>,
    pub network_acls: Vec<NetworkAclFacts>,
    /// The security groups involved: the nodes', the control plane's and the endpoints'.
    pub security_groups: Vec<SecurityGroupFacts>,
    /// Security groups the nodes use: the instance's, else the launch template's, else the
    /// cluster security group EKS adds.
    pub node_security_group_ids: Vec<String>,
    /// Subnets the cluster's nodes already use: the cluster's own subnets and those of its
    /// running instances.
    pub cluster_node_subnets: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VpcFacts {
    pub id: String,
    pub cidr_blocks: Vec<String>,
    /// `None` when not looked at.
    pub dns_support: Option<bool>,
    pub dns_hostnames: Option<bool>,
    pub dhcp_options_id: Option<String>,
    /// The DHCP options' `domain-name-servers`, when read.
    pub domain_name_servers: Option<Vec<String>>,
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetFacts {
    pub id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub cidr: String,
    pub available_ips: i32,
    pub map_public_ip_on_launch: bool,
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTableFacts {
    pub id: String,
    pub main: bool,
    pub subnet_ids: Vec<String>,
    pub routes: Vec<RouteFacts>,
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteFacts {
    pub destination: String,
    /// The route's target id: `local`, `igw-…`, `nat-…`, `tgw-…`, `pcx-…`, `eni-…`, `i-…`, ….
    pub target: String,
    /// `active` or `blackhole`.
    pub state: String,
}

impl RouteFacts {
    pub fn is_default_ipv4(&self) -> bool {
        self.destination == "0.0.0.0/0"
    }
    pub fn is_active(&self) -> bool {
        self.state == "active"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatGatewayFacts {
    pub id: String,
    pub subnet_id: String,
    /// pending, failed, available, deleting, deleted
    pub state: String,
    /// `public` or `private`; only a public NAT gateway reaches the internet.
    pub connectivity: String,
    pub public_ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointFacts {
    pub id: String,
    pub service_name: String,
    /// `Interface` or `Gateway`.
    pub kind: String,
    pub state: String,
    pub security_group_ids: Vec<String>,
    pub route_table_ids: Vec<String>,
    pub private_dns_enabled: bool,
    /// The endpoint policy, verbatim; `None` when the endpoint has none (full access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAclFacts {
    pub id: String,
    pub default: bool,
    pub subnet_ids: Vec<String>,
    pub entries: Vec<AclEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    pub rule_number: i32,
    pub egress: bool,
    /// `-1` (all), `6` (TCP), `17` (UDP), …
    pub protocol: String,
    /// `allow` or `deny`.
    pub action: String,
    pub cidr: String,
    pub port_from: Option<i32>,
    pub port_to: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupFacts {
    pub id: String,
    pub name: String,
    pub ingress: Vec<SecurityGroupRule>,
    pub egress: Vec<SecurityGroupRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    /// `-1` (all), `tcp`, `udp`, `icmp`, or a protocol number.
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidrs: Vec<String>,
    pub source_groups: Vec<String>,
}

impl NetworkFacts {
    /// The route table that governs a subnet: its explicit association, else the VPC's main table.
    pub fn route_table_for(&self, subnet_id: &str) -> Option<&RouteTableFacts> {
        self.route_tables
            .iter()
            .find(|table| table.subnet_ids.iter().any(|s| s == subnet_id))
            .or_else(|| self.route_tables.iter().find(|table| table.main))
    }

    /// The network ACL of a subnet: its association, else the VPC's default ACL.
    pub fn network_acl_for(&self, subnet_id: &str) -> Option<&NetworkAclFacts> {
        self.network_acls
            .iter()
            .find(|acl| acl.subnet_ids.iter().any(|s| s == subnet_id))
            .or_else(|| self.network_acls.iter().find(|acl| acl.default))
    }

    pub fn subnet(&self, subnet_id: &str) -> Option<&SubnetFacts> {
        self.subnets.iter().find(|s| s.id == subnet_id)
    }

    pub fn nat_gateway(&self, id: &str) -> Option<&NatGatewayFacts> {
        self.nat_gateways.iter().find(|n| n.id == id)
    }

    pub fn security_group(&self, id: &str) -> Option<&SecurityGroupFacts> {
        self.security_groups.iter().find(|g| g.id == id)
    }

    /// NAT gateways that route tables of the cluster's other node subnets already send traffic to.
    pub fn nat_gateways_used_by_cluster(&self) -> BTreeSet<&str> {
        self.cluster_node_subnets
            .iter()
            .filter(|subnet| !self.subnet_ids.contains(subnet))
            .filter_map(|subnet| self.route_table_for(subnet))
            .flat_map(|table| table.routes.iter())
            .filter(|route| route.is_default_ipv4() && route.is_active())
            .filter(|route| route.target.starts_with("nat-"))
            .map(|route| route.target.as_str())
            .collect()
    }
}

/// The node role and how the cluster admits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityFacts {
    pub node_role_arn: String,
    pub role: RoleLookup,
    pub access_entry: AccessEntryLookup,
    /// The instance profile the Auto Scaling group's launch template gives its instances; `None`
    /// when the group names no launch template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<ProfileLookup>,
}

/// The instance profile instances launch with, read from the Auto Scaling group's launch
/// template (for a managed nodegroup, the copy EKS makes of the user's template, or its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ProfileLookup {
    Found {
        /// The launch template and version it was read from.
        template: String,
        name: String,
        role_arns: Vec<String>,
        #[serde(default, skip_serializing_if = "Tags::is_empty")]
        tags: Tags,
    },
    /// The template gives its instances no instance profile.
    NotInTemplate { template: String },
    /// The template names a profile IAM does not have.
    NotFound { template: String, name: String },
    /// The template or the profile could not be read (denied, or the template is gone).
    Unreadable { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RoleLookup {
    Found {
        name: String,
        attached_policy_arns: Vec<String>,
        #[serde(default)]
        tags: Tags,
        /// The trust (assume-role) policy, decoded from the URL encoding IAM returns it in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trust_policy: Option<String>,
    },
    NotFound {
        name: String,
    },
    Unreadable {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AccessEntryLookup {
    /// The cluster does not authenticate through access entries only, so none was looked up.
    NotApplicable,
    Present {
        kind: String,
    },
    Absent,
    Unreadable {
        reason: String,
    },
}

/// The instance a launch or join check concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFacts {
    pub id: String,
    /// pending, running, stopping, stopped, shutting-down, terminated; `missing` when not found.
    pub state: String,
    pub subnet_id: Option<String>,
    pub public_ip: Option<String>,
    pub security_group_ids: Vec<String>,
    /// When EC2 launched it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub launched_at: Option<time::OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns_name: Option<String>,
}

/// Counts the AWS API calls one collection made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLog {
    pub by_operation: BTreeMap<String, u32>,
}

impl CallLog {
    pub fn record(&mut self, operation: &str) {
        *self.by_operation.entry(operation.to_string()).or_default() += 1;
    }

    pub fn total(&self) -> u32 {
        self.by_operation.values().sum()
    }

    pub fn merge(&mut self, other: CallLog) {
        for (operation, count) in other.by_operation {
            *self.by_operation.entry(operation).or_default() += count;
        }
    }
}
