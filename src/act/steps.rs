//! The steps themselves: each reads the world, changes it only when the plan still matches it,
//! and reads it back.

use std::future::Future;

use serde_json::{Value, json};

use super::{Actuator, NodegroupState, StepResult, WaitPolicy};
use crate::aws::AwsError;
use crate::core::evidence::{RouteFacts, Scaling};
use crate::core::key_policy;
use crate::core::plan::ScalingUpdate;

pub(super) async fn replace_route<A: Actuator>(
    actuator: &A,
    table: &str,
    destination: &str,
    nat: &str,
    previous_target: &str,
) -> StepResult {
    let before = match actuator.routes(table).await {
        Ok(routes) => routes,
        Err(error) => {
            return StepResult::failed(
                format!("could not read {table}: {error}"),
                Value::Null,
                Value::Null,
            );
        }
    };
    let current = before
        .iter()
        .find(|r| r.destination == destination)
        .cloned();
    match &current {
        Some(route) if route.target == nat && route.is_active() => {
            return StepResult::applied(
                format!("{table} already routes {destination} to {nat}"),
                routes_json(&before),
                routes_json(&before),
            );
        }
        Some(route) if route.target == previous_target => {}
        other => {
            return StepResult::failed(
                format!(
                    "the {destination} route of {table} changed since the plan was made (now {}); not replaced",
                    other
                        .as_ref()
                        .map(|r| format!("{} ({})", r.target, r.state))
                        .unwrap_or_else(|| "absent".into())
                ),
                routes_json(&before),
                routes_json(&before),
            );
        }
    }
    let replaced = actuator.replace_route(table, destination, nat).await;
    let after = actuator.routes(table).await.unwrap_or_default();
    let now = after.iter().find(|r| r.destination == destination);
    match (replaced, now) {
        (Ok(()), Some(route)) if route.target == nat => StepResult::applied(
            format!(
                "replaced {destination} of {table}: {previous_target} -> {nat} (state {})",
                route.state
            ),
            routes_json(&before),
            routes_json(&after),
        ),
        (Err(error), _) => StepResult::failed(
            format!("ReplaceRoute failed: {error}"),
            routes_json(&before),
            routes_json(&after),
        ),
        (Ok(()), _) => StepResult::failed(
            format!("ReplaceRoute succeeded but {table} does not route {destination} to {nat}"),
            routes_json(&before),
            routes_json(&after),
        ),
    }
}

/// Turns a boolean setting on: read, set, read back.
pub(super) async fn set_flag<R, S, RF, SF>(label: &str, read: R, set: S) -> StepResult
where
    R: Fn() -> RF,
    S: FnOnce() -> SF,
    RF: Future<Output = Result<bool, AwsError>>,
    SF: Future<Output = Result<(), AwsError>>,
{
    let before = match read().await {
        Ok(value) => value,
        Err(error) => {
            return StepResult::failed(
                format!("could not read {label}: {error}"),
                Value::Null,
                Value::Null,
            );
        }
    };
    if before {
        return StepResult::applied(format!("{label} is already true"), json!(true), json!(true));
    }
    if let Err(error) = set().await {
        return StepResult::failed(
            format!("could not set {label}: {error}"),
            json!(false),
            Value::Null,
        );
    }
    match read().await {
        Ok(true) => StepResult::applied(format!("set {label} to true"), json!(false), json!(true)),
        Ok(false) => StepResult::failed(
            format!("{label} still reads false after the change"),
            json!(false),
            json!(false),
        ),
        Err(error) => StepResult::failed(
            format!("set {label}, but could not read it back: {error}"),
            json!(false),
            Value::Null,
        ),
    }
}

