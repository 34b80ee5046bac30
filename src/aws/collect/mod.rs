//! Collecting evidence from AWS for one incident: each Describe call once, filtered by VPC or id
//! list rather than per resource, and every call counted. What is collected depends on the
//! [`Scope`]: a failed launch needs the launch template, a launched instance the network, a
//! nodegroup-wide check everything.

mod cluster_view;
mod launch;
#[cfg(test)]
pub(crate) mod mocked;
mod network;
mod nodegroup;

pub use network::{describe_instance, route_table_facts};
pub use nodegroup::nodegroup_facts;

use launch::{image, keys, launch_template};
use network::{network_facts, security_groups};
use nodegroup::{
    cluster_updates, describe_cluster, describe_group, describe_nodegroup, identity,
    instance_profile, role_lookup, scaling_activities,
};

use aws_sdk_ec2::types::Filter;

use crate::aws::resolve::{CLUSTER_TAG, group_facts};
use crate::aws::{AwsClients, AwsError, AwsResultExt};
use crate::core::checks::{Cause, diagnose};
use crate::core::evidence::Target;
use crate::core::evidence::*;
use crate::core::trigger::{LaunchOutcome, Trigger, TriggerKind};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("nodegroup {cluster}/{nodegroup} no longer exists")]
    NodegroupGone { cluster: String, nodegroup: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Which parts of the checklist to collect evidence for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// Scaling activities, the launch template, its AMI, security groups and KMS keys.
    pub launch: bool,
    /// Subnets, routes, NAT gateways, endpoints, network ACLs, security groups, VPC DNS.
    pub network: bool,
    /// The node role's policies and access entry.
    pub identity: bool,
}

impl Scope {
    pub const LAUNCH: Scope = Scope {
        launch: true,
        network: false,
        identity: false,
    };
    pub const NETWORK: Scope = Scope {
        launch: false,
        network: true,
        identity: false,
    };
    pub const FULL: Scope = Scope {
        launch: true,
        network: true,
        identity: true,
    };

    /// A failed launch is about what launches; a launched instance about where it runs;
    /// anything nodegroup-wide about everything.
    pub fn for_trigger(trigger: &Trigger) -> Scope {
        match &trigger.kind {
            TriggerKind::Launch(launch) if launch.outcome == LaunchOutcome::Unsuccessful => {
                Scope::LAUNCH
            }
            TriggerKind::Launch(_) => Scope::NETWORK,
            TriggerKind::Health(_) | TriggerKind::JoinCheck(_) | TriggerKind::Preflight(_) => {
                Scope::FULL
            }
        }
    }
}

