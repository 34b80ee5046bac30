//! After a plan is applied: is the cause gone? And when it is not, undo what is safely
//! reversible, exactly.

use serde_json::{Value, json};

use super::{Actuator, NodesSeen, StepResult, StepStatus, WaitPolicy, same_policy};
use crate::core::plan::{Action, ApiCall, Step};

pub use crate::core::step::{Check, Verification};

/// Where the relaunched nodes should show up.
#[derive(Debug, Clone)]
pub struct Nodegroup<'a> {
    pub cluster: &'a str,
    pub name: &'a str,
    pub group: Option<&'a str>,
    /// The instances the nodegroup had before the fix: a Node of one of them proves nothing
    /// about the relaunch.
    pub instances_before: &'a [String],
}

/// Re-reads every applied fix and, when the nodegroup was cycled, waits until it is ACTIVE with
/// no health issue and an instance in service, within `wait.timeout`.
pub async fn verify<A: Actuator>(
    actuator: &A,
    applied: &[&Step],
    nodegroup: &Nodegroup<'_>,
    wait: WaitPolicy,
) -> Verification {
    let deadline = tokio::time::Instant::now() + wait.timeout;
    loop {
        let mut checks = Vec::new();
        for step in applied {
            checks.push(check(actuator, step, nodegroup).await);
        }
        let passed = checks.iter().all(|c| c.passed);
        if passed || tokio::time::Instant::now() >= deadline {
            return Verification { passed, checks };
        }
        tokio::time::sleep(wait.poll).await;
    }
}

