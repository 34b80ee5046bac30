//! Collecting evidence from AWS for one incident: each Describe call once, filtered by VPC or
//! group rather than per resource, and every call counted.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::Filter;

use super::*;
use crate::aws::{AwsClients, AwsError, AwsResultExt};
use crate::intake::{LaunchOutcome, Trigger};
use crate::resolve::{CLUSTER_TAG, Target};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("nodegroup {cluster}/{nodegroup} no longer exists")]
    NodegroupGone { cluster: String, nodegroup: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Collects the evidence a trigger needs: launch evidence (activities, launch template, KMS keys)
/// for a failed launch, network evidence (subnet, routes, NAT gateways, endpoints) for a launched
/// instance.
pub async fn collect(
    clients: &AwsClients,
    trigger: &Trigger,
    target: Target,
    mut calls: CallLog,
) -> Result<Evidence, CollectError> {
    let nodegroup = describe_nodegroup(clients, &target, &mut calls).await?;
    let mut group = target.group;
    let mut evidence = Evidence {
        trigger: trigger.clone(),
        nodegroup,
        group: group.clone(),
        activities: Vec::new(),
        launch_template: None,
        keys: Vec::new(),
        network: None,
        calls: CallLog::default(),
    };
    match trigger.outcome {
        LaunchOutcome::Unsuccessful => {
            evidence.activities = scaling_activities(clients, &group.name, &mut calls).await?;
            let template = evidence
                .nodegroup
                .launch_template
                .clone()
                .or_else(|| group.launch_template.clone());
            if let Some(template) = template {
                let facts = launch_template(clients, &template, &mut calls).await?;
                if let Some(facts) = &facts {
                    evidence.keys = keys(clients, facts, &trigger.account, &mut calls).await?;
                }
                evidence.launch_template = facts;
            }
        }
        LaunchOutcome::Successful => {
            if let Some((network, instance_subnets)) =
                network(clients, trigger, &evidence.nodegroup, &mut calls).await?
            {
                for instance in &mut group.instances {
                    instance.subnet_id = instance_subnets.get(&instance.id).cloned();
                }
                evidence.group = group;
                evidence.network = Some(network);
            }
        }
    }
    evidence.calls = calls;
    Ok(evidence)
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
    }
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
) -> Result<Option<LaunchTemplateFacts>, AwsError> {
    let version = template
        .version
        .clone()
        .unwrap_or_else(|| "$Default".into());
    let mut request = clients
        .ec2
        .describe_launch_template_versions()
        .versions(&version);
    request = match (&template.id, &template.name) {
        (Some(id), _) => request.launch_template_id(id),
        (None, Some(name)) => request.launch_template_name(name),
        (None, None) => return Ok(None),
    };
    calls.record("ec2:DescribeLaunchTemplateVersions");
    let output = match request
        .send()
        .await
        .op("ec2:DescribeLaunchTemplateVersions")
    {
        Err(error) if error.code.starts_with("InvalidLaunchTemplate") => return Ok(None),
        other => other?,
    };
    let Some(found) = output.launch_template_versions().first() else {
        return Ok(None);
    };
    let volumes = found
        .launch_template_data()
        .map(|data| data.block_device_mappings())
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
    Ok(Some(LaunchTemplateFacts {
        id: found.launch_template_id().unwrap_or_default().to_string(),
        version: found
            .version_number()
            .map(|v| v.to_string())
            .unwrap_or(version),
        volumes,
    }))
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
        let state = metadata
            .key_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "Unknown".into());
        let manager = metadata
            .key_manager()
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| "CUSTOMER".into());
        let mut facts = KeyMetadata {
            arn: arn.clone(),
            key_id: metadata.key_id().to_string(),
            account: owner.clone(),
            state,
            manager,
            policy: None,
            policy_unreadable: None,
        };
        if facts.state == "Enabled" && facts.is_customer_managed() {
            if owner == account {
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

/// Network evidence for the subnet the trigger's instance launched into; also returns the subnet
/// of every running instance of the cluster, by instance id.
async fn network(
    clients: &AwsClients,
    trigger: &Trigger,
    nodegroup: &NodegroupFacts,
    calls: &mut CallLog,
) -> Result<Option<(NetworkFacts, BTreeMap<String, String>)>, AwsError> {
    let subnet_id = match (&trigger.subnet_id, &trigger.instance_id) {
        (Some(subnet), _) => subnet.clone(),
        (None, Some(instance)) => {
            calls.record("ec2:DescribeInstances");
            let output = clients
                .ec2
                .describe_instances()
                .instance_ids(instance)
                .send()
                .await
                .op("ec2:DescribeInstances")?;
            match output
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find_map(|i| i.subnet_id())
            {
                Some(subnet) => subnet.to_string(),
                None => return Ok(None),
            }
        }
        (None, None) => return Ok(None),
    };

    calls.record("eks:DescribeCluster");
    let cluster = clients
        .eks
        .describe_cluster()
        .name(&nodegroup.cluster)
        .send()
        .await
        .op("eks:DescribeCluster")?;
    let vpc_config = cluster.cluster().and_then(|c| c.resources_vpc_config());
    let cluster_subnets: Vec<String> = vpc_config
        .map(|v| v.subnet_ids().to_vec())
        .unwrap_or_default();
    let cluster_vpc = vpc_config.and_then(|v| v.vpc_id()).map(str::to_string);

    let mut subnets = match &cluster_vpc {
        Some(vpc) => describe_subnets(clients, Some(vpc), None, calls).await?,
        None => Vec::new(),
    };
    let vpc_id = match subnets.iter().find(|(s, _)| s.id == subnet_id) {
        Some((_, vpc)) => vpc.clone(),
        None => {
            // The instance's subnet is not in the cluster's VPC: look at its own VPC instead.
            let own = describe_subnets(clients, None, Some(&subnet_id), calls).await?;
            let Some((_, vpc)) = own.into_iter().next() else {
                return Ok(None);
            };
            subnets = describe_subnets(clients, Some(&vpc), None, calls).await?;
            vpc
        }
    };

    let route_tables = route_tables(clients, &vpc_id, calls).await?;
    let nat_gateways = nat_gateways(clients, &vpc_id, calls).await?;
    let endpoints = endpoints(clients, &vpc_id, calls).await?;
    let instance_subnets = cluster_instance_subnets(clients, &nodegroup.cluster, calls).await?;

    let mut cluster_node_subnets: BTreeSet<String> = cluster_subnets.into_iter().collect();
    cluster_node_subnets.extend(instance_subnets.values().cloned());
    Ok(Some((
        NetworkFacts {
            subnet_id,
            vpc_id,
            subnets: subnets.into_iter().map(|(s, _)| s).collect(),
            route_tables,
            nat_gateways,
            endpoints,
            cluster_node_subnets,
        },
        instance_subnets,
    )))
}

async fn describe_subnets(
    clients: &AwsClients,
    vpc: Option<&str>,
    subnet: Option<&str>,
    calls: &mut CallLog,
) -> Result<Vec<(SubnetFacts, String)>, AwsError> {
    let mut request = clients.ec2.describe_subnets();
    if let Some(vpc) = vpc {
        request = request.filters(filter("vpc-id", [vpc]));
    }
    if let Some(subnet) = subnet {
        request = request.subnet_ids(subnet);
    }
    let mut pages = request.into_paginator().send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        calls.record("ec2:DescribeSubnets");
        let page = match page.op("ec2:DescribeSubnets") {
            Err(error) if error.code == "InvalidSubnetID.NotFound" => break,
            other => other?,
        };
        for subnet in page.subnets() {
            found.push((
                SubnetFacts {
                    id: subnet.subnet_id().unwrap_or_default().to_string(),
                    availability_zone: subnet.availability_zone().unwrap_or_default().to_string(),
                    cidr: subnet.cidr_block().unwrap_or_default().to_string(),
                    available_ips: subnet.available_ip_address_count().unwrap_or(0),
                    map_public_ip_on_launch: subnet.map_public_ip_on_launch().unwrap_or(false),
                },
                subnet.vpc_id().unwrap_or_default().to_string(),
            ));
        }
    }
    Ok(found)
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
            }
        }));
    }
    Ok(found)
}

/// Running and pending instances of the cluster, by id, with their subnets.
async fn cluster_instance_subnets(
    clients: &AwsClients,
    cluster: &str,
    calls: &mut CallLog,
) -> Result<BTreeMap<String, String>, AwsError> {
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
            if let (Some(id), Some(subnet)) = (instance.instance_id(), instance.subnet_id()) {
                found.insert(id.to_string(), subnet.to_string());
            }
        }
    }
    Ok(found)
}