/// Collects the evidence `scope` asks for.
pub async fn collect(
    clients: &AwsClients,
    trigger: &Trigger,
    target: Target,
    scope: Scope,
    mut calls: CallLog,
) -> Result<Evidence, CollectError> {
    let nodegroup = describe_nodegroup(clients, &target, &mut calls).await?;
    let mut group = match target.group {
        Some(group) => Some(group),
        None => describe_group(clients, &nodegroup.group_names, &mut calls).await?,
    };
    let cluster = if scope.network || scope.identity {
        describe_cluster(clients, &nodegroup.cluster, &mut calls).await?
    } else {
        None
    };
    let mut evidence = Evidence {
        trigger: trigger.clone(),
        nodegroup,
        group: None,
        activities: Vec::new(),
        cluster,
        launch_template: None,
        image: None,
        keys: Vec::new(),
        network: None,
        identity: None,
        cluster_role: None,
        instance: None,
        kubernetes: None,
        boot_logs: Vec::new(),
        calls: CallLog::default(),
        reused: None,
    };
    if scope.launch {
        if let Some(group) = &group {
            evidence.activities = scaling_activities(clients, &group.name, &mut calls).await?;
        }
        // Only a launch template the user gave the nodegroup is theirs to check: without one, EKS
        // launches from a template of its own, with its own AMI and bootstrap.
        if let Some(template) = evidence.nodegroup.launch_template.clone() {
            evidence.launch_template = launch_template(clients, &template, &mut calls).await?;
        }
        if let Some(TemplateLookup::Found(facts)) = &mut evidence.launch_template {
            let role = group
                .as_ref()
                .and_then(|g| g.service_linked_role_arn.as_deref());
            evidence.keys = keys(clients, facts, &trigger.account, role, &mut calls).await?;
            if let Some(image_id) = &facts.image_id {
                evidence.image = Some(image(clients, image_id, &mut calls).await?);
            }
            if !facts.security_group_ids.is_empty() && !scope.network {
                let found = security_groups(clients, &facts.security_group_ids, &mut calls).await?;
                facts.missing_security_group_ids = missing(&facts.security_group_ids, &found);
            }
        }
    }
    let mut running = std::collections::BTreeMap::new();
    if scope.network
        && let Some((network, instances)) = network_facts(clients, &evidence, &mut calls).await?
    {
        if let Some(group) = group.as_mut() {
            for instance in &mut group.instances {
                instance.subnet_id = instances
                    .get(&instance.id)
                    .and_then(|i| i.subnet_id.clone());
            }
        }
        if let Some(TemplateLookup::Found(facts)) = &mut evidence.launch_template {
            facts.missing_security_group_ids =
                missing(&facts.security_group_ids, &network.security_groups);
        }
        let wanted = instance_of(trigger);
        evidence.instance = match wanted {
            Some(id) => match instances.get(&id) {
                Some(found) => Some(found.clone()),
                None => Some(describe_instance(clients, &id, &mut calls).await?),
            },
            None => None,
        };
        evidence.network = Some(network);
        running = instances;
    }
    // The node role is cheap to read: a failed launch the launch evidence does not explain reads
    // it too (an explained one, such as lab 002's key, keeps its few calls).
    let read_identity = scope.identity || (scope.launch && launch_unexplained(&evidence));
    if read_identity && evidence.cluster.is_none() {
        evidence.cluster =
            describe_cluster(clients, &evidence.nodegroup.cluster, &mut calls).await?;
    }
    if read_identity && let Some(role) = evidence.nodegroup.node_role.clone() {
        let authentication = evidence
            .cluster
            .as_ref()
            .and_then(|c| c.authentication_mode.clone());
        evidence.identity = Some(
            identity(
                clients,
                &evidence.nodegroup.cluster,
                &role,
                authentication.as_deref(),
                &mut calls,
            )
            .await?,
        );
    }
    if let Some(identity) = evidence.identity.as_mut()
        && let Some(template) = group.as_ref().and_then(|g| g.launch_template.as_ref())
    {
        identity.instance_profile = Some(instance_profile(clients, template, &mut calls).await?);
    }
    if scope.identity
        && let Some(cluster) = evidence.cluster.as_mut()
    {
        cluster.updates_in_progress = cluster_updates(clients, &cluster.name, &mut calls).await?;
    }
    if scope.identity
        && let Some(role) = evidence.cluster.as_ref().and_then(|c| c.role_arn.clone())
    {
        evidence.cluster_role = Some(role_lookup(clients, &role, &mut calls).await?);
    }
    evidence.group = group;
    if scope.identity && scope.network {
        cluster_view::cluster_view(clients, &mut evidence, &running, &mut calls).await?;
    }
    evidence.calls = calls;
    Ok(evidence)
}

/// A failed launch for which the launch evidence names no cause but `unknown`.
fn launch_unexplained(evidence: &Evidence) -> bool {
    let failed = matches!(
        &evidence.trigger.kind,
        TriggerKind::Launch(launch) if launch.outcome == LaunchOutcome::Unsuccessful
    );
    failed
        && !diagnose(evidence)
            .blocking()
            .any(|finding| finding.cause != Cause::Unknown)
}

fn missing(wanted: &[String], found: &[SecurityGroupFacts]) -> Vec<String> {
    wanted
        .iter()
        .filter(|id| !found.iter().any(|g| &g.id == *id))
        .cloned()
        .collect()
}

pub(super) fn instance_of(trigger: &Trigger) -> Option<String> {
    match &trigger.kind {
        TriggerKind::Launch(launch) => launch.instance_id.clone(),
        TriggerKind::JoinCheck(check) => Some(check.instance_id.clone()),
        _ => None,
    }
}

fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    let mut builder = Filter::builder().name(name);
    for value in values {
        builder = builder.values(value);
    }
    builder.build()
}

/// The subnets a check is about: the instance's when the trigger names one (an empty list means
/// "look the instance up"), else the nodegroup's.
fn examined_subnets(evidence: &Evidence) -> Vec<String> {
    match &evidence.trigger.kind {
        TriggerKind::Launch(launch) => match &launch.subnet_id {
            Some(subnet) => vec![subnet.clone()],
            None if launch.instance_id.is_some() => Vec::new(),
            None => evidence.nodegroup.subnets.clone(),
        },
        TriggerKind::JoinCheck(check) => check.subnet_id.iter().cloned().collect(),
        _ => evidence.nodegroup.subnets.clone(),
    }
}