async fn check<A: Actuator>(actuator: &A, step: &Step, nodegroup: &Nodegroup<'_>) -> Check {
    let result = |what: String, passed: bool, detail: String| Check {
        what,
        passed,
        detail,
    };
    match &step.action {
        Action::CreateRoute {
            route_table_id,
            destination_cidr_block,
            nat_gateway_id,
        }
        | Action::ReplaceRoute {
            route_table_id,
            destination_cidr_block,
            nat_gateway_id,
            ..
        } => {
            let what = format!(
                "{route_table_id} routes {destination_cidr_block} to {nat_gateway_id}, active"
            );
            match actuator.routes(route_table_id).await {
                Ok(routes) => match routes
                    .iter()
                    .find(|r| &r.destination == destination_cidr_block)
                {
                    Some(route) => result(
                        what,
                        &route.target == nat_gateway_id && route.is_active(),
                        format!("{} ({})", route.target, route.state),
                    ),
                    None => result(what, false, "no such route".into()),
                },
                Err(error) => result(what, false, error.to_string()),
            }
        }
        Action::PutKeyPolicy { key_id, policy, .. } => {
            let what = format!("the policy of {key_id} is the patched one");
            match actuator.key_policy(key_id).await {
                Ok(current) => {
                    let same = same_policy(&current, policy);
                    result(
                        what,
                        same,
                        if same {
                            "unchanged since".into()
                        } else {
                            "edited since".into()
                        },
                    )
                }
                Err(error) => result(what, false, error.to_string()),
            }
        }
        Action::ModifyVpcAttribute { vpc_id, attribute } => {
            let what = format!("{attribute} of {vpc_id} is on");
            match actuator.vpc_attribute(vpc_id, attribute).await {
                Ok(on) => result(what, on, format!("{on}")),
                Err(error) => result(what, false, error.to_string()),
            }
        }
        Action::AddRoleToInstanceProfile {
            profile_name,
            role_name,
        } => {
            let what = format!("{role_name} is in instance profile {profile_name}");
            match actuator.instance_profile_roles(profile_name).await {
                Ok(roles) => result(
                    what,
                    roles.contains(role_name),
                    format!("roles: {}", roles.join(", ")),
                ),
                Err(error) => result(what, false, error.to_string()),
            }
        }
        Action::ModifyVpcEndpointPrivateDns { endpoint_id } => {
            let what = format!("{endpoint_id} answers its service's name");
            match actuator.endpoint_private_dns(endpoint_id).await {
                Ok(on) => result(what, on, format!("PrivateDnsEnabled={on}")),
                Err(error) => result(what, false, error.to_string()),
            }
        }
        Action::ModifySubnetAttribute { subnet_id } => {
            let what = format!("{subnet_id} maps public IPs");
            match actuator.subnet_maps_public_ip(subnet_id).await {
                Ok(on) => result(what, on, format!("{on}")),
                Err(error) => result(what, false, error.to_string()),
            }
        }
        Action::AttachRolePolicy {
            role_name,
            policy_arn,
        } => {
            let what = format!("{policy_arn} is attached to {role_name}");
            match actuator.attached_role_policies(role_name).await {
                Ok(list) => result(
                    what,
                    list.contains(policy_arn),
                    format!("{} attached", list.len()),
                ),
                Err(error) => result(what, false, error.to_string()),
            }
        }
        Action::CreateAccessEntry {
            cluster,
            principal_arn,
            ..
        } => {
            let what = format!("{principal_arn} has an access entry in {cluster}");
            match actuator.access_entry(cluster, principal_arn).await {
                Ok(kind) => result(what, kind.is_some(), kind.unwrap_or_else(|| "none".into())),
                Err(error) => result(what, false, error.to_string()),
            }
        }
        Action::CycleNodegroup { original, .. } => {
            let fallback = match actuator
                .nodegroup_nodes(nodegroup.cluster, nodegroup.name)
                .await
            {
                NodesSeen::Read(nodes) => {
                    let what = format!(
                        "a Node of a new instance of nodegroup {} is registered and Ready (read from the cluster's API)",
                        nodegroup.name
                    );
                    let new: Vec<&(String, bool)> = nodes
                        .iter()
                        .filter(|(id, _)| !nodegroup.instances_before.contains(id))
                        .collect();
                    let ready: Vec<&str> = new
                        .iter()
                        .filter(|(_, r)| *r)
                        .map(|(id, _)| id.as_str())
                        .collect();
                    let waiting: Vec<&str> = new
                        .iter()
                        .filter(|(_, r)| !*r)
                        .map(|(id, _)| id.as_str())
                        .collect();
                    return result(
                        what,
                        !ready.is_empty(),
                        format!(
                            "Ready: [{}]; registered, not Ready: [{}]; {} Node(s) of earlier instances",
                            ready.join(", "),
                            waiting.join(", "),
                            nodes.len() - new.len()
                        ),
                    );
                }
                NodesSeen::NotRead(reason) => reason,
            };
            let what = format!(
                "nodegroup {} is ACTIVE with no health issue and {} instance(s) in service \
                 (the cluster's API was not read: {fallback})",
                nodegroup.name,
                original.desired.min(1)
            );
            let state = match actuator.nodegroup(nodegroup.cluster, nodegroup.name).await {
                Ok(state) => state,
                Err(error) => return result(what, false, error.to_string()),
            };
            let in_service = match nodegroup.group {
                Some(group) => actuator.in_service(group).await.unwrap_or(0),
                None => 0,
            };
            let wanted = original.desired.min(1) as usize;
            result(
                what,
                state.status == "ACTIVE"
                    && state.issues.is_empty()
                    && (nodegroup.group.is_none() || in_service >= wanted),
                format!(
                    "status {}, health issues [{}], {in_service} in service",
                    state.status,
                    state.issues.join(", ")
                ),
            )
        }
    }
}

