//! Where nodes run: subnets, the VPC with its DNS and DHCP settings, route tables, NAT gateways,
//! endpoints, network ACLs, security groups and the instances, each read once per VPC.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::VpcAttributeName;

use super::*;

/// Network evidence for the examined subnets, and the cluster's running instances by id.
pub(super) async fn network_facts(
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
    // The instance's own groups, when the trigger names one that runs; otherwise EKS puts the
    // cluster security group on managed nodes unless the launch template names groups.
    let instance_groups: Vec<String> = super::instance_of(&evidence.trigger)
        .and_then(|id| instances.get(&id))
        .map(|instance| instance.security_group_ids.clone())
        .unwrap_or_default();
    let node_security_group_ids = if !instance_groups.is_empty() {
        instance_groups
    } else if template_groups.is_empty() {
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

pub(super) async fn describe_subnets(
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

pub(super) async fn vpc_facts(
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

pub(super) async fn route_tables(
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

pub(super) async fn nat_gateways(
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

pub(super) async fn endpoints(
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
                policy: endpoint.policy_document().map(str::to_string),
                tags: ec2_tags(endpoint.tags()),
            }
        }));
    }
    Ok(found)
}

pub(super) async fn network_acls(
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
pub(super) async fn security_groups(
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

pub(super) fn instance_facts(instance: &aws_sdk_ec2::types::Instance) -> InstanceFacts {
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
        launched_at: instance
            .launch_time()
            .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at.secs()).ok()),
        availability_zone: instance
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_string),
        private_dns_name: instance
            .private_dns_name()
            .filter(|name| !name.is_empty())
            .map(str::to_string),
    }
}

pub async fn describe_instance(
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
            launched_at: None,
            availability_zone: None,
            private_dns_name: None,
        }))
}

/// Running and pending instances of the cluster, by id.
pub(super) async fn cluster_instances(
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
