//! Collecting evidence from AWS for one incident: each Describe call once, filtered by VPC or id
//! list rather than per resource, and every call counted. What is collected depends on the
//! [`Scope`]: a failed launch needs the launch template, a launched instance the network, a
//! nodegroup-wide check everything.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, VpcAttributeName};
use base64::Engine;

use super::*;
use crate::aws::{AwsClients, AwsError, AwsResultExt};
use crate::intake::{LaunchOutcome, Trigger, TriggerKind};
use crate::resolve::{CLUSTER_TAG, Target, group_facts};

/// User data beyond this is not needed to recognise a bootstrap call.
const USER_DATA_LIMIT: usize = 16 * 1024;

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
        instance: None,
        calls: CallLog::default(),
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
            evidence.keys = keys(clients, facts, &trigger.account, &mut calls).await?;
            if let Some(image_id) = &facts.image_id {
                evidence.image = Some(image(clients, image_id, &mut calls).await?);
            }
            if !facts.security_group_ids.is_empty() && !scope.network {
                let found = security_groups(clients, &facts.security_group_ids, &mut calls).await?;
                facts.missing_security_group_ids = missing(&facts.security_group_ids, &found);
            }
        }
    }
    if scope.network
        && let Some((network, instances)) = network(clients, &evidence, &mut calls).await?
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
    }
    if scope.identity
        && let Some(role) = evidence.nodegroup.node_role.clone()
    {
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
    evidence.group = group;
    evidence.calls = calls;
    Ok(evidence)
}

fn missing(wanted: &[String], found: &[SecurityGroupFacts]) -> Vec<String> {
    wanted
        .iter()
        .filter(|id| !found.iter().any(|g| &g.id == *id))
        .cloned()
        .collect()
}

fn instance_of(trigger: &Trigger) -> Option<String> {
    match &trigger.kind {
        TriggerKind::Launch(launch) => launch.instance_id.clone(),
        TriggerKind::JoinCheck(check) => Some(check.instance_id.clone()),
        _ => None,
    }
}

async fn describe_nodegroup(
    clients: &AwsClients,
    target: &Target,
    calls: &mut CallLog,
) -> Result<NodegroupFacts, CollectError> {
    calls.record("eks:DescribeNodegroup");
    let output = clients
        .eks
        .describe_nodegroup()
        .cluster_name(&target.cluster)
        .nodegroup_name(&target.nodegroup)
        .send()
        .await
        .op("eks:DescribeNodegroup");
    let gone = || CollectError::NodegroupGone {
        cluster: target.cluster.clone(),
        nodegroup: target.nodegroup.clone(),
    };
    let output = match output {
        Err(error) if error.is_code("ResourceNotFoundException") => return Err(gone()),
        other => other?,
    };
    let nodegroup = output.nodegroup().ok_or_else(gone)?;
    Ok(nodegroup_facts(&target.cluster, nodegroup))
}

