//! What each check examined: the facts a passing check shows, or why it was skipped.

use super::{CheckId, Skip};
use crate::core::checks::Fact;
use crate::core::evidence::{
    AccessEntryLookup, Evidence, ImageLookup, KeyLookup, NetworkFacts, ProfileLookup, RoleLookup,
    TemplateLookup,
};
use crate::core::trigger::{LaunchOutcome, TriggerKind};

/// What a check looked at when it found nothing, or why it could not look.
pub(super) fn examined(check: CheckId, evidence: &Evidence) -> Result<Vec<Fact>, Skip> {
    let nodegroup = format!("nodegroup {}", evidence.nodegroup.name);
    match check {
        CheckId::ClusterStatus => {
            let cluster = evidence.cluster.as_ref().ok_or_else(cluster_not_collected)?;
            let updates = match &cluster.updates_in_progress {
                Some(_) => ", no update in progress",
                None => "",
            };
            Ok(vec![Fact::new(
                format!("cluster {}", cluster.name),
                format!("status {}{updates}", cluster.status),
            )])
        }
        CheckId::NodegroupStatus => Ok(vec![Fact::new(
            nodegroup.clone(),
            format!("status {}", evidence.nodegroup.status),
        )]),
        CheckId::S3EndpointPolicy => {
            let network = network(evidence)?;
            let s3 = format!("com.amazonaws.{}.s3", evidence.trigger.region);
            let gateways: Vec<Fact> = network
                .endpoints
                .iter()
                .filter(|e| e.service_name == s3 && e.kind == "Gateway")
                .map(|e| {
                    let policy = if e.policy.is_some() { "a policy" } else { "no policy" };
                    Fact::new(&e.id, format!("S3 gateway endpoint with {policy}"))
                })
                .collect();
            if gateways.is_empty() {
                return Err(Skip::NotApplicable(
                    "the VPC has no S3 gateway endpoint: S3 traffic takes the default route".into(),
                ));
            }
            Ok(gateways)
        }
        CheckId::VersionSkew | CheckId::AmiType => {
            let cluster = evidence.cluster.as_ref().ok_or_else(cluster_not_collected)?;
            let control_plane = cluster.version.as_deref().ok_or_else(|| {
                Skip::NotCollected(format!("cluster {} reports no version", cluster.name))
            })?;
            let nodes = match (check, &evidence.nodegroup.ami_type, &evidence.nodegroup.version) {
                (CheckId::AmiType, Some(ami_type), _) if ami_type != "CUSTOM" => ami_type.clone(),
                (CheckId::VersionSkew, Some(ami_type), Some(version)) if ami_type != "CUSTOM" => {
                    format!("version {version}")
                }
                _ => match &evidence.image {
                    Some(ImageLookup::Found {
                        name: Some(name), ..
                    }) if crate::core::checks::versions::eks_ami_family(name).is_some() => format!("AMI {name}"),
                    _ => {
                        return Err(Skip::NotApplicable(
                            "a custom AMI not built by EKS: its family and version are unknown".into(),
                        ));
                    }
                },
            };
            Ok(vec![
                Fact::new(format!("cluster {}", cluster.name), format!("version {control_plane}")),
                Fact::new(nodegroup.clone(), nodes),
            ])
        }
        CheckId::NodegroupHealth => Ok(vec![Fact::new(
            nodegroup,
            format!(
                "status {}, {} health issue(s)",
                evidence.nodegroup.status,
                evidence.nodegroup.health_issues.len()
            ),
        )]),
        CheckId::NodeRolePolicies => match node_role(evidence)? {
            RoleLookup::Found {
                name,
                attached_policy_arns,
                ..
            } => Ok(vec![Fact::new(
                format!("role {name}"),
                format!("{} policies attached", attached_policy_arns.len()),
            )]),
            RoleLookup::NotFound { name } => Ok(vec![Fact::new(name, "not found")]),
            RoleLookup::Unreadable { reason } => Err(Skip::PermissionDenied(format!(
                "iam:GetRole or iam:ListAttachedRolePolicies: {reason}"
            ))),
        },
        CheckId::ClusterRole => match &evidence.cluster_role {
            Some(RoleLookup::Found { name, .. }) => Ok(vec![Fact::new(
                format!("role {name}"),
                "trusts EKS, AmazonEKSClusterPolicy attached",
            )]),
            Some(RoleLookup::NotFound { name }) => Ok(vec![Fact::new(name, "not found")]),
            Some(RoleLookup::Unreadable { reason }) => {
                Err(Skip::PermissionDenied(format!("iam:GetRole: {reason}")))
            }
            None => Err(identity_not_collected()),
        },
        CheckId::NodeRoleTrust => match node_role(evidence)? {
            RoleLookup::Found {
                name,
                trust_policy: Some(_),
                ..
            } => Ok(vec![Fact::new(format!("role {name}"), "trust policy read")]),
            RoleLookup::Found { name, .. } => Err(Skip::NotCollected(format!(
                "GetRole returned no trust policy for {name}"
            ))),
            RoleLookup::NotFound { name } => Err(Skip::NotApplicable(format!(
                "role {name} does not exist (see iam.node_role_policies)"
            ))),
            RoleLookup::Unreadable { reason } => {
                Err(Skip::PermissionDenied(format!("iam:GetRole: {reason}")))
            }
        },
        CheckId::InstanceProfile => {
            let identity = evidence.identity.as_ref().ok_or_else(identity_not_collected)?;
            match (&identity.instance_profile, &identity.role) {
                (_, RoleLookup::NotFound { name }) => Err(Skip::NotApplicable(format!(
                    "role {name} does not exist (see iam.node_role_policies)"
                ))),
                (Some(ProfileLookup::Found { name, template, .. }), _) => Ok(vec![Fact::new(
                    format!("instance profile {name}"),
                    format!("holds the node role (launch template {template})"),
                )]),
                (Some(ProfileLookup::Unreadable { reason }), _) => {
                    Err(Skip::PermissionDenied(reason.clone()))
                }
                (Some(_), _) => Ok(Vec::new()),
                (None, _) => Err(Skip::NotApplicable(
                    "the Auto Scaling group names no launch template".into(),
                )),
            }
        }
        CheckId::NodeAccessEntry => {
            let identity = evidence.identity.as_ref().ok_or_else(identity_not_collected)?;
            if crate::core::checks::kubernetes::authentication_mode(evidence) != "API" {
                return Err(Skip::NotApplicable(
                    "the cluster also admits nodes through the aws-auth ConfigMap (see k8s.aws_auth)".into(),
                ));
            }
            match &identity.access_entry {
                AccessEntryLookup::Present { kind } => Ok(vec![Fact::new(
                    &identity.node_role_arn,
                    format!("access entry of type {kind}"),
                )]),
                AccessEntryLookup::Absent => Ok(Vec::new()),
                AccessEntryLookup::NotApplicable => Err(Skip::NotApplicable(
                    "the cluster also admits nodes through the aws-auth ConfigMap, which lives inside the cluster"
                        .into(),
                )),
                AccessEntryLookup::Unreadable { reason } => Err(Skip::PermissionDenied(format!(
                    "eks:DescribeAccessEntry: {reason}"
                ))),
            }
        }
        CheckId::VolumeKeys => {
            let template = launch_template(evidence)?;
            if evidence.keys.is_empty() {
                return Err(Skip::NotApplicable(format!(
                    "launch template {} encrypts no volume with a KMS key it names",
                    template.id
                )));
            }
            evidence
                .keys
                .iter()
                .map(|key| match &key.lookup {
                    KeyLookup::Found(metadata) => Ok(Fact::new(
                        &metadata.arn,
                        format!("{}, policy read: {}", metadata.state, metadata.policy.is_some()),
                    )),
                    KeyLookup::NotFound { reason } => Ok(Fact::new(&key.reference, reason)),
                    KeyLookup::Unreadable { reason } => Err(Skip::PermissionDenied(format!(
                        "kms:DescribeKey on {}: {reason}",
                        key.reference
                    ))),
                })
                .collect()
        }
        CheckId::LaunchActivity => match &evidence.trigger.kind {
            TriggerKind::Launch(launch) if launch.outcome == LaunchOutcome::Unsuccessful => {
                Ok(vec![Fact::new(&launch.asg_name, "failed launch")])
            }
            _ => Err(Skip::NotApplicable("no failed launch to read".into())),
        },
        CheckId::LaunchTemplate => match &evidence.launch_template {
            Some(TemplateLookup::Found(template)) => Ok(vec![Fact::new(
                format!("launch template {} version {}", template.id, template.version),
                format!("{} security group(s)", template.security_group_ids.len()),
            )]),
            Some(TemplateLookup::NotFound { reference, reason }) => {
                Ok(vec![Fact::new(reference, reason)])
            }
            None => Err(no_launch_template(evidence)),
        },
        CheckId::LaunchAmi => match &evidence.image {
            Some(ImageLookup::Found {
                image_id, state, ..
            }) => {
                Ok(vec![Fact::new(image_id, format!("state {state}"))])
            }
            Some(ImageLookup::NotFound { image_id }) => Ok(vec![Fact::new(image_id, "not found")]),
            None => Err(match evidence.launch_template_facts() {
                Some(_) => Skip::NotApplicable(
                    "the launch template names no AMI: EKS chooses it from the nodegroup's AMI type".into(),
                ),
                None => no_launch_template(evidence),
            }),
        },
        CheckId::UserData => {
            let template = launch_template(evidence)?;
            match &template.image_id {
                Some(image) => Ok(vec![Fact::new(
                    format!("launch template {}", template.id),
                    format!(
                        "custom AMI {image}, user data {}",
                        if template.user_data.is_some() { "present" } else { "absent" }
                    ),
                )]),
                None => Err(Skip::NotApplicable(
                    "no custom AMI: EKS writes the bootstrap user data itself".into(),
                )),
            }
        }
        CheckId::RootVolume => match crate::core::checks::root_volume::root_volume(evidence) {
            Some(root) => Ok(vec![Fact::new(root.source, format!("{} GiB", root.size_gib))]),
            None if evidence.launch_template_facts().is_some() => Err(Skip::NotApplicable(
                "the launch template keeps the AMI's root volume size".into(),
            )),
            None => Err(no_launch_template(evidence)),
        },
        CheckId::InstanceState => match &evidence.instance {
            Some(instance) => Ok(vec![Fact::new(
                &instance.id,
                format!("state {}", instance.state),
            )]),
            None => Err(Skip::NotApplicable(
                "the trigger names no instance (a launch or join check does; `diagnose --instance`)".into(),
            )),
        },
        CheckId::Imds => {
            let template = launch_template(evidence)?;
            match &template.metadata_options {
                Some(options) => Ok(vec![Fact::new(
                    format!("launch template {}", template.id),
                    format!(
                        "HttpTokens {}, hop limit {}",
                        options.http_tokens.as_deref().unwrap_or("default"),
                        options.hop_limit.map_or("default".to_string(), |h| h.to_string())
                    ),
                )]),
                None => Err(Skip::NotApplicable(
                    "the launch template leaves the metadata options to the AMI and EKS".into(),
                )),
            }
        }
        CheckId::Subnets | CheckId::SubnetAddresses => {
            let network = network(evidence)?;
            Ok(network
                .subnet_ids
                .iter()
                .filter_map(|id| network.subnet(id))
                .map(|subnet| {
                    Fact::new(
                        &subnet.id,
                        format!(
                            "VPC {}, {} free addresses",
                            subnet.vpc_id, subnet.available_ips
                        ),
                    )
                })
                .collect())
        }
        CheckId::VpcDns => {
            let vpc = &network(evidence)?.vpc;
            Ok(vec![Fact::new(
                &vpc.id,
                format!(
                    "DNS support {:?}, hostnames {:?}, name servers {:?}",
                    vpc.dns_support, vpc.dns_hostnames, vpc.domain_name_servers
                ),
            )])
        }
        CheckId::DefaultRoute => {
            let network = network(evidence)?;
            Ok(network
                .subnet_ids
                .iter()
                .map(|subnet| {
                    let route = network
                        .route_table_for(subnet)
                        .and_then(|table| {
                            table
                                .routes
                                .iter()
                                .find(|route| route.is_default_ipv4())
                                .map(|route| format!("{}: 0.0.0.0/0 → {}", table.id, route.target))
                        })
                        .unwrap_or_else(|| "no default route; private join".into());
                    Fact::new(subnet, route)
                })
                .collect())
        }
        CheckId::VpcEndpoints => {
            let network = network(evidence)?;
            Ok(network
                .endpoints
                .iter()
                .map(|endpoint| {
                    Fact::new(
                        &endpoint.id,
                        format!("{} ({}), {}", endpoint.service_name, endpoint.kind, endpoint.state),
                    )
                })
                .collect())
        }
        CheckId::PublicEndpointAccess => {
            network(evidence)?;
            let cluster = evidence.cluster.as_ref().ok_or_else(cluster_not_collected)?;
            Ok(vec![Fact::new(
                format!("cluster {}", cluster.name),
                format!(
                    "public {}, private {}, public CIDRs {}",
                    cluster.endpoint_public_access,
                    cluster.endpoint_private_access,
                    cluster.public_access_cidrs.join(", ")
                ),
            )])
        }
        CheckId::SecurityGroups => {
            let network = network(evidence)?;
            Ok(network
                .node_security_group_ids
                .iter()
                .map(|group| Fact::new(group, "node security group"))
                .collect())
        }
        CheckId::AwsAuth
        | CheckId::AwsNodeTolerations
        | CheckId::NodeCsr
        | CheckId::NodeRegistered
        | CheckId::NodeReady
        | CheckId::BootLog => super::examined_cluster::examined(check, evidence),
        CheckId::NetworkAcls => {
            let network = network(evidence)?;
            Ok(network
                .subnet_ids
                .iter()
                .filter_map(|subnet| {
                    network
                        .network_acl_for(subnet)
                        .map(|acl| Fact::new(subnet, format!("network ACL {}", acl.id)))
                })
                .collect())
        }
    }
}

