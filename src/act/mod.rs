//! Acting: applying one planned step through the [`Actuator`] seam, idempotently, and reading the
//! world back to say what changed. `act` never decides whether to act; the guard does.

mod aws;

pub use aws::AwsActuator;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::evidence::{RouteFacts, Scaling};
use crate::plan::key_policy::{self, Access};
use crate::plan::{Action, ScalingUpdate, Step};

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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodegroupState {
    pub status: String,
    pub scaling: Scaling,
}

impl NodegroupState {
    /// No update is running: the nodegroup accepts a new one.
    pub fn is_settled(&self) -> bool {
        matches!(self.status.as_str(), "ACTIVE" | "DEGRADED")
    }
}

/// How long to wait for a nodegroup update, and how often to look.
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    pub poll: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Planned,
    Applied,
    Skipped,
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Planned => "planned",
            StepStatus::Applied => "applied",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
        }
    }
}

/// What applying a step did, with the state before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub status: StepStatus,
    pub detail: String,
    pub before: Value,
    pub after: Value,
}

impl StepResult {
    fn applied(detail: impl Into<String>, before: Value, after: Value) -> Self {
        Self {
            status: StepStatus::Applied,
            detail: detail.into(),
            before,
            after,
        }
    }

    fn failed(detail: impl Into<String>, before: Value, after: Value) -> Self {
        Self {
            status: StepStatus::Failed,
            detail: detail.into(),
            before,
            after,
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
                wait,
            )
            .await
        }
    }
}

fn routes_json(routes: &[RouteFacts]) -> Value {
    json!(routes)
}

async fn create_route<A: Actuator>(
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
fn same_policy(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

async fn put_key_policy<A: Actuator>(
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

/// Whether a written policy grants the role; used by verification.
pub fn policy_grants(policy: &str, role: &str) -> bool {
    matches!(key_policy::assess(policy, role), Ok(Access::Granted))
}

async fn wait_settled<A: Actuator>(
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
async fn update_when_free<A: Actuator>(
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

async fn cycle<A: Actuator>(
    actuator: &A,
    cluster: &str,
    nodegroup: &str,
    original: Scaling,
    scale_down: ScalingUpdate,
    restore: ScalingUpdate,
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
            );
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
        }
        Ok(after) => StepResult::failed(
            format!(
                "after the cycle {nodegroup} has min {} / desired {}, expected {} / {}",
                after.scaling.min, after.scaling.desired, original.min, original.desired
            ),
            before_json,
            json!(after),
        ),
        Err(error) => StepResult::failed(
            format!("restore sent but the nodegroup did not settle: {error}"),
            before_json,
            Value::Null,
        ),
    }
}

fn restore_text(update: ScalingUpdate) -> String {
    match update.min_size {
        Some(min) => format!("{min}/{}", update.desired_size),
        None => format!("(unchanged)/{}", update.desired_size),
    }
}

#[cfg(test)]
mod tests;