/// Pure conversion of an EKS nodegroup description.
pub fn nodegroup_facts(cluster: &str, nodegroup: &aws_sdk_eks::types::Nodegroup) -> NodegroupFacts {
    let scaling = nodegroup.scaling_config();
    NodegroupFacts {
        cluster: cluster.to_string(),
        name: nodegroup.nodegroup_name().unwrap_or_default().to_string(),
        status: nodegroup
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        scaling: Scaling {
            min: scaling.and_then(|s| s.min_size()).unwrap_or(0),
            max: scaling.and_then(|s| s.max_size()).unwrap_or(0),
            desired: scaling.and_then(|s| s.desired_size()).unwrap_or(0),
        },
        subnets: nodegroup.subnets().to_vec(),
        health_issues: nodegroup
            .health()
            .map(|h| h.issues())
            .unwrap_or_default()
            .iter()
            .map(|issue| HealthIssue {
                code: issue
                    .code()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
                message: issue.message().unwrap_or_default().to_string(),
                resource_ids: issue.resource_ids().to_vec(),
            })
            .collect(),
        node_role: nodegroup.node_role().map(str::to_string),
        launch_template: nodegroup.launch_template().map(|t| TemplateRef {
            id: t.id().map(str::to_string),
            name: t.name().map(str::to_string),
            version: t.version().map(str::to_string),
        }),
        ami_type: nodegroup.ami_type().map(|a| a.as_str().to_string()),
        capacity_type: nodegroup.capacity_type().map(|c| c.as_str().to_string()),
        instance_types: nodegroup.instance_types().to_vec(),
        group_names: nodegroup
            .resources()
            .map(|r| r.auto_scaling_groups())
            .unwrap_or_default()
            .iter()
            .filter_map(|g| g.name())
            .map(str::to_string)
            .collect(),
        tags: nodegroup
            .tags()
            .map(|t| t.clone().into_iter().collect())
            .unwrap_or_default(),
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

async fn describe_group(
    clients: &AwsClients,
    names: &[String],
    calls: &mut CallLog,
) -> Result<Option<GroupFacts>, AwsError> {
    let Some(name) = names.first() else {
        return Ok(None);
    };
    calls.record("autoscaling:DescribeAutoScalingGroups");
    let output = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .op("autoscaling:DescribeAutoScalingGroups")?;
    Ok(output.auto_scaling_groups().first().map(group_facts))
}

async fn describe_cluster(
    clients: &AwsClients,
    name: &str,
    calls: &mut CallLog,
) -> Result<Option<ClusterFacts>, AwsError> {
    calls.record("eks:DescribeCluster");
    let output = match clients
        .eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .op("eks:DescribeCluster")
    {
        Err(error) if error.is_code("ResourceNotFoundException") => return Ok(None),
        other => other?,
    };
    Ok(output.cluster().map(|cluster| {
        let vpc = cluster.resources_vpc_config();
        ClusterFacts {
            name: cluster.name().unwrap_or(name).to_string(),
            status: cluster
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            vpc_id: vpc.and_then(|v| v.vpc_id()).map(str::to_string),
            subnet_ids: vpc.map(|v| v.subnet_ids().to_vec()).unwrap_or_default(),
            cluster_security_group_id: vpc
                .and_then(|v| v.cluster_security_group_id())
                .map(str::to_string),
            security_group_ids: vpc
                .map(|v| v.security_group_ids().to_vec())
                .unwrap_or_default(),
            endpoint_public_access: vpc.map(|v| v.endpoint_public_access()).unwrap_or(true),
            endpoint_private_access: vpc.map(|v| v.endpoint_private_access()).unwrap_or(false),
            public_access_cidrs: vpc
                .map(|v| v.public_access_cidrs().to_vec())
                .unwrap_or_default(),
            authentication_mode: cluster
                .access_config()
                .and_then(|a| a.authentication_mode())
                .map(|m| m.as_str().to_string()),
            tags: cluster
                .tags()
                .map(|t| t.clone().into_iter().collect())
                .unwrap_or_default(),
        }
    }))
}

async fn scaling_activities(
    clients: &AwsClients,
    group: &str,
    calls: &mut CallLog,
) -> Result<Vec<ActivityFacts>, AwsError> {
    calls.record("autoscaling:DescribeScalingActivities");
    let output = clients
        .autoscaling
        .describe_scaling_activities()
        .auto_scaling_group_name(group)
        .max_records(10)
        .send()
        .await
        .op("autoscaling:DescribeScalingActivities")?;
    Ok(output
        .activities()
        .iter()
        .map(|activity| ActivityFacts {
            status_code: activity
                .status_code()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            status_message: activity
                .status_message()
                .filter(|m| !m.is_empty())
                .map(str::to_string),
            description: activity.description().map(str::to_string),
        })
        .collect())
}

async fn launch_template(
    clients: &AwsClients,
    template: &TemplateRef,
    calls: &mut CallLog,
) -> Result<Option<TemplateLookup>, AwsError> {
    let version = template
        .version
        .clone()
        .unwrap_or_else(|| "$Default".into());
    let mut request = clients
        .ec2
        .describe_launch_template_versions()
        .versions(&version);
    let reference = match (&template.id, &template.name) {
        (Some(id), _) => {
            request = request.launch_template_id(id);
            id.clone()
        }
        (None, Some(name)) => {
            request = request.launch_template_name(name);
            name.clone()
        }
        (None, None) => return Ok(None),
    };
    calls.record("ec2:DescribeLaunchTemplateVersions");
    let output = match request
        .send()
        .await
        .op("ec2:DescribeLaunchTemplateVersions")
    {
        Err(error) if error.code.starts_with("InvalidLaunchTemplate") => {
            return Ok(Some(TemplateLookup::NotFound {
                reference: format!("{reference} version {version}"),
                reason: format!("{}: {}", error.code, error.message),
            }));
        }
        other => other?,
    };
    let Some(found) = output.launch_template_versions().first() else {
        return Ok(Some(TemplateLookup::NotFound {
            reference: format!("{reference} version {version}"),
            reason: "DescribeLaunchTemplateVersions returned no version".into(),
        }));
    };
    let data = found.launch_template_data();
    let volumes = data
        .map(|d| d.block_device_mappings())
        .unwrap_or_default()
        .iter()
        .filter_map(|mapping| {
            let ebs = mapping.ebs()?;
            Some(VolumeFacts {
                device_name: mapping.device_name().unwrap_or_default().to_string(),
                encrypted: ebs.encrypted().unwrap_or(false),
                kms_key_id: ebs.kms_key_id().map(str::to_string),
            })
        })
        .collect();
    let mut security_group_ids: Vec<String> = data
        .map(|d| d.security_group_ids().to_vec())
        .unwrap_or_default();
    for interface in data.map(|d| d.network_interfaces()).unwrap_or_default() {
        security_group_ids.extend(interface.groups().iter().cloned());
    }
    security_group_ids.dedup();
    Ok(Some(TemplateLookup::Found(LaunchTemplateFacts {
        id: found.launch_template_id().unwrap_or_default().to_string(),
        version: found
            .version_number()
            .map(|v| v.to_string())
            .unwrap_or(version),
        volumes,
        image_id: data
            .and_then(|d| d.image_id())
            .filter(|i| !i.is_empty())
            .map(str::to_string),
        user_data: data.and_then(|d| d.user_data()).map(decode_user_data),
        security_group_ids,
        missing_security_group_ids: Vec::new(),
        key_name: data.and_then(|d| d.key_name()).map(str::to_string),
    })))
}

/// Launch template user data is base64; keep what decodes, as text.
fn decode_user_data(encoded: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap_or_else(|_| encoded.as_bytes().to_vec());
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if text.len() > USER_DATA_LIMIT {
        let mut cut = USER_DATA_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

async fn image(
    clients: &AwsClients,
    image_id: &str,
    calls: &mut CallLog,
) -> Result<ImageLookup, AwsError> {
    calls.record("ec2:DescribeImages");
    let output = match clients
        .ec2
        .describe_images()
        .image_ids(image_id)
        .send()
        .await
        .op("ec2:DescribeImages")
    {
        Err(error) if error.code.starts_with("InvalidAMIID") => {
            return Ok(ImageLookup::NotFound {
                image_id: image_id.into(),
            });
        }
        other => other?,
    };
    Ok(match output.images().first() {
        Some(found) => ImageLookup::Found {
            image_id: image_id.into(),
            state: found
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        },
        None => ImageLookup::NotFound {
            image_id: image_id.into(),
        },
    })
}

async fn keys(
    clients: &AwsClients,
    template: &LaunchTemplateFacts,
    account: &str,
    calls: &mut CallLog,
) -> Result<Vec<KeyFacts>, AwsError> {
    let references: BTreeSet<&str> = template
        .volumes
        .iter()
        .filter_map(|v| v.kms_key_id.as_deref())
        .collect();
    let mut keys = Vec::new();
    for reference in references {
        calls.record("kms:DescribeKey");
        let described = clients
            .kms
            .describe_key()
            .key_id(reference)
            .send()
            .await
            .op("kms:DescribeKey");
        let described = match described {
            Err(error) if error.is_code("NotFoundException") => {
                keys.push(KeyFacts {
                    reference: reference.to_string(),
                    lookup: KeyLookup::NotFound {
                        reason: format!("{}: {}", error.code, error.message),
                    },
                });
                continue;
            }
            Err(error) if error.is_code("AccessDeniedException") => {
                keys.push(KeyFacts {
                    reference: reference.to_string(),
                    lookup: KeyLookup::Unreadable {
                        reason: format!("{}: {}", error.code, error.message),
                    },
                });
                continue;
            }
            other => other?,
        };
        let Some(metadata) = described.key_metadata() else {
            continue;
        };
        let arn = metadata.arn().unwrap_or(reference).to_string();
        let owner = metadata
            .aws_account_id()
            .map(str::to_string)
            .or_else(|| arn.split(':').nth(4).map(str::to_string))
            .unwrap_or_default();
        let mut facts = KeyMetadata {
            arn: arn.clone(),
            key_id: metadata.key_id().to_string(),
            account: owner.clone(),
            state: metadata
                .key_state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "Unknown".into()),
            manager: metadata
                .key_manager()
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| "CUSTOMER".into()),
            policy: None,
            policy_unreadable: None,
            tags: Tags::new(),
        };
        if facts.state == "Enabled" && facts.is_customer_managed() {
            if owner == account {
                calls.record("kms:ListResourceTags");
                match clients
                    .kms
                    .list_resource_tags()
                    .key_id(&arn)
                    .send()
                    .await
                    .op("kms:ListResourceTags")
                {
                    Ok(output) => {
                        facts.tags = output
                            .tags()
                            .iter()
                            .map(|t| (t.tag_key().to_string(), t.tag_value().to_string()))
                            .collect()
                    }
                    Err(error) if error.is_transient() => return Err(error),
                    // Tags only narrow what nodemedic may touch; without them the key policy still tells.
                    Err(_) => {}
                }
                calls.record("kms:GetKeyPolicy");
                match clients
                    .kms
                    .get_key_policy()
                    .key_id(&arn)
                    .policy_name("default")
                    .send()
                    .await
                    .op("kms:GetKeyPolicy")
                {
                    Ok(output) => facts.policy = output.policy().map(str::to_string),
                    Err(error) if !error.is_transient() => {
                        facts.policy_unreadable = Some(format!("{}: {}", error.code, error.message))
                    }
                    Err(error) => return Err(error),
                }
            } else {
                facts.policy_unreadable = Some(format!(
                    "the key belongs to account {owner}; GetKeyPolicy works only in the key's own account"
                ));
            }
        }
        keys.push(KeyFacts {
            reference: reference.to_string(),
            lookup: KeyLookup::Found(facts),
        });
    }
    Ok(keys)
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

/// Network evidence for the examined subnets, and the cluster's running instances by id.
async fn network(
    clients: &AwsClients,
    evidence: &Evidence,
    calls: &mut CallLog,
) -> Result<Option<(NetworkFacts, BTreeMap<String, InstanceFacts>)>, AwsError> {
    let mut subnet_ids = examined_subnets(evidence);
    if subnet_ids.is_empty()
        && let Some(instance) = instance_of(&evidence.trigger)
    {
        let found = describe_instance(clients, &instance, calls).await?;
        subnet_ids.extend(found.subnet_id);
    }
    if subnet_ids.is_empty() {
        return Ok(None);
    }
    let cluster_vpc = evidence.cluster.as_ref().and_then(|c| c.vpc_id.clone());
    let mut subnets = match &cluster_vpc {
        Some(vpc) => describe_subnets(clients, Some(vpc), &[], calls).await?,
        None => Vec::new(),
    };
    let unknown: Vec<String> = subnet_ids
        .iter()
        .filter(|id| !subnets.iter().any(|s| &s.id == *id))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        // Subnets outside the cluster's VPC (or a cluster whose VPC is not known).
        let extra = describe_subnets(clients, None, &unknown, calls).await?;
        if cluster_vpc.is_none()
            && let Some(vpc) = extra.first().map(|s| s.vpc_id.clone())
        {
            subnets = describe_subnets(clients, Some(&vpc), &[], calls).await?;
        } else {
            subnets.extend(extra);
        }
    }
    let vpc_id = cluster_vpc
        .or_else(|| {
            subnets
                .iter()
                .find(|s| subnet_ids.contains(&s.id))
                .map(|s| s.vpc_id.clone())
        })
        .unwrap_or_default();
    if vpc_id.is_empty() {
        return Ok(None);
    }

    // These reads do not depend on each other: one round trip of latency instead of six.
    let mut logs: [CallLog; 6] = Default::default();
    let [l1, l2, l3, l4, l5, l6] = &mut logs;
    let (vpc, route_tables, nat_gateways, endpoints, network_acls, instances) = tokio::try_join!(
        vpc_facts(clients, &vpc_id, l1),
        route_tables(clients, &vpc_id, l2),
        nat_gateways(clients, &vpc_id, l3),
        endpoints(clients, &vpc_id, l4),
        network_acls(clients, &vpc_id, l5),
        cluster_instances(clients, &evidence.nodegroup.cluster, l6),
    )?;
    for log in logs {
        calls.merge(log);
    }

    let template_groups: Vec<String> = evidence
        .launch_template_facts()
        .map(|t| t.security_group_ids.clone())
        .unwrap_or_default();
    let cluster_groups: Vec<String> = evidence
        .cluster
        .as_ref()
        .map(|c| {
            c.control_plane_security_groups()
                .into_iter()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    // EKS puts the cluster security group on managed nodes unless the launch template names groups.
    let node_security_group_ids = if template_groups.is_empty() {
        evidence
            .cluster
            .as_ref()
            .and_then(|c| c.cluster_security_group_id.clone())
            .into_iter()
            .collect()
    } else {
        template_groups.clone()
    };
    let mut wanted: Vec<String> = node_security_group_ids.clone();
    wanted.extend(cluster_groups);
    wanted.extend(template_groups);
    wanted.extend(
        endpoints
            .iter()
            .flat_map(|e| e.security_group_ids.iter().cloned()),
    );
    wanted.sort();
    wanted.dedup();
    let security_groups = if wanted.is_empty() {
        Vec::new()
    } else {
        security_groups(clients, &wanted, calls).await?
    };

    let mut cluster_node_subnets: BTreeSet<String> = evidence
        .cluster
        .as_ref()
        .map(|c| c.subnet_ids.iter().cloned().collect())
        .unwrap_or_default();
    cluster_node_subnets.extend(instances.values().filter_map(|i| i.subnet_id.clone()));
    Ok(Some((
        NetworkFacts {
            subnet_ids,
            vpc,
            subnets,
            route_tables,
            nat_gateways,
            endpoints,
            network_acls,
            security_groups,
            node_security_group_ids,
            cluster_node_subnets,
        },
        instances,
    )))
}

async fn describe_subnets(
    clients: &AwsClients,
    vpc: Option<&str>,
    ids: &[String],
    calls: &mut CallLog,
) -> Result<Vec<SubnetFacts>, AwsError> {
    let mut request = clients.ec2.describe_subnets();
    if let Some(vpc) = vpc {
        request = request.filters(filter("vpc-id", [vpc]));
    }
    if !ids.is_empty() {
        request = request.filters(filter("subnet-id", ids.iter().cloned()));
    }
    let mut pages = request.into_paginator().send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        calls.record("ec2:DescribeSubnets");
        let page = page.op("ec2:DescribeSubnets")?;
        found.extend(page.subnets().iter().map(|subnet| SubnetFacts {
            id: subnet.subnet_id().unwrap_or_default().to_string(),
            vpc_id: subnet.vpc_id().unwrap_or_default().to_string(),
            availability_zone: subnet.availability_zone().unwrap_or_default().to_string(),
            cidr: subnet.cidr_block().unwrap_or_default().to_string(),
            available_ips: subnet.available_ip_address_count().unwrap_or(0),
            map_public_ip_on_launch: subnet.map_public_ip_on_launch().unwrap_or(false),
            tags: ec2_tags(subnet.tags()),
        }));
    }
    Ok(found)
}

async fn vpc_facts(
    clients: &AwsClients,
    vpc_id: &str,
    calls: &mut CallLog,
) -> Result<VpcFacts, AwsError> {
    calls.record("ec2:DescribeVpcs");
    let described = clients
        .ec2
        .describe_vpcs()
        .vpc_ids(vpc_id)
        .send()
        .await
        .op("ec2:DescribeVpcs")?;
    let vpc = described.vpcs().first();
    let mut facts = VpcFacts {
        id: vpc_id.to_string(),
        cidr_blocks: vpc
            .map(|v| {
                v.cidr_block_association_set()
                    .iter()
                    .filter_map(|a| a.cidr_block())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|list| !list.is_empty())
            .or_else(|| {
                vpc.and_then(|v| v.cidr_block())
                    .map(|c| vec![c.to_string()])
            })
            .unwrap_or_default(),
        dhcp_options_id: vpc.and_then(|v| v.dhcp_options_id()).map(str::to_string),
        tags: vpc.map(|v| ec2_tags(v.tags())).unwrap_or_default(),
        ..VpcFacts::default()
    };
    for attribute in [
        VpcAttributeName::EnableDnsSupport,
        VpcAttributeName::EnableDnsHostnames,
    ] {
        calls.record("ec2:DescribeVpcAttribute");
        let output = clients
            .ec2
            .describe_vpc_attribute()
            .vpc_id(vpc_id)
            .attribute(attribute.clone())
            .send()
            .await
            .op("ec2:DescribeVpcAttribute")?;
        match attribute {
            VpcAttributeName::EnableDnsSupport => {
                facts.dns_support = output.enable_dns_support().and_then(|v| v.value())
            }
            _ => facts.dns_hostnames = output.enable_dns_hostnames().and_then(|v| v.value()),
        }
    }
    match facts.dhcp_options_id.as_deref() {
        // "default" means no options set: instances use AmazonProvidedDNS.
        Some("default") | None => {
            facts.domain_name_servers = Some(vec!["AmazonProvidedDNS".into()])
        }
        Some(options) => {
            calls.record("ec2:DescribeDhcpOptions");
            let output = clients
                .ec2
                .describe_dhcp_options()
                .dhcp_options_ids(options)
                .send()
                .await
                .op("ec2:DescribeDhcpOptions")?;
            let servers: Vec<String> = output
                .dhcp_options()
                .iter()
                .flat_map(|o| o.dhcp_configurations())
                .filter(|c| c.key() == Some("domain-name-servers"))
                .flat_map(|c| c.values())
                .filter_map(|v| v.value())
                .map(str::to_string)
                .collect();
            facts.domain_name_servers = Some(if servers.is_empty() {
                vec!["AmazonProvidedDNS".into()]
            } else {
                servers
            });
        }
    }
    Ok(facts)
}

async fn route_tables(
    clients: &AwsClients,
    vpc: &str,
    calls: &mut CallLog,
) -> Result<Vec<RouteTableFacts>, AwsError> {
    let mut pages = clients
        .ec2
        .describe_route_tables()
        .filters(filter("vpc-id", [vpc]))
        .into_paginator()
        .send();
    let mut tables = Vec::new();
    while let Some(page) = pages.next().await {
        calls.record("ec2:DescribeRouteTables");
        let page = page.op("ec2:DescribeRouteTables")?;
        tables.extend(page.route_tables().iter().map(route_table_facts));
    }
    Ok(tables)
}

/// Pure conversion of an EC2 route table.
pub fn route_table_facts(table: &aws_sdk_ec2::types::RouteTable) -> RouteTableFacts {
    RouteTableFacts {
        id: table.route_table_id().unwrap_or_default().to_string(),
        main: table.associations().iter().any(|a| a.main() == Some(true)),
        subnet_ids: table
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id())
            .map(str::to_string)
            .collect(),
        routes: table
            .routes()
            .iter()
            .filter_map(|route| {
                let destination = route
                    .destination_cidr_block()
                    .or(route.destination_ipv6_cidr_block())
                    .or(route.destination_prefix_list_id())?;
                let target = [
                    route.nat_gateway_id(),
                    route.gateway_id(),
                    route.transit_gateway_id(),
                    route.vpc_peering_connection_id(),
                    route.egress_only_internet_gateway_id(),
                    route.network_interface_id(),
                    route.instance_id(),
                    route.local_gateway_id(),
                    route.carrier_gateway_id(),
                    route.core_network_arn(),
                ]
                .into_iter()
                .flatten()
                .next()
                .unwrap_or("unknown");
                Some(RouteFacts {
                    destination: destination.to_string(),
                    target: target.to_string(),
                    state: route
                        .state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| "active".into()),
                })
            })
            .collect(),
        tags: ec2_tags(table.tags()),
    }
}

async fn nat_gateways(
    clients: &AwsClients,
    vpc: &str,
    calls: &mut CallLog,
) -> Result<Vec<NatGatewayFacts>, AwsError> {
    let mut pages = clients
        .ec2
        .describe_nat_gateways()
        .filter(filter("vpc-id", [vpc]))
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        calls.record("ec2:DescribeNatGateways");
        let page = page.op("ec2:DescribeNatGateways")?;
        found.extend(page.nat_gateways().iter().map(|nat| {
            NatGatewayFacts {
                id: nat.nat_gateway_id().unwrap_or_default().to_string(),
                subnet_id: nat.subnet_id().unwrap_or_default().to_string(),
                state: nat
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                connectivity: nat
                    .connectivity_type()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_else(|| "public".into()),
                public_ips: nat
                    .nat_gateway_addresses()
                    .iter()
                    .filter_map(|a| a.public_ip())
                    .map(str::to_string)
                    .collect(),
            }
        }));
    }
    Ok(found)
}

async fn endpoints(
    clients: &AwsClients,
    vpc: &str,
    calls: &mut CallLog,
) -> Result<Vec<EndpointFacts>, AwsError> {
    let mut pages = clients
        .ec2
        .describe_vpc_endpoints()
        .filters(filter("vpc-id", [vpc]))
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        calls.record("ec2:DescribeVpcEndpoints");
        let page = page.op("ec2:DescribeVpcEndpoints")?;
        found.extend(page.vpc_endpoints().iter().map(|endpoint| {
            EndpointFacts {
                id: endpoint.vpc_endpoint_id().unwrap_or_default().to_string(),
                service_name: endpoint.service_name().unwrap_or_default().to_string(),
                kind: endpoint
                    .vpc_endpoint_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                state: endpoint
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                security_group_ids: endpoint
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id())
                    .map(str::to_string)
                    .collect(),
                route_table_ids: endpoint.route_table_ids().to_vec(),
                private_dns_enabled: endpoint.private_dns_enabled().unwrap_or(false),
            }
        }));
    }
    Ok(found)
}