pub(super) async fn attach_policy<A: Actuator>(actuator: &A, role: &str, arn: &str) -> StepResult {
    let before = match actuator.attached_role_policies(role).await {
        Ok(list) => list,
        Err(error) => {
            return StepResult::failed(
                format!("could not list policies of {role}: {error}"),
                Value::Null,
                Value::Null,
            );
        }
    };
    if before.iter().any(|a| a == arn) {
        return StepResult::applied(
            format!("{arn} is already attached to {role}"),
            json!(before),
            json!(before),
        );
    }
    if let Err(error) = actuator.attach_role_policy(role, arn).await {
        return StepResult::failed(
            format!("AttachRolePolicy failed: {error}"),
            json!(before),
            Value::Null,
        );
    }
    match actuator.attached_role_policies(role).await {
        Ok(after) if after.iter().any(|a| a == arn) => StepResult::applied(
            format!("attached {arn} to {role}"),
            json!(before),
            json!(after),
        ),
        Ok(after) => StepResult::failed(
            format!("{arn} is not listed on {role} after attaching"),
            json!(before),
            json!(after),
        ),
        Err(error) => StepResult::failed(
            format!("attached {arn}, but could not list it: {error}"),
            json!(before),
            Value::Null,
        ),
    }
}

/// Puts `role` in `profile`, which must still hold no role: a profile can hold one role, and one
/// that gained another since the plan is its owner's.
pub(super) async fn add_role_to_profile<A: Actuator>(
    actuator: &A,
    profile: &str,
    role: &str,
) -> StepResult {
    let before = match actuator.instance_profile_roles(profile).await {
        Ok(roles) => roles,
        Err(error) => {
            return StepResult::failed(
                format!("could not read instance profile {profile}: {error}"),
                Value::Null,
                Value::Null,
            );
        }
    };
    if before.iter().any(|r| r == role) {
        return StepResult::applied(
            format!("{role} is already in {profile}"),
            json!(before),
            json!(before),
        );
    }
    if !before.is_empty() {
        return StepResult::failed(
            format!(
                "instance profile {profile} now holds {}: not changed",
                before.join(", ")
            ),
            json!(before),
            json!(before),
        );
    }
    if let Err(error) = actuator.add_role_to_instance_profile(profile, role).await {
        return StepResult::failed(
            format!("AddRoleToInstanceProfile failed: {error}"),
            json!(before),
            Value::Null,
        );
    }
    match actuator.instance_profile_roles(profile).await {
        Ok(after) if after.iter().any(|r| r == role) => StepResult::applied(
            format!("put {role} in instance profile {profile}"),
            json!(before),
            json!(after),
        ),
        Ok(after) => StepResult::failed(
            format!("{role} is not in {profile} after adding it"),
            json!(before),
            json!(after),
        ),
        Err(error) => StepResult::failed(
            format!("added {role}, but could not read {profile}: {error}"),
            json!(before),
            Value::Null,
        ),
    }
}

pub(super) async fn create_access_entry<A: Actuator>(
    actuator: &A,
    cluster: &str,
    principal: &str,
    entry_type: &str,
) -> StepResult {
    match actuator.access_entry(cluster, principal).await {
        Ok(Some(kind)) => {
            return StepResult::applied(
                format!("{principal} already has a {kind} access entry in {cluster}"),
                json!({ "type": kind }),
                json!({ "type": kind }),
            );
        }
        Ok(None) => {}
        Err(error) => {
            return StepResult::failed(
                format!("could not read access entries of {cluster}: {error}"),
                Value::Null,
                Value::Null,
            );
        }
    }
    if let Err(error) = actuator
        .create_access_entry(cluster, principal, entry_type)
        .await
        && !error.is_code("ResourceInUseException")
    {
        return StepResult::failed(
            format!("CreateAccessEntry failed: {error}"),
            Value::Null,
            Value::Null,
        );
    }
    match actuator.access_entry(cluster, principal).await {
        Ok(Some(kind)) => StepResult::applied(
            format!("created a {kind} access entry for {principal} in {cluster}"),
            Value::Null,
            json!({ "type": kind }),
        ),
        Ok(None) => StepResult::failed(
            "the access entry does not read back".to_string(),
            Value::Null,
            Value::Null,
        ),
        Err(error) => StepResult::failed(
            format!("created, but could not read it back: {error}"),
            Value::Null,
            Value::Null,
        ),
    }
}

pub(super) fn routes_json(routes: &[RouteFacts]) -> Value {
    json!(routes)
}