fn network(evidence: &Evidence) -> Result<&NetworkFacts, Skip> {
    evidence.network.as_ref().ok_or_else(|| {
        Skip::NotCollected(
            "the VPC is read for successful launches, health and join checks, preflight and `diagnose`; \
             this trigger's failure text and launch template were enough"
                .into(),
        )
    })
}

fn identity_not_collected() -> Skip {
    Skip::NotCollected(
        "the node role is read for health and join checks, preflight, `diagnose`, and failed launches \
         no launch evidence explains"
            .into(),
    )
}

fn cluster_not_collected() -> Skip {
    Skip::NotCollected("DescribeCluster is not called for this trigger".into())
}

fn node_role(evidence: &Evidence) -> Result<&RoleLookup, Skip> {
    match &evidence.identity {
        Some(identity) => Ok(&identity.role),
        None if evidence.nodegroup.node_role.is_none() => Err(Skip::NotApplicable(
            "the nodegroup names no node role".into(),
        )),
        None => Err(identity_not_collected()),
    }
}

fn launch_template(
    evidence: &Evidence,
) -> Result<&crate::core::evidence::LaunchTemplateFacts, Skip> {
    evidence
        .launch_template_facts()
        .ok_or_else(|| no_launch_template(evidence))
}

fn no_launch_template(evidence: &Evidence) -> Skip {
    if evidence.nodegroup.launch_template.is_none() {
        Skip::NotApplicable("the nodegroup uses no launch template of its own".into())
    } else if matches!(
        evidence.launch_template,
        Some(TemplateLookup::NotFound { .. })
    ) {
        Skip::NotApplicable("the launch template was not found (see launch.template)".into())
    } else {
        Skip::NotCollected(
            "the launch template is read for failed launches, health and join checks, preflight and `diagnose`"
                .into(),
        )
    }
}