/// Undoes one applied step when that is safe; `None` when there is nothing to undo or it is not
/// safely reversible (the reason is in the result's detail).
pub async fn rollback<A: Actuator>(actuator: &A, step: &Step, applied: &StepResult) -> StepResult {
    let undone = |detail: String, after: Value| StepResult {
        status: StepStatus::RolledBack,
        changed: true,
        detail,
        before: applied.after.clone(),
        after,
    };
    let kept = |detail: String| StepResult {
        status: StepStatus::Applied,
        changed: false,
        detail,
        before: applied.after.clone(),
        after: applied.after.clone(),
    };
    let failed = |detail: String| StepResult {
        status: StepStatus::Failed,
        changed: false,
        detail,
        before: applied.after.clone(),
        after: Value::Null,
    };
    match &step.action {
        Action::CreateRoute {
            route_table_id,
            destination_cidr_block,
            nat_gateway_id,
        } => {
            let existed_before = applied.before.as_array().is_some_and(|routes| {
                routes
                    .iter()
                    .any(|r| r["destination"] == json!(destination_cidr_block))
            });
            if existed_before {
                return kept(format!(
                    "{route_table_id} already had its {destination_cidr_block} route before; left as it was"
                ));
            }
            if let Some(kept) = changed_since(
                actuator,
                route_table_id,
                destination_cidr_block,
                nat_gateway_id,
                &kept,
                &failed,
            )
            .await
            {
                return kept;
            }
            match actuator
                .delete_route(route_table_id, destination_cidr_block)
                .await
            {
                Ok(()) => undone(
                    format!(
                        "deleted the {destination_cidr_block} route to {nat_gateway_id} from {route_table_id}"
                    ),
                    json!(actuator.routes(route_table_id).await.unwrap_or_default()),
                ),
                Err(error) => failed(format!("could not delete the route: {error}")),
            }
        }
        Action::ReplaceRoute {
            route_table_id,
            destination_cidr_block,
            nat_gateway_id,
            previous_target,
        } => {
            if !(previous_target.starts_with("nat-") || previous_target.starts_with("igw-")) {
                return kept(format!(
                    "{previous_target} is not a target nodemedic can point a route back at"
                ));
            }
            if let Some(kept) = changed_since(
                actuator,
                route_table_id,
                destination_cidr_block,
                nat_gateway_id,
                &kept,
                &failed,
            )
            .await
            {
                return kept;
            }
            match actuator
                .replace_route(route_table_id, destination_cidr_block, previous_target)
                .await
            {
                Ok(()) => undone(
                    format!(
                        "pointed {destination_cidr_block} of {route_table_id} back at {previous_target}"
                    ),
                    json!(actuator.routes(route_table_id).await.unwrap_or_default()),
                ),
                Err(error) => failed(format!("could not point the route back: {error}")),
            }
        }
        Action::PutKeyPolicy {
            key_id,
            policy_name,
            policy,
            ..
        } => {
            let Some(previous) = applied.before["policy"].as_str() else {
                return failed("the previous policy was not recorded".into());
            };
            if same_policy(previous, policy) {
                return kept("the key already had this policy before; left as it was".into());
            }
            match actuator.key_policy(key_id).await {
                Ok(current) if !same_policy(&current, policy) => {
                    return kept(format!(
                        "the policy of {key_id} was edited since nodemedic wrote it; not overwritten"
                    ));
                }
                Err(error) => return failed(format!("could not read the policy: {error}")),
                Ok(_) => {}
            }
            match actuator.put_key_policy(key_id, policy_name, previous).await {
                Ok(()) => undone(
                    format!("restored the exact previous policy of {key_id}"),
                    json!({ "policy": actuator.key_policy(key_id).await.unwrap_or_default() }),
                ),
                Err(error) => failed(format!("could not restore the policy: {error}")),
            }
        }
        Action::AttachRolePolicy {
            role_name,
            policy_arn,
        } => {
            if applied
                .before
                .as_array()
                .is_some_and(|list| list.contains(&json!(policy_arn)))
            {
                return kept(format!("{policy_arn} was attached before; left as it was"));
            }
            match actuator.detach_role_policy(role_name, policy_arn).await {
                Ok(()) => undone(
                    format!("detached {policy_arn} from {role_name}"),
                    Value::Null,
                ),
                Err(error) => failed(format!("could not detach: {error}")),
            }
        }
        Action::CreateAccessEntry {
            cluster,
            principal_arn,
            ..
        } => {
            if !applied.before.is_null() {
                return kept("the access entry existed before; left as it was".into());
            }
            match actuator.delete_access_entry(cluster, principal_arn).await {
                Ok(()) => undone(
                    format!("deleted the access entry of {principal_arn}"),
                    Value::Null,
                ),
                Err(error) => failed(format!("could not delete the access entry: {error}")),
            }
        }
        Action::ModifyVpcAttribute { vpc_id, attribute } => kept(format!(
            "{attribute} of {vpc_id} stays on: turning DNS off again could break other workloads in the VPC"
        )),
        Action::AddRoleToInstanceProfile {
            profile_name,
            role_name,
        } => {
            if applied
                .before
                .as_array()
                .is_some_and(|roles| roles.contains(&json!(role_name)))
            {
                return kept(format!(
                    "{role_name} was in {profile_name} before; left as it was"
                ));
            }
            match actuator
                .remove_role_from_instance_profile(profile_name, role_name)
                .await
            {
                Ok(()) => undone(
                    format!("took {role_name} out of {profile_name} again"),
                    Value::Null,
                ),
                Err(error) => failed(format!("could not take the role out: {error}")),
            }
        }
        Action::ModifyVpcEndpointPrivateDns { endpoint_id } => kept(format!(
            "{endpoint_id} keeps private DNS on: other workloads of the VPC may resolve through it now"
        )),
        Action::ModifySubnetAttribute { subnet_id } => kept(format!(
            "{subnet_id} keeps mapping public IPs: instances launched meanwhile rely on it"
        )),
        Action::CycleNodegroup { .. } => {
            kept("the cycle already restored the nodegroup's scaling".into())
        }
    }
}