pub(super) async fn create_route<A: Actuator>(
    actuator: &A,
    table: &str,
    destination: &str,
    nat: &str,
) -> StepResult {
    let before = match actuator.routes(table).await {
        Ok(routes) => routes,
        Err(error) => {
            return StepResult::failed(
                format!("could not read {table}: {error}"),
                Value::Null,
                Value::Null,
            );
        }
    };
    let existing = |routes: &[RouteFacts]| {
        routes
            .iter()
            .find(|r| r.destination == destination)
            .cloned()
    };
    if let Some(route) = existing(&before) {
        return if route.target == nat {
            StepResult::applied(
                format!("{table} already routes {destination} to {nat}"),
                routes_json(&before),
                routes_json(&before),
            )
        } else {
            StepResult::failed(
                format!(
                    "{table} already has a {destination} route to {} ({}); it is never replaced",
                    route.target, route.state
                ),
                routes_json(&before),
                routes_json(&before),
            )
        };
    }
    let created = actuator.create_route(table, destination, nat).await;
    let after = actuator.routes(table).await.unwrap_or_default();
    match (created, existing(&after)) {
        (Ok(()), Some(route)) | (Err(_), Some(route)) if route.target == nat => {
            StepResult::applied(
                format!(
                    "routed {destination} from {table} to {nat} (route state {})",
                    route.state
                ),
                routes_json(&before),
                routes_json(&after),
            )
        }
        (Err(error), _) => StepResult::failed(
            format!("CreateRoute failed: {error}"),
            routes_json(&before),
            routes_json(&after),
        ),
        (Ok(()), other) => StepResult::failed(
            format!(
                "CreateRoute succeeded but {table} now shows {}",
                other
                    .map(|r| format!("{} -> {}", r.destination, r.target))
                    .unwrap_or_else(|| format!("no {destination} route"))
            ),
            routes_json(&before),
            routes_json(&after),
        ),
    }
}

/// Policies compare by meaning: KMS may return the document with other whitespace.
pub(crate) fn same_policy(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub(super) async fn put_key_policy<A: Actuator>(
    actuator: &A,
    key: &str,
    name: &str,
    policy: &str,
    previous: &str,
) -> StepResult {
    let current = match actuator.key_policy(key).await {
        Ok(current) => current,
        Err(error) => {
            return StepResult::failed(
                format!("could not read the policy of {key}: {error}"),
                Value::Null,
                Value::Null,
            );
        }
    };
    let before = json!({ "policy": current });
    if same_policy(&current, policy) {
        return StepResult::applied(
            format!("{key} already has the patched policy"),
            before.clone(),
            before,
        );
    }
    if !same_policy(&current, previous) {
        return StepResult::failed(
            format!(
                "the policy of {key} changed since the plan was made; it is not overwritten and must be re-planned"
            ),
            before.clone(),
            before,
        );
    }
    if let Err(error) = actuator.put_key_policy(key, name, policy).await {
        return StepResult::failed(format!("PutKeyPolicy failed: {error}"), before, Value::Null);
    }
    match actuator.key_policy(key).await {
        Ok(written) if same_policy(&written, policy) => {
            let added = key_policy::added_statements(previous, &written);
            let sids: Vec<&str> = added
                .iter()
                .filter_map(|s| s.get("Sid").and_then(Value::as_str))
                .collect();
            StepResult::applied(
                format!(
                    "added statements {} to the policy of {key}",
                    sids.join(", ")
                ),
                before,
                json!({ "policy": written }),
            )
        }
        Ok(written) => StepResult::failed(
            format!("PutKeyPolicy succeeded but {key} reads back a different policy"),
            before,
            json!({ "policy": written }),
        ),
        Err(error) => StepResult::failed(
            format!("PutKeyPolicy succeeded but the policy could not be read back: {error}"),
            before,
            Value::Null,
        ),
    }
}

pub(super) async fn wait_settled<A: Actuator>(
    actuator: &A,
    cluster: &str,
    nodegroup: &str,
    wait: WaitPolicy,
) -> Result<NodegroupState, String> {
    let deadline = tokio::time::Instant::now() + wait.timeout;
    loop {
        match actuator.nodegroup(cluster, nodegroup).await {
            Ok(state) if state.is_settled() => return Ok(state),
            Ok(state) if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "nodegroup {nodegroup} still {} after {}s",
                    state.status,
                    wait.timeout.as_secs()
                ));
            }
            Err(error) if !error.is_transient() => return Err(error.to_string()),
            Err(error) if tokio::time::Instant::now() >= deadline => return Err(error.to_string()),
            _ => tokio::time::sleep(wait.poll).await,
        }
    }
}

