//! The nodegroup, its Auto Scaling group and recent activities, the cluster, and the node role
//! with its access entry.

use super::*;

pub(super) async fn describe_nodegroup(
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
        version: nodegroup.version().map(str::to_string),
        release_version: nodegroup.release_version().map(str::to_string),
        capacity_type: nodegroup.capacity_type().map(|c| c.as_str().to_string()),
        disk_size: nodegroup.disk_size(),
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
        taints: nodegroup
            .taints()
            .iter()
            .map(|taint| NodegroupTaint {
                key: taint.key().unwrap_or_default().to_string(),
                value: taint.value().map(str::to_string),
                effect: taint
                    .effect()
                    .map(|e| e.as_str().to_string())
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

pub(super) async fn describe_group(
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

pub(super) async fn describe_cluster(
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
            version: cluster.version().map(str::to_string),
            role_arn: cluster.role_arn().map(str::to_string),
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
            updates_in_progress: None,
            endpoint: cluster.endpoint().map(str::to_string),
            certificate_authority: cluster
                .certificate_authority()
                .and_then(|ca| ca.data())
                .map(str::to_string),
        }
    }))
}

/// How many of a cluster's updates are described: a cluster keeps every update it ever had, and
/// one in progress is among the newest.
const UPDATES_DESCRIBED: usize = 5;

/// The cluster's updates in progress: ListUpdates, then DescribeUpdate on the last
/// [`UPDATES_DESCRIBED`] ids it lists. `None` when the list could not be read (denied): the
/// status check then rests on the cluster's status alone.
pub(super) async fn cluster_updates(
    clients: &AwsClients,
    cluster: &str,
    calls: &mut CallLog,
) -> Result<Option<Vec<ClusterUpdate>>, AwsError> {
    calls.record("eks:ListUpdates");
    let listed = match clients
        .eks
        .list_updates()
        .name(cluster)
        .send()
        .await
        .op("eks:ListUpdates")
    {
        Ok(listed) => listed,
        Err(error) if !error.is_transient() => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut in_progress = Vec::new();
    for id in listed.update_ids().iter().rev().take(UPDATES_DESCRIBED) {
        calls.record("eks:DescribeUpdate");
        let described = match clients
            .eks
            .describe_update()
            .name(cluster)
            .update_id(id)
            .send()
            .await
            .op("eks:DescribeUpdate")
        {
            Ok(described) => described,
            Err(error) if !error.is_transient() => return Ok(None),
            Err(error) => return Err(error),
        };
        if let Some(update) = described.update()
            && update.status() == Some(&aws_sdk_eks::types::UpdateStatus::InProgress)
        {
            in_progress.push(ClusterUpdate {
                id: id.clone(),
                kind: update
                    .r#type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                created_at: update.created_at().map(|at| at.to_string()),
            });
        }
    }
    Ok(Some(in_progress))
}

pub(super) async fn scaling_activities(
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

/// IAM returns policy documents URL-encoded (RFC 3986); a document that is already JSON is kept.
fn decode_policy_document(document: &str) -> String {
    if document.trim_start().starts_with('{') {
        return document.to_string();
    }
    percent_encoding::percent_decode_str(document)
        .decode_utf8_lossy()
        .into_owned()
}

/// A role as IAM shows it: GetRole (its tags and trust policy) and its attached policies; a
/// denied call makes it unreadable, not absent.
pub(super) async fn role_lookup(
    clients: &AwsClients,
    role_arn: &str,
    calls: &mut CallLog,
) -> Result<RoleLookup, AwsError> {
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
    let trust_policy = described
        .as_ref()
        .ok()
        .and_then(|o| o.role())
        .and_then(|r| r.assume_role_policy_document())
        .map(decode_policy_document);
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
                    trust_policy,
                },
            }
        }
    };
    Ok(role)
}

pub(super) async fn identity(
    clients: &AwsClients,
    cluster: &str,
    role_arn: &str,
    authentication_mode: Option<&str>,
    calls: &mut CallLog,
) -> Result<IdentityFacts, AwsError> {
    let role = role_lookup(clients, role_arn, calls).await?;
    // With API_AND_CONFIG_MAP the aws-auth ConfigMap may admit the role; only API relies on
    // access entries alone.
    let access_entry = if authentication_mode == Some("API") {
        access_entry(clients, cluster, role_arn, calls).await?
    } else {
        AccessEntryLookup::NotApplicable
    };
    Ok(IdentityFacts {
        node_role_arn: role_arn.to_string(),
        role,
        access_entry,
        instance_profile: None,
    })
}

/// The instance profile the Auto Scaling group's launch template gives its instances, and the
/// roles in it. A denied or failed read makes it unreadable, never absent.
pub(super) async fn instance_profile(
    clients: &AwsClients,
    template: &TemplateRef,
    calls: &mut CallLog,
) -> Result<ProfileLookup, AwsError> {
    let version = template
        .version
        .clone()
        .unwrap_or_else(|| "$Default".into());
    let request = clients
        .ec2
        .describe_launch_template_versions()
        .versions(&version);
    let (request, reference) = match (&template.id, &template.name) {
        (Some(id), _) => (request.launch_template_id(id), id),
        (None, Some(name)) => (request.launch_template_name(name), name),
        (None, None) => {
            return Ok(ProfileLookup::Unreadable {
                reason: "the Auto Scaling group names its launch template by neither id nor name"
                    .into(),
            });
        }
    };
    let label = format!("{reference} version {version}");
    calls.record("ec2:DescribeLaunchTemplateVersions");
    let described = match request
        .send()
        .await
        .op("ec2:DescribeLaunchTemplateVersions")
    {
        Ok(output) => output,
        Err(error) if !error.is_transient() => {
            return Ok(ProfileLookup::Unreadable {
                reason: format!("{label}: {}: {}", error.code, error.message),
            });
        }
        Err(error) => return Err(error),
    };
    let profile = described
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .and_then(|d| d.iam_instance_profile())
        .and_then(|p| p.name().or(p.arn()))
        .map(|named| named.rsplit('/').next().unwrap_or(named).to_string());
    let Some(name) = profile else {
        return Ok(ProfileLookup::NotInTemplate { template: label });
    };
    calls.record("iam:GetInstanceProfile");
    match clients
        .iam
        .get_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await
        .op("iam:GetInstanceProfile")
    {
        Ok(output) => Ok(ProfileLookup::Found {
            template: label,
            role_arns: output
                .instance_profile()
                .map(|p| p.roles().iter().map(|r| r.arn().to_string()).collect())
                .unwrap_or_default(),
            tags: output
                .instance_profile()
                .map(|p| {
                    p.tags()
                        .iter()
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            name,
        }),
        Err(error) if error.is_code("NoSuchEntity") => Ok(ProfileLookup::NotFound {
            template: label,
            name,
        }),
        Err(error) if !error.is_transient() => Ok(ProfileLookup::Unreadable {
            reason: format!(
                "iam:GetInstanceProfile {name}: {}: {}",
                error.code, error.message
            ),
        }),
        Err(error) => Err(error),
    }
}

/// The node role's access entry: DescribeAccessEntry.
pub(super) async fn access_entry(
    clients: &AwsClients,
    cluster: &str,
    role_arn: &str,
    calls: &mut CallLog,
) -> Result<AccessEntryLookup, AwsError> {
    calls.record("eks:DescribeAccessEntry");
    Ok(
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
        },
    )
}