async fn network_acls(
    clients: &AwsClients,
    vpc: &str,
    calls: &mut CallLog,
) -> Result<Vec<NetworkAclFacts>, AwsError> {
    let mut pages = clients
        .ec2
        .describe_network_acls()
        .filters(filter("vpc-id", [vpc]))
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        calls.record("ec2:DescribeNetworkAcls");
        let page = page.op("ec2:DescribeNetworkAcls")?;
        found.extend(page.network_acls().iter().map(|acl| {
            NetworkAclFacts {
                id: acl.network_acl_id().unwrap_or_default().to_string(),
                default: acl.is_default().unwrap_or(false),
                subnet_ids: acl
                    .associations()
                    .iter()
                    .filter_map(|a| a.subnet_id())
                    .map(str::to_string)
                    .collect(),
                entries: acl
                    .entries()
                    .iter()
                    .map(|entry| AclEntry {
                        rule_number: entry.rule_number().unwrap_or(32767),
                        egress: entry.egress().unwrap_or(false),
                        protocol: entry.protocol().unwrap_or("-1").to_string(),
                        action: entry
                            .rule_action()
                            .map(|a| a.as_str().to_string())
                            .unwrap_or_default(),
                        cidr: entry.cidr_block().unwrap_or("0.0.0.0/0").to_string(),
                        port_from: entry.port_range().and_then(|p| p.from()),
                        port_to: entry.port_range().and_then(|p| p.to()),
                    })
                    .collect(),
            }
        }));
    }
    Ok(found)
}

