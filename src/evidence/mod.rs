//! Evidence: the AWS state an incident rests on, collected once per incident and shared by every
//! diagnosis rule. The types here are plain data; `collect` fills them from AWS.

pub mod collect;
#[cfg(test)]
pub mod fixtures;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::intake::Trigger;

/// Everything known about one incident, as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub trigger: Trigger,
    pub nodegroup: NodegroupFacts,
    pub group: GroupFacts,
    /// Recent scaling activities of the group, newest first.
    pub activities: Vec<ActivityFacts>,
    pub launch_template: Option<LaunchTemplateFacts>,
    /// One entry per distinct KMS key the launch template's volumes name.
    pub keys: Vec<KeyFacts>,
    /// Present when the incident concerns a subnet an instance was launched into.
    pub network: Option<NetworkFacts>,
    /// AWS API calls made to collect this evidence, by `service:Operation`.
    pub calls: CallLog,
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
}

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateFacts {
    pub id: String,
    pub version: String,
    pub volumes: Vec<VolumeFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFacts {
    pub device_name: String,
    pub encrypted: bool,
    /// As written in the launch template: a key id, key ARN, alias name or alias ARN.
    pub kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFacts {
    /// The reference the launch template uses.
    pub reference: String,
    pub lookup: KeyLookup,
}

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
}

impl KeyMetadata {
    pub fn is_customer_managed(&self) -> bool {
        self.manager.eq_ignore_ascii_case("CUSTOMER")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFacts {
    /// The subnet the incident is about (where the instance launched).
    pub subnet_id: String,
    pub vpc_id: String,
    /// Every subnet of the VPC, so that NAT gateways can be placed in their zone.
    pub subnets: Vec<SubnetFacts>,
    /// Every route table of the VPC.
    pub route_tables: Vec<RouteTableFacts>,
    pub nat_gateways: Vec<NatGatewayFacts>,
    pub endpoints: Vec<EndpointFacts>,
    /// Subnets the cluster's nodes already use: the cluster's own subnets and those of its
    /// running instances.
    pub cluster_node_subnets: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetFacts {
    pub id: String,
    pub availability_zone: String,
    pub cidr: String,
    pub available_ips: i32,
    pub map_public_ip_on_launch: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTableFacts {
    pub id: String,
    pub main: bool,
    pub subnet_ids: Vec<String>,
    pub routes: Vec<RouteFacts>,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointFacts {
    pub id: String,
    pub service_name: String,
    /// `Interface` or `Gateway`.
    pub kind: String,
    pub state: String,
}

impl NetworkFacts {
    /// The route table that governs a subnet: its explicit association, else the VPC's main table.
    pub fn route_table_for(&self, subnet_id: &str) -> Option<&RouteTableFacts> {
        self.route_tables
            .iter()
            .find(|table| table.subnet_ids.iter().any(|s| s == subnet_id))
            .or_else(|| self.route_tables.iter().find(|table| table.main))
    }

    pub fn subnet(&self, subnet_id: &str) -> Option<&SubnetFacts> {
        self.subnets.iter().find(|s| s.id == subnet_id)
    }

    /// NAT gateways that route tables of the cluster's node subnets already send traffic to.
    pub fn nat_gateways_used_by_cluster(&self) -> BTreeSet<&str> {
        self.cluster_node_subnets
            .iter()
            .filter(|subnet| subnet.as_str() != self.subnet_id)
            .filter_map(|subnet| self.route_table_for(subnet))
            .flat_map(|table| table.routes.iter())
            .filter(|route| route.is_default_ipv4() && route.is_active())
            .filter(|route| route.target.starts_with("nat-"))
            .map(|route| route.target.as_str())
            .collect()
    }
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
}
