//! Acting: applying one planned step through the [`Actuator`] seam, idempotently, and reading the
//! world back to say what changed. `act` never decides whether to act; the guard does.

mod aws;
mod steps;
pub mod verify;

pub use aws::AwsActuator;
pub(crate) use steps::same_policy;
use steps::{
    add_role_to_profile, attach_policy, create_access_entry, create_route, cycle, put_key_policy,
    replace_route, set_flag,
};

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::core::evidence::{RouteFacts, Scaling};
use crate::core::plan::{Action, ScalingUpdate, Step};
pub use crate::core::step::{Permission, PolicyReview, StepResult, StepStatus};
use crate::settings::RemediationSettings;

/// The AWS operations fixes need: the one seam between the pure core and AWS mutations.
pub trait Actuator: Send + Sync {
    fn routes(
        &self,
        route_table_id: &str,
    ) -> impl Future<Output = Result<Vec<RouteFacts>, AwsError>> + Send;
    fn create_route(
        &self,
        route_table_id: &str,
        destination: &str,
        nat_gateway_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn key_policy(&self, key_id: &str) -> impl Future<Output = Result<String, AwsError>> + Send;
    fn put_key_policy(
        &self,
        key_id: &str,
        policy_name: &str,
        policy: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn nodegroup(
        &self,
        cluster: &str,
        nodegroup: &str,
    ) -> impl Future<Output = Result<NodegroupState, AwsError>> + Send;
    fn update_scaling(
        &self,
        cluster: &str,
        nodegroup: &str,
        update: ScalingUpdate,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// Points a route at `target` (a NAT gateway `nat-…` or an internet gateway `igw-…`).
    fn replace_route(
        &self,
        route_table_id: &str,
        destination: &str,
        target: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete_route(
        &self,
        route_table_id: &str,
        destination: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn detach_role_policy(
        &self,
        role_name: &str,
        policy_arn: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Instances of an Auto Scaling group that are InService.
    fn in_service(&self, group: &str) -> impl Future<Output = Result<usize, AwsError>> + Send;
    /// Asks AWS whether the caller may perform the action, without performing it (EC2 DryRun).
    fn dry_run(&self, action: &Action) -> impl Future<Output = Permission> + Send;
    /// IAM Access Analyzer's ValidatePolicy on a resource policy a step would write. Never an
    /// error: a call that cannot be made is a review skipped, with its reason.
    fn review_policy(&self, policy: &str) -> impl Future<Output = PolicyReview> + Send;
    fn vpc_attribute(
        &self,
        vpc_id: &str,
        attribute: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    fn enable_vpc_attribute(
        &self,
        vpc_id: &str,
        attribute: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn subnet_maps_public_ip(
        &self,
        subnet_id: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// The names of the roles in an instance profile.
    fn instance_profile_roles(
        &self,
        profile_name: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
    fn add_role_to_instance_profile(
        &self,
        profile_name: &str,
        role_name: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn remove_role_from_instance_profile(
        &self,
        profile_name: &str,
        role_name: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn endpoint_private_dns(
        &self,
        endpoint_id: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    fn enable_endpoint_private_dns(
        &self,
        endpoint_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn enable_subnet_public_ip(
        &self,
        subnet_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn attached_role_policies(
        &self,
        role_name: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
    fn attach_role_policy(
        &self,
        role_name: &str,
        policy_arn: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The type of the principal's access entry, or `None` when it has none.
    fn access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    fn create_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
        entry_type: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The nodegroup's Nodes as the cluster's API shows them, or why it was not read.
    fn nodegroup_nodes(
        &self,
        cluster: &str,
        nodegroup: &str,
    ) -> impl Future<Output = NodesSeen> + Send;
}

/// The Nodes of a nodegroup (instance id, Ready), or why the cluster's API was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodesSeen {
    Read(Vec<(String, bool)>),
    NotRead(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodegroupState {
    pub status: String,
    pub scaling: Scaling,
    /// Codes of the nodegroup's health issues.
    #[serde(default)]
    pub issues: Vec<String>,
}

impl NodegroupState {
    /// No update is running: the nodegroup accepts a new one.
    pub fn is_settled(&self) -> bool {
        matches!(self.status.as_str(), "ACTIVE" | "DEGRADED")
    }
}

/// A dry-run permission check, and what the endpoint did when it performed the call anyway.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRunCheck {
    pub permission: Permission,
    /// Present when the endpoint ignored DryRun: the change, as a step result to undo.
    pub performed: Option<StepResult>,
}

/// The dry-run permission check of a step. An endpoint that ignores DryRun (one that is not
/// EC2-compatible) performs the call: the caller must undo it, since dry-run changes nothing.
pub async fn check_permission<A: Actuator>(actuator: &A, step: &Step) -> DryRunCheck {
    let permission = actuator.dry_run(&step.action).await;
    if permission != Permission::Performed {
        return DryRunCheck {
            permission,
            performed: None,
        };
    }
    let after = match &step.action {
        Action::CreateRoute { route_table_id, .. }
        | Action::ReplaceRoute { route_table_id, .. } => {
            json!(actuator.routes(route_table_id).await.unwrap_or_default())
        }
        _ => Value::Null,
    };
    DryRunCheck {
        permission,
        performed: Some(StepResult::applied(
            "the endpoint ignored DryRun and performed the call",
            Value::Null,
            after,
        )),
    }
}

/// Finishes a cycle an earlier run left at desired 0: the restore alone, and nothing if the
/// nodegroup is no longer at 0.
pub async fn restore_cycle<A: Actuator>(actuator: &A, step: &Step, wait: WaitPolicy) -> StepResult {
    run_cycle(actuator, &step.action, true, wait).await
}

async fn run_cycle<A: Actuator>(
    actuator: &A,
    action: &Action,
    only_restore: bool,
    wait: WaitPolicy,
) -> StepResult {
    match action {
        Action::CycleNodegroup {
            cluster,
            nodegroup,
            original,
            scale_down,
            restore,
        } => {
            cycle(
                actuator,
                cluster,
                nodegroup,
                *original,
                *scale_down,
                *restore,
                only_restore,
                wait,
            )
            .await
        }
        other => StepResult::failed(format!("not a cycle: {other:?}"), Value::Null, Value::Null),
    }
}

/// How long to wait for a nodegroup update, and how often to look.
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    pub poll: Duration,
    pub timeout: Duration,
}

impl From<&RemediationSettings> for WaitPolicy {
    fn from(settings: &RemediationSettings) -> WaitPolicy {
        WaitPolicy {
            poll: Duration::from_secs_f64(settings.nodegroup_poll_secs),
            timeout: Duration::from_secs(settings.nodegroup_timeout_secs),
        }
    }
}

/// Applies one step. Never panics and never returns early on an AWS error: every failure becomes
/// a `Failed` result with the error text, so that it can be recorded.
pub async fn apply<A: Actuator>(actuator: &A, step: &Step, wait: WaitPolicy) -> StepResult {
    match &step.action {
        Action::CreateRoute {
            route_table_id,
            destination_cidr_block,
            nat_gateway_id,
        } => {
            create_route(
                actuator,
                route_table_id,
                destination_cidr_block,
                nat_gateway_id,
            )
            .await
        }
        Action::PutKeyPolicy {
            key_id,
            policy_name,
            policy,
            previous_policy,
        } => put_key_policy(actuator, key_id, policy_name, policy, previous_policy).await,
        Action::CycleNodegroup { .. } => run_cycle(actuator, &step.action, false, wait).await,
        Action::ReplaceRoute {
            route_table_id,
            destination_cidr_block,
            nat_gateway_id,
            previous_target,
        } => {
            replace_route(
                actuator,
                route_table_id,
                destination_cidr_block,
                nat_gateway_id,
                previous_target,
            )
            .await
        }
        Action::ModifyVpcAttribute { vpc_id, attribute } => {
            let label = format!("{attribute} of {vpc_id}");
            set_flag(
                &label,
                || actuator.vpc_attribute(vpc_id, attribute),
                || actuator.enable_vpc_attribute(vpc_id, attribute),
            )
            .await
        }
        Action::ModifyVpcEndpointPrivateDns { endpoint_id } => {
            let label = format!("PrivateDnsEnabled of {endpoint_id}");
            set_flag(
                &label,
                || actuator.endpoint_private_dns(endpoint_id),
                || actuator.enable_endpoint_private_dns(endpoint_id),
            )
            .await
        }
        Action::ModifySubnetAttribute { subnet_id } => {
            let label = format!("MapPublicIpOnLaunch of {subnet_id}");
            set_flag(
                &label,
                || actuator.subnet_maps_public_ip(subnet_id),
                || actuator.enable_subnet_public_ip(subnet_id),
            )
            .await
        }
        Action::AttachRolePolicy {
            role_name,
            policy_arn,
        } => attach_policy(actuator, role_name, policy_arn).await,
        Action::CreateAccessEntry {
            cluster,
            principal_arn,
            entry_type,
        } => create_access_entry(actuator, cluster, principal_arn, entry_type).await,
        Action::AddRoleToInstanceProfile {
            profile_name,
            role_name,
        } => add_role_to_profile(actuator, profile_name, role_name).await,
    }
}

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod review_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod verify_tests;