/// The groups among `ids` that exist, in one call (a `group-id` filter, unlike `GroupIds`, does
/// not fail on a deleted group).
async fn security_groups(
    clients: &AwsClients,
    ids: &[String],
    calls: &mut CallLog,
) -> Result<Vec<SecurityGroupFacts>, AwsError> {
    let mut pages = clients
        .ec2
        .describe_security_groups()
        .filters(filter("group-id", ids.iter().cloned()))
        .into_paginator()
        .send();
    let rules = |permissions: &[aws_sdk_ec2::types::IpPermission]| -> Vec<SecurityGroupRule> {
        permissions
            .iter()
            .map(|p| SecurityGroupRule {
                protocol: p.ip_protocol().unwrap_or("-1").to_string(),
                from_port: p.from_port(),
                to_port: p.to_port(),
                cidrs: p
                    .ip_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ip())
                    .map(str::to_string)
                    .collect(),
                source_groups: p
                    .user_id_group_pairs()
                    .iter()
                    .filter_map(|g| g.group_id())
                    .map(str::to_string)
                    .collect(),
            })
            .collect()
    };
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        calls.record("ec2:DescribeSecurityGroups");
        let page = page.op("ec2:DescribeSecurityGroups")?;
        found.extend(
            page.security_groups()
                .iter()
                .map(|group| SecurityGroupFacts {
                    id: group.group_id().unwrap_or_default().to_string(),
                    name: group.group_name().unwrap_or_default().to_string(),
                    ingress: rules(group.ip_permissions()),
                    egress: rules(group.ip_permissions_egress()),
                }),
        );
    }
    Ok(found)
}

