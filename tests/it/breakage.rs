//! What the guard and approval tests share: breaking a nodegroup like lab 000 again and again,
//! publishing its events, and reading back key policies, routes and guard decisions.

use nodemedic::aws::AwsResultExt;
use nodemedic::lab::{self, Lab002};
use serde_json::Value;

use crate::support::{World, incident_of};

pub const SERVICE_LINKED_ROLE: &str =
    ":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling";
pub const TOKEN: &str = "alice-token-0123456789abcdef";

/// A nodegroup in its own new subnet whose route table has only the local route (lab 000's
/// break, repeatable).
pub struct Broken {
    pub nodegroup: String,
    pub group: String,
    pub subnet: String,
    pub route_table: String,
}

pub async fn broken_nodegroup(world: &World, name: &str, cidr: &str) -> Broken {
    let c = &world.clients;
    let subnet = lab::subnet(c, &world.network.vpc, cidr)
        .await
        .expect("subnet");
    let route_table = lab::route_table(c, &world.network.vpc, &subnet)
        .await
        .expect("route table");
    let group = lab::nodegroup(c, &world.network, name, &subnet, (0, 1, 1), None)
        .await
        .expect("nodegroup");
    Broken {
        nodegroup: name.into(),
        group,
        subnet,
        route_table,
    }
}

pub async fn publish(world: &World, broken: &Broken) {
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &broken.group,
        &broken.subnet,
    )
    .await
    .expect("event");
}

pub async fn publish_lab_002(world: &World, lab: &Lab002) {
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &lab.group,
        &world.network.private_subnet,
    )
    .await
    .expect("event");
}

/// The key policy exactly as KMS returns it.
pub async fn policy_text(world: &World, key: &str) -> String {
    world
        .clients
        .kms
        .get_key_policy()
        .key_id(key)
        .policy_name("default")
        .send()
        .await
        .op("kms:GetKeyPolicy")
        .expect("policy")
        .policy()
        .expect("a policy")
        .to_string()
}

pub fn grants_autoscaling(policy: &Value) -> bool {
    policy["Statement"].as_array().is_some_and(|statements| {
        statements.iter().any(|s| {
            s["Principal"]["AWS"]
                .as_str()
                .is_some_and(|p| p.ends_with(SERVICE_LINKED_ROLE))
        })
    })
}

pub fn only_local(routes: &[(String, String, String)]) -> bool {
    routes.len() == 1 && routes[0].1 == "local"
}

/// Every guard decision of an incident, as (fix, decision, reason).
pub fn decisions(world: &World, incident: &str) -> Vec<(String, String, String)> {
    world
        .records_of(incident, "guard_decision")
        .iter()
        .map(|r| {
            let body = &r["body"];
            (
                body["fix"].as_str().unwrap_or("").to_string(),
                body["decision"]["decision"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                body["decision"]["reason"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

pub fn the_incident<'a>(incidents: &'a [Value], nodegroup: &str) -> &'a Value {
    incident_of(incidents, nodegroup)
        .unwrap_or_else(|| panic!("an incident for {nodegroup}: {incidents:#?}"))
}