/// Sends a scaling update, retrying while another update holds the nodegroup.
pub(super) async fn update_when_free<A: Actuator>(
    actuator: &A,
    cluster: &str,
    nodegroup: &str,
    update: ScalingUpdate,
    wait: WaitPolicy,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + wait.timeout;
    loop {
        match actuator.update_scaling(cluster, nodegroup, update).await {
            Ok(id) => return Ok(id),
            Err(error)
                if (error.is_code("ResourceInUseException") || error.is_transient())
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(wait.poll).await
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn cycle<A: Actuator>(
    actuator: &A,
    cluster: &str,
    nodegroup: &str,
    original: Scaling,
    scale_down: ScalingUpdate,
    restore: ScalingUpdate,
    only_restore: bool,
    wait: WaitPolicy,
) -> StepResult {
    let before = match wait_settled(actuator, cluster, nodegroup, wait).await {
        Ok(state) => state,
        Err(error) => {
            return StepResult::failed(
                format!("nodegroup not ready for a cycle: {error}"),
                Value::Null,
                Value::Null,
            );
        }
    };
    let before_json = json!(before);
    let mut updates = Vec::new();
    // A redelivered message may find the cycle half done: then only the restore is left.
    let already_down = before.scaling.desired == 0 && original.desired > 0;
    if only_restore && !already_down {
        // The intent announced the restore alone; the world moved since, so a human decides.
        return StepResult::failed(
            format!(
                "resumed to restore {nodegroup} from desired 0, but it is at desired {} now; nothing sent",
                before.scaling.desired
            ),
            before_json,
            Value::Null,
        );
    }
    if !already_down {
        match update_when_free(actuator, cluster, nodegroup, scale_down, wait).await {
            Ok(id) => updates.push(id),
            Err(error) => {
                return StepResult::failed(
                    format!("scale down failed: {error}"),
                    before_json,
                    Value::Null,
                );
            }
        }
        if let Err(error) = wait_settled(actuator, cluster, nodegroup, wait).await {
            // The scale-down may still complete; restoring is what protects capacity.
            let restored = update_when_free(actuator, cluster, nodegroup, restore, wait).await;
            return StepResult::failed(
                format!(
                    "scale down did not settle ({error}); restore of min/desired {}: {}",
                    restore_text(restore),
                    restored
                        .map(|_| "sent".to_string())
                        .unwrap_or_else(|e| format!("FAILED: {e}"))
                ),
                before_json,
                Value::Null,
            );
        }
    }
    match update_when_free(actuator, cluster, nodegroup, restore, wait).await {
        Ok(id) => updates.push(id),
        Err(error) => {
            return StepResult::failed(
                format!(
                    "RESTORE FAILED: nodegroup {nodegroup} is at desired 0; set min/desired back to {} by hand: {error}",
                    restore_text(restore)
                ),
                before_json,
                Value::Null,
            )
            .with_change(true);
        }
    }
    match wait_settled(actuator, cluster, nodegroup, wait).await {
        Ok(after)
            if after.scaling.desired == original.desired && after.scaling.min == original.min =>
        {
            StepResult::applied(
                format!(
                    "scaled {nodegroup} to 0 and back to min {} / desired {} (updates {})",
                    original.min,
                    original.desired,
                    updates.join(", ")
                ),
                before_json,
                json!(after),
            )
            .with_change(!updates.is_empty())
        }
        Ok(after) => StepResult::failed(
            format!(
                "after the cycle {nodegroup} has min {} / desired {}, expected {} / {}",
                after.scaling.min, after.scaling.desired, original.min, original.desired
            ),
            before_json,
            json!(after),
        )
        .with_change(true),
        Err(error) => StepResult::failed(
            format!("restore sent but the nodegroup did not settle: {error}"),
            before_json,
            Value::Null,
        )
        .with_change(true),
    }
}

pub(super) fn restore_text(update: ScalingUpdate) -> String {
    match update.min_size {
        Some(min) => format!("{min}/{}", update.desired_size),
        None => format!("(unchanged)/{}", update.desired_size),
    }
}