fn instance_facts(instance: &aws_sdk_ec2::types::Instance) -> InstanceFacts {
    InstanceFacts {
        id: instance.instance_id().unwrap_or_default().to_string(),
        state: instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        subnet_id: instance.subnet_id().map(str::to_string),
        public_ip: instance.public_ip_address().map(str::to_string),
        security_group_ids: instance
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .map(str::to_string)
            .collect(),
    }
}

async fn describe_instance(
    clients: &AwsClients,
    id: &str,
    calls: &mut CallLog,
) -> Result<InstanceFacts, AwsError> {
    calls.record("ec2:DescribeInstances");
    let output = match clients
        .ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .op("ec2:DescribeInstances")
    {
        Err(error) if error.code.starts_with("InvalidInstanceID") => None,
        other => Some(other?),
    };
    Ok(output
        .as_ref()
        .and_then(|o| {
            o.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .next()
                .map(instance_facts)
        })
        .unwrap_or_else(|| InstanceFacts {
            id: id.into(),
            state: "missing".into(),
            subnet_id: None,
            public_ip: None,
            security_group_ids: vec![],
        }))
}

/// Running and pending instances of the cluster, by id.
async fn cluster_instances(
    clients: &AwsClients,
    cluster: &str,
    calls: &mut CallLog,
) -> Result<BTreeMap<String, InstanceFacts>, AwsError> {
    let mut pages = clients
        .ec2
        .describe_instances()
        .filters(filter(&format!("tag:{CLUSTER_TAG}"), [cluster]))
        .filters(filter("instance-state-name", ["pending", "running"]))
        .into_paginator()
        .send();
    let mut found = BTreeMap::new();
    while let Some(page) = pages.next().await {
        calls.record("ec2:DescribeInstances");
        let page = page.op("ec2:DescribeInstances")?;
        for instance in page.reservations().iter().flat_map(|r| r.instances()) {
            let facts = instance_facts(instance);
            found.insert(facts.id.clone(), facts);
        }
    }
    Ok(found)
}

