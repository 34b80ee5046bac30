//! Planning: pure translation of findings into steps, each naming the exact AWS API call and its
//! parameters, plus notes saying why a fix was not planned. No I/O.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::core::checks::{Diagnosis, Finding, Subject};
use crate::core::evidence::{Evidence, NatGatewayFacts, NetworkFacts, Scaling};
use crate::core::key_policy::{self, Caller, KeyPolicyError, KeyPolicyPatch};

mod actions;
mod steps;

pub use actions::*;
use steps::*;

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
    /// What only a human can weigh before this step runs (a cause inferred but not observed, an
    /// evaluation in doubt): the guard then waits for an approval in every mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_review: Option<String>,
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
                needs_review: None,
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
                    needs_review: None,
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
                    needs_review: None,
                })
                .collect()),
            Subject::InstanceProfile {
                profile_name,
                role_name,
            } => Ok(vec![Step {
                fix: FixKind::AddRoleToInstanceProfile,
                action: Action::AddRoleToInstanceProfile {
                    profile_name: profile_name.clone(),
                    role_name: role_name.clone(),
                },
                reason: format!(
                    "Put node role {role_name} in instance profile {profile_name}, which holds no role."
                ),
                needs_review: None,
            }]),
            Subject::Endpoints { endpoint_ids, .. } => Ok(endpoint_ids
                .iter()
                .map(|endpoint_id| Step {
                    fix: FixKind::EnableEndpointPrivateDns,
                    action: Action::ModifyVpcEndpointPrivateDns {
                        endpoint_id: endpoint_id.clone(),
                    },
                    reason: format!(
                        "Turn private DNS on for {endpoint_id}, so the service's name resolves to it."
                    ),
                    needs_review: None,
                })
                .collect()),
            Subject::ClusterRole {
                role_name,
                missing_policy_arns,
            } => Ok(missing_policy_arns
                .iter()
                .map(|arn| Step {
                    fix: FixKind::AttachClusterRolePolicy,
                    action: Action::AttachRolePolicy {
                        role_name: role_name.clone(),
                        policy_arn: arn.clone(),
                    },
                    reason: format!("Attach {arn} to cluster role {role_name}."),
                    needs_review: None,
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
                needs_review: None,
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
            Action::AddRoleToInstanceProfile { profile_name, .. } => add(
                profile_name.clone(),
                evidence
                    .identity
                    .as_ref()
                    .and_then(|i| i.instance_profile.as_ref())
                    .map(|p| json!(p))
                    .unwrap_or(Value::Null),
            ),
            Action::ModifyVpcEndpointPrivateDns { endpoint_id } => add(
                endpoint_id.clone(),
                network
                    .and_then(|n| n.endpoints.iter().find(|e| &e.id == endpoint_id))
                    .map(|e| json!({"private_dns_enabled": e.private_dns_enabled}))
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
                evidence.role_named(role_name).map(|role| json!(role)).unwrap_or(Value::Null),
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

#[cfg(test)]
mod tests;