/// A rollback of a route only undoes nodemedic's own route: when the route is gone or points
/// somewhere else now, someone changed it after the fix, and it is left as it is.
async fn changed_since<A: Actuator>(
    actuator: &A,
    route_table_id: &str,
    destination: &str,
    ours: &str,
    kept: &impl Fn(String) -> StepResult,
    failed: &impl Fn(String) -> StepResult,
) -> Option<StepResult> {
    let routes = match actuator.routes(route_table_id).await {
        Ok(routes) => routes,
        Err(error) => return Some(failed(format!("could not read the routes: {error}"))),
    };
    match routes.iter().find(|r| r.destination == destination) {
        Some(route) if route.target == ours => None,
        Some(route) => Some(kept(format!(
            "the {destination} route of {route_table_id} points at {} now, not at {ours}: someone changed \
             it after the fix, so it is left as it is",
            route.target
        ))),
        None => Some(kept(format!(
            "the {destination} route of {route_table_id} is gone already; nothing to undo"
        ))),
    }
}

/// The calls a rollback of `step` may make, for its intent record. Empty when the step is not
/// undone (VPC and subnet attributes stay on; a cycle restored itself).
pub fn undo_calls(step: &Step, applied: &StepResult) -> Vec<ApiCall> {
    let call = |operation: &str, parameters: Value| ApiCall {
        operation: operation.into(),
        parameters,
    };
    match &step.action {
        Action::CreateRoute {
            route_table_id,
            destination_cidr_block,
            ..
        } => vec![call(
            "ec2:DeleteRoute",
            json!({ "RouteTableId": route_table_id, "DestinationCidrBlock": destination_cidr_block }),
        )],
        Action::ReplaceRoute {
            route_table_id,
            destination_cidr_block,
            previous_target,
            ..
        } => {
            let target = if previous_target.starts_with("igw-") {
                "GatewayId"
            } else {
                "NatGatewayId"
            };
            vec![call(
                "ec2:ReplaceRoute",
                json!({ "RouteTableId": route_table_id, "DestinationCidrBlock": destination_cidr_block, target: previous_target }),
            )]
        }
        Action::PutKeyPolicy {
            key_id,
            policy_name,
            ..
        } => vec![call(
            "kms:PutKeyPolicy",
            json!({ "KeyId": key_id, "PolicyName": policy_name, "Policy": applied.before["policy"] }),
        )],
        Action::AttachRolePolicy {
            role_name,
            policy_arn,
        } => vec![call(
            "iam:DetachRolePolicy",
            json!({ "RoleName": role_name, "PolicyArn": policy_arn }),
        )],
        Action::CreateAccessEntry {
            cluster,
            principal_arn,
            ..
        } => vec![call(
            "eks:DeleteAccessEntry",
            json!({ "clusterName": cluster, "principalArn": principal_arn }),
        )],
        Action::AddRoleToInstanceProfile {
            profile_name,
            role_name,
        } => vec![call(
            "iam:RemoveRoleFromInstanceProfile",
            json!({ "InstanceProfileName": profile_name, "RoleName": role_name }),
        )],
        Action::ModifyVpcAttribute { .. }
        | Action::ModifyVpcEndpointPrivateDns { .. }
        | Action::ModifySubnetAttribute { .. }
        | Action::CycleNodegroup { .. } => Vec::new(),
    }
}