async fn identity(
    clients: &AwsClients,
    cluster: &str,
    role_arn: &str,
    authentication_mode: Option<&str>,
    calls: &mut CallLog,
) -> Result<IdentityFacts, AwsError> {
    let name = role_arn.rsplit('/').next().unwrap_or(role_arn).to_string();
    calls.record("iam:GetRole");
    let described = clients
        .iam
        .get_role()
        .role_name(&name)
        .send()
        .await
        .op("iam:GetRole");
    let role_tags: Tags = described
        .as_ref()
        .ok()
        .and_then(|o| o.role())
        .map(|r| {
            r.tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let role = match described {
        Err(error) if error.is_code("NoSuchEntity") => RoleLookup::NotFound { name: name.clone() },
        Err(error) if !error.is_transient() => RoleLookup::Unreadable {
            reason: format!("{}: {}", error.code, error.message),
        },
        Err(error) => return Err(error),
        Ok(_) => {
            let mut attached = Vec::new();
            let mut pages = clients
                .iam
                .list_attached_role_policies()
                .role_name(&name)
                .into_paginator()
                .send();
            let mut unreadable = None;
            while let Some(page) = pages.next().await {
                calls.record("iam:ListAttachedRolePolicies");
                match page.op("iam:ListAttachedRolePolicies") {
                    Ok(page) => attached.extend(
                        page.attached_policies()
                            .iter()
                            .filter_map(|p| p.policy_arn())
                            .map(str::to_string),
                    ),
                    Err(error) if !error.is_transient() => {
                        unreadable = Some(format!("{}: {}", error.code, error.message));
                        break;
                    }
                    Err(error) => return Err(error),
                }
            }
            match unreadable {
                Some(reason) => RoleLookup::Unreadable { reason },
                None => RoleLookup::Found {
                    name: name.clone(),
                    attached_policy_arns: attached,
                    tags: role_tags,
                },
            }
        }
    };
    // With API_AND_CONFIG_MAP the aws-auth ConfigMap may admit the role; only API relies on
    // access entries alone.
    let access_entry = if authentication_mode == Some("API") {
        calls.record("eks:DescribeAccessEntry");
        match clients
            .eks
            .describe_access_entry()
            .cluster_name(cluster)
            .principal_arn(role_arn)
            .send()
            .await
            .op("eks:DescribeAccessEntry")
        {
            Ok(output) => AccessEntryLookup::Present {
                kind: output
                    .access_entry()
                    .and_then(|e| e.r#type())
                    .unwrap_or("STANDARD")
                    .to_string(),
            },
            Err(error) if error.is_code("ResourceNotFoundException") => AccessEntryLookup::Absent,
            Err(error) if !error.is_transient() => AccessEntryLookup::Unreadable {
                reason: format!("{}: {}", error.code, error.message),
            },
            Err(error) => return Err(error),
        }
    } else {
        AccessEntryLookup::NotApplicable
    };
    Ok(IdentityFacts {
        node_role_arn: role_arn.to_string(),
        role,
        access_entry,
    })
}
