//! Network rules: where the node subnet's traffic goes (routes, NAT gateways, endpoints), whether
//! names resolve (VPC DNS, DHCP options), and whether the subnet can hold and address a node.

use std::net::Ipv4Addr;

use super::endpoints;
use super::ip::{Cidr, cidr_contains};
use super::{Cause, Fact, Finding, PRIVATE_JOIN_SERVICES, Subject};
use crate::core::evidence::{ClusterFacts, Evidence, NetworkFacts, RouteFacts, SubnetFacts};

pub fn findings(evidence: &Evidence, network: &NetworkFacts) -> Vec<Finding> {
    let mut findings = vpc_findings(evidence, network);
    for subnet_id in &network.subnet_ids {
        let Some(subnet) = network.subnet(subnet_id) else {
            findings.push(Finding {
                cause: Cause::SubnetNotFound,
                blocking: true,
                summary: format!("subnet {subnet_id} does not exist"),
                explanation: format!(
                    "The nodegroup names subnet {subnet_id}, which DescribeSubnets does not find."
                ),
                evidence: vec![Fact::new(subnet_id, "DescribeSubnets: not found")],
                remedy: Some(Cause::SubnetNotFound.doc().remedy.into()),
                subject: Subject::Resource {
                    id: subnet_id.clone(),
                },
            });
            continue;
        };
        findings.extend(subnet_findings(evidence, network, subnet));
        findings.extend(route_findings(evidence, network, subnet));
        findings.extend(endpoints::s3_policy_findings(evidence, network, subnet));
    }
    findings.extend(address_findings(evidence, network));
    findings.extend(endpoint_security_findings(network));
    findings
}

fn vpc_findings(evidence: &Evidence, network: &NetworkFacts) -> Vec<Finding> {
    let vpc = &network.vpc;
    let mut findings = Vec::new();
    let support_off = vpc.dns_support == Some(false);
    let hostnames_off = vpc.dns_hostnames == Some(false);
    if support_off || hostnames_off {
        let off: Vec<&str> = [
            (support_off, "enableDnsSupport"),
            (hostnames_off, "enableDnsHostnames"),
        ]
        .into_iter()
        .filter(|(off, _)| *off)
        .map(|(_, name)| name)
        .collect();
        findings.push(Finding {
            cause: Cause::VpcDnsDisabled,
            blocking: true,
            summary: format!("VPC {} has {} turned off", vpc.id, off.join(" and ")),
            explanation: format!(
                "The VPC must have DNS resolution and DNS hostnames turned on, or nodes cannot resolve AWS endpoints \
                 and register with their private DNS names. {} is off.",
                off.join(" and ")
            ),
            evidence: off.iter().map(|a| Fact::new(&vpc.id, format!("{a}=false"))).collect(),
            remedy: Some(
                off.iter()
                    .map(|a| format!("aws ec2 modify-vpc-attribute --vpc-id {} --{}", vpc.id, flag(a)))
                    .collect::<Vec<_>>()
                    .join(" && "),
            ),
            subject: Subject::Vpc {
                vpc_id: vpc.id.clone(),
                dns_support_off: support_off,
                dns_hostnames_off: hostnames_off,
            },
        });
    }
    if let Some(servers) = &vpc.domain_name_servers
        && !servers.iter().any(|s| s == "AmazonProvidedDNS")
    {
        let private_only = evidence
            .cluster
            .as_ref()
            .is_some_and(ClusterFacts::is_private_only);
        let options = vpc
            .dhcp_options_id
            .clone()
            .unwrap_or_else(|| "(none)".into());
        findings.push(Finding {
            cause: Cause::DhcpOptionsWithoutAmazonDns,
            blocking: private_only,
            summary: format!("DHCP options {options} of VPC {} use {} instead of AmazonProvidedDNS", vpc.id, servers.join(", ")),
            explanation: if private_only {
                "The cluster endpoint is private only, and its name resolves only through the Route 53 private hosted \
                 zone EKS creates. Custom DNS servers that do not forward to AmazonProvidedDNS leave nodes unable to \
                 find the API server."
                    .into()
            } else {
                "The VPC uses custom DNS servers. Nodes join only if those servers resolve AWS service names (and, with \
                 private endpoint access, the cluster's private hosted zone)."
                    .into()
            },
            evidence: vec![Fact::new(&options, format!("domain-name-servers={}", servers.join(",")))],
            remedy: Some(format!(
                "aws ec2 create-dhcp-options --dhcp-configurations Key=domain-name-servers,Values=AmazonProvidedDNS \
                 && aws ec2 associate-dhcp-options --vpc-id {} --dhcp-options-id <new-options-id>",
                vpc.id
            )),
            subject: Subject::Resource { id: options },
        });
    }
    findings
}

fn flag(attribute: &str) -> &'static str {
    if attribute == "enableDnsSupport" {
        "enable-dns-support"
    } else {
        "enable-dns-hostnames"
    }
}

fn subnet_findings(
    evidence: &Evidence,
    network: &NetworkFacts,
    subnet: &SubnetFacts,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(cluster_vpc) = evidence.cluster.as_ref().and_then(|c| c.vpc_id.as_ref())
        && &subnet.vpc_id != cluster_vpc
    {
        findings.push(Finding {
            cause: Cause::SubnetInOtherVpc,
            blocking: true,
            summary: format!(
                "subnet {} is in {}, not in the cluster's {cluster_vpc}",
                subnet.id, subnet.vpc_id
            ),
            explanation:
                "Nodes must run in the cluster's VPC to reach its endpoint and security groups."
                    .into(),
            evidence: vec![
                Fact::new(&subnet.id, format!("VpcId={}", subnet.vpc_id)),
                Fact::new(
                    format!("cluster {}", evidence.nodegroup.cluster),
                    format!("vpcId={cluster_vpc}"),
                ),
            ],
            remedy: Some(Cause::SubnetInOtherVpc.doc().remedy.into()),
            subject: Subject::Resource {
                id: subnet.id.clone(),
            },
        });
    }
    if subnet.available_ips == 0 {
        findings.push(Finding {
            cause: Cause::SubnetOutOfAddresses,
            blocking: true,
            summary: format!("subnet {} ({}) has no free IP addresses", subnet.id, subnet.cidr),
            explanation: "EC2 cannot give a new instance an address in a full subnet, so launches there fail.".into(),
            evidence: vec![Fact::new(&subnet.id, "AvailableIpAddressCount=0")],
            remedy: Some(format!(
                "Add subnets in other zones to the nodegroup, or associate a secondary CIDR with {} \
                 (aws ec2 associate-vpc-cidr-block --vpc-id {} --cidr-block <cidr>)",
                network.vpc.id, network.vpc.id
            )),
            subject: Subject::Resource { id: subnet.id.clone() },
        });
    }
    findings
}

/// Fewer than this many free addresses in a node subnet is worth a warning whatever the
/// nodegroup's size: a node takes one address, and the VPC CNI more for its pods.
const FEW_ADDRESSES: i32 = 5;

/// Subnets that can still hold a node but not many: each one under [`FEW_ADDRESSES`], or all of
/// them together under what the nodegroup may still launch. A full subnet is its own, blocking,
/// cause.
fn address_findings(evidence: &Evidence, network: &NetworkFacts) -> Vec<Finding> {
    let subnets: Vec<&SubnetFacts> = network
        .subnet_ids
        .iter()
        .filter_map(|id| network.subnet(id))
        .filter(|subnet| subnet.available_ips > 0)
        .collect();
    if subnets.is_empty() {
        return Vec::new();
    }
    let running = evidence
        .group
        .as_ref()
        .map_or(0, |group| group.instances.len());
    let running = i32::try_from(running).unwrap_or(i32::MAX);
    let may_launch = evidence
        .nodegroup
        .scaling
        .max
        .saturating_sub(running)
        .max(0);
    let free: i32 = subnets
        .iter()
        .fold(0i32, |sum, subnet| sum.saturating_add(subnet.available_ips));
    let scarce: Vec<&&SubnetFacts> = subnets
        .iter()
        .filter(|subnet| subnet.available_ips < FEW_ADDRESSES || free < may_launch)
        .collect();
    if scarce.is_empty() {
        return Vec::new();
    }
    let ids: Vec<&str> = scarce.iter().map(|subnet| subnet.id.as_str()).collect();
    vec![Finding {
        cause: Cause::SubnetLowOnAddresses,
        blocking: false,
        summary: format!(
            "subnets {} have {free} free addresses; nodegroup {} may launch {may_launch} more nodes",
            ids.join(", "),
            evidence.nodegroup.name
        ),
        explanation: "Every node takes an address of its subnet, and the VPC CNI takes more for pods. Launches                       into a subnet without free addresses fail, so a nodegroup that scales out here will soon                       stop getting nodes."
            .into(),
        evidence: scarce
            .iter()
            .map(|subnet| {
                Fact::new(
                    &subnet.id,
                    format!("{} ({}): AvailableIpAddressCount={}", subnet.cidr, subnet.availability_zone, subnet.available_ips),
                )
            })
            .chain(std::iter::once(Fact::new(
                format!("nodegroup {}", evidence.nodegroup.name),
                format!("max size {}, {running} nodes now", evidence.nodegroup.scaling.max),
            )))
            .collect(),
        remedy: Some(format!(
            "Add subnets with free addresses to the nodegroup, or a secondary CIDR to VPC {}              (aws ec2 associate-vpc-cidr-block --vpc-id {} --cidr-block <cidr>, then subnets in it)",
            network.vpc.id, network.vpc.id
        )),
        subject: Subject::Resource {
            id: ids.join(","),
        },
    }]
}

fn route_text(routes: &[RouteFacts]) -> String {
    if routes.is_empty() {
        return "no routes".into();
    }
    routes
        .iter()
        .map(|r| format!("{} -> {} ({})", r.destination, r.target, r.state))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The private-join endpoints the VPC lacks (an S3 gateway endpoint must also serve `table`).
fn missing_endpoints<'a>(
    evidence: &Evidence,
    network: &NetworkFacts,
    table: Option<&str>,
) -> Vec<&'a str> {
    let region = &evidence.trigger.region;
    PRIVATE_JOIN_SERVICES
        .iter()
        .copied()
        .filter(|service| {
            let name = format!("com.amazonaws.{region}.{service}");
            !network.endpoints.iter().any(|e| {
                e.service_name == name
                    && e.state.eq_ignore_ascii_case("available")
                    && (e.kind != "Gateway"
                        || table.is_none_or(|t| e.route_table_ids.iter().any(|r| r == t)))
            })
        })
        .collect()
}

fn route_findings(
    evidence: &Evidence,
    network: &NetworkFacts,
    subnet: &SubnetFacts,
) -> Vec<Finding> {
    let table = network.route_table_for(&subnet.id);
    let table_id = table
        .map(|t| t.id.clone())
        .unwrap_or_else(|| "(no route table)".into());
    let routes = table.map(|t| t.routes.as_slice()).unwrap_or_default();
    let routes_fact = Fact::new(
        &table_id,
        format!("routes for subnet {}: {}", subnet.id, route_text(routes)),
    );
    let private_only = evidence
        .cluster
        .as_ref()
        .is_some_and(ClusterFacts::is_private_only);
    let instance_fact = evidence
        .trigger
        .launch()
        .and_then(|l| l.instance_id.as_ref())
        .map(|i| Fact::new(i, format!("launched into subnet {}", subnet.id)));

    let Some(default) = routes.iter().find(|r| r.is_default_ipv4()) else {
        let mut found = endpoints::private_dns_findings(evidence, network);
        let missing = missing_endpoints(evidence, network, table.map(|t| t.id.as_str()));
        if missing.is_empty() {
            return found;
        }
        let mut facts: Vec<Fact> = instance_fact.into_iter().collect();
        facts.push(Fact::new(
            &table_id,
            format!(
                "routes for subnet {}: {}; no 0.0.0.0/0 route",
                subnet.id,
                route_text(routes)
            ),
        ));
        facts.push(Fact::new(
            &network.vpc.id,
            format!(
                "missing VPC endpoints for a private join: {}",
                missing.join(", ")
            ),
        ));
        if private_only {
            found.push(Finding {
                cause: Cause::VpcEndpointMissing,
                blocking: true,
                summary: format!("private-only cluster: VPC {} lacks endpoints {}", network.vpc.id, missing.join(", ")),
                explanation: format!(
                    "The cluster endpoint is private only and subnet {} has no route to the internet, so nodes reach \
                     AWS services only through VPC endpoints; {} missing (an S3 gateway endpoint must also be \
                     associated with route table {table_id}).",
                    subnet.id,
                    missing.join(", ")
                ),
                evidence: facts,
                remedy: Some(
                    missing
                        .iter()
                        .map(|service| {
                            let name = format!("com.amazonaws.{}.{service}", evidence.trigger.region);
                            if *service == "s3" {
                                format!(
                                    "aws ec2 create-vpc-endpoint --vpc-id {} --vpc-endpoint-type Gateway --service-name {name} --route-table-ids {table_id}",
                                    network.vpc.id
                                )
                            } else {
                                format!(
                                    "aws ec2 create-vpc-endpoint --vpc-id {} --vpc-endpoint-type Interface --service-name {name} --subnet-ids {} --private-dns-enabled --security-group-ids <sg-allowing-443>",
                                    network.vpc.id, subnet.id
                                )
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                subject: Subject::Resource { id: network.vpc.id.clone() },
            });
            return found;
        }
        found.push(Finding {
            cause: Cause::SubnetNoEgressRoute,
            blocking: true,
            summary: format!(
                "subnet {} has no default route and no VPC endpoints for a private join",
                subnet.id
            ),
            explanation: format!(
                "Instances in subnet {} use route table {table_id}, which has no 0.0.0.0/0 route to a NAT or internet \
                 gateway, and the VPC lacks the endpoints a node needs without one ({}). The instance runs, but \
                 kubelet cannot reach EC2, ECR, S3 or STS to bootstrap, so the node never joins the cluster.",
                subnet.id,
                missing.join(", ")
            ),
            evidence: facts,
            remedy: Some(format!(
                "aws ec2 create-route --route-table-id {table_id} --destination-cidr-block 0.0.0.0/0 --nat-gateway-id <available-nat>"
            )),
            subject: Subject::Subnet {
                subnet_id: subnet.id.clone(),
                route_table_id: table.map(|t| t.id.clone()),
                vpc_id: network.vpc.id.clone(),
                availability_zone: Some(subnet.availability_zone.clone()),
            },
        });
        return found;
    };

    let default_subject = || Subject::DefaultRoute {
        subnet_id: subnet.id.clone(),
        route_table_id: table_id.clone(),
        current_target: default.target.clone(),
        availability_zone: Some(subnet.availability_zone.clone()),
    };
    if !default.is_active() {
        return vec![Finding {
            cause: Cause::DefaultRouteBlackhole,
            blocking: true,
            summary: format!(
                "the default route of subnet {} points at {}, which is gone (blackhole)",
                subnet.id, default.target
            ),
            explanation: format!(
                "Route table {table_id} sends 0.0.0.0/0 to {}, but the route is in state {}: the gateway was deleted \
                 or detached, so traffic to the internet is dropped and nodes cannot bootstrap.",
                default.target, default.state
            ),
            evidence: vec![routes_fact],
            remedy: Some(format!(
                "aws ec2 replace-route --route-table-id {table_id} --destination-cidr-block 0.0.0.0/0 --nat-gateway-id <available-nat>"
            )),
            subject: default_subject(),
        }];
    }
    let mut findings = Vec::new();
    if default.target.starts_with("nat-") {
        match network.nat_gateway(&default.target) {
            Some(nat) if nat.state != "available" => findings.push(Finding {
                cause: Cause::NatGatewayUnavailable,
                blocking: true,
                summary: format!("subnet {} routes through NAT gateway {}, which is {}", subnet.id, nat.id, nat.state),
                explanation: format!("A NAT gateway in state {} forwards nothing; nodes behind it cannot reach AWS.", nat.state),
                evidence: vec![routes_fact.clone(), Fact::new(&nat.id, format!("State={}", nat.state))],
                remedy: Some(format!(
                    "aws ec2 replace-route --route-table-id {table_id} --destination-cidr-block 0.0.0.0/0 --nat-gateway-id <available-nat>"
                )),
                subject: default_subject(),
            }),
            Some(nat) => {
                let nat_table = network.route_table_for(&nat.subnet_id);
                let reaches_internet = nat_table.is_some_and(|t| {
                    t.routes
                        .iter()
                        .any(|r| r.is_default_ipv4() && r.is_active() && r.target.starts_with("igw-"))
                });
                if nat.connectivity == "private" || !reaches_internet {
                    findings.push(Finding {
                        cause: Cause::NatGatewayWithoutInternetRoute,
                        blocking: true,
                        summary: format!("NAT gateway {} cannot reach the internet", nat.id),
                        explanation: if nat.connectivity == "private" {
                            format!("NAT gateway {} is a private NAT gateway; it does not give internet access.", nat.id)
                        } else {
                            format!(
                                "NAT gateway {} sits in subnet {}, whose route table {} has no active 0.0.0.0/0 route \
                                 to an internet gateway, so the traffic it translates goes nowhere.",
                                nat.id,
                                nat.subnet_id,
                                nat_table.map(|t| t.id.as_str()).unwrap_or("(none)")
                            )
                        },
                        evidence: vec![
                            routes_fact.clone(),
                            Fact::new(
                                &nat.id,
                                format!(
                                    "ConnectivityType={}, subnet {} routes: {}",
                                    nat.connectivity,
                                    nat.subnet_id,
                                    route_text(nat_table.map(|t| t.routes.as_slice()).unwrap_or_default())
                                ),
                            ),
                        ],
                        remedy: Some(Cause::NatGatewayWithoutInternetRoute.doc().remedy.into()),
                        subject: Subject::Resource { id: nat.id.clone() },
                    });
                }
                findings.extend(public_access_finding(evidence, &nat.public_ips, &format!("NAT gateway {}", nat.id)));
            }
            None => findings.push(Finding {
                cause: Cause::NatGatewayUnavailable,
                blocking: true,
                summary: format!("subnet {} routes through NAT gateway {}, which does not exist", subnet.id, default.target),
                explanation: "The route's NAT gateway is not among the VPC's NAT gateways.".into(),
                evidence: vec![routes_fact],
                remedy: None,
                subject: default_subject(),
            }),
        }
    } else if default.target.starts_with("igw-") {
        let instance_ip = evidence.instance.as_ref().and_then(|i| i.public_ip.clone());
        if !subnet.map_public_ip_on_launch && instance_ip.is_none() {
            findings.push(Finding {
                cause: Cause::PublicSubnetWithoutPublicIp,
                blocking: true,
                summary: format!("public subnet {} does not assign public IP addresses", subnet.id),
                explanation: format!(
                    "Subnet {} routes 0.0.0.0/0 to internet gateway {}, so nodes there need a public IP to reach AWS; \
                     MapPublicIpOnLaunch is false (EKS reports Ec2SubnetInvalidConfiguration).",
                    subnet.id, default.target
                ),
                evidence: vec![routes_fact, Fact::new(&subnet.id, "MapPublicIpOnLaunch=false")],
                remedy: Some(format!("aws ec2 modify-subnet-attribute --subnet-id {} --map-public-ip-on-launch", subnet.id)),
                subject: Subject::PublicSubnet { subnet_id: subnet.id.clone() },
            });
        }
        if let Some(ip) = instance_ip {
            findings.extend(public_access_finding(
                evidence,
                &[ip],
                "the instance's public address",
            ));
        }
    }
    findings
}

/// With a public-only endpoint restricted by CIDRs, the nodes' egress address must be allowed.
fn public_access_finding(evidence: &Evidence, egress_ips: &[String], via: &str) -> Option<Finding> {
    let cluster = evidence.cluster.as_ref()?;
    if !cluster.endpoint_public_access || cluster.endpoint_private_access {
        return None;
    }
    if cluster.public_access_cidrs.is_empty()
        || cluster.public_access_cidrs.iter().any(|c| c == "0.0.0.0/0")
    {
        return None;
    }
    let excluded: Vec<&String> = egress_ips
        .iter()
        .filter(|ip| {
            ip.parse::<Ipv4Addr>().is_ok_and(|address| {
                !cluster
                    .public_access_cidrs
                    .iter()
                    .any(|c| cidr_contains(c, address))
            })
        })
        .collect();
    if excluded.is_empty() {
        return None;
    }
    let addresses: Vec<&str> = excluded.iter().map(|s| s.as_str()).collect();
    Some(Finding {
        cause: Cause::PublicEndpointExcludesNodes,
        blocking: true,
        summary: format!(
            "the public endpoint of {} does not admit {} ({})",
            cluster.name,
            via,
            addresses.join(", ")
        ),
        explanation: format!(
            "The cluster endpoint is public only and accepts {}; nodes reach it from {} through {via}, so the API \
             server refuses them.",
            cluster.public_access_cidrs.join(", "),
            addresses.join(", ")
        ),
        evidence: vec![Fact::new(
            format!("cluster {}", cluster.name),
            format!(
                "endpointPublicAccess=true, endpointPrivateAccess=false, publicAccessCidrs={}",
                cluster.public_access_cidrs.join(",")
            ),
        )],
        remedy: Some(format!(
            "aws eks update-cluster-config --name {} --resources-vpc-config publicAccessCidrs={},{}/32 \
             (or endpointPrivateAccess=true)",
            cluster.name,
            cluster.public_access_cidrs.join(","),
            addresses[0]
        )),
        subject: Subject::Resource {
            id: cluster.name.clone(),
        },
    })
}

/// Interface endpoints with private DNS answer for their service inside the VPC, so their
/// security groups must admit HTTPS from the nodes even when a NAT gateway exists.
fn endpoint_security_findings(network: &NetworkFacts) -> Vec<Finding> {
    let mut findings = Vec::new();
    let node_subnets: Vec<&SubnetFacts> = network
        .subnet_ids
        .iter()
        .filter_map(|id| network.subnet(id))
        .collect();
    for endpoint in network.endpoints.iter().filter(|e| {
        e.kind == "Interface"
            && e.private_dns_enabled
            && PRIVATE_JOIN_SERVICES
                .iter()
                .any(|s| e.service_name.ends_with(&format!(".{s}")))
    }) {
        for subnet in &node_subnets {
            let Some(source) = Cidr::parse(&subnet.cidr).map(|c| c.sample()) else {
                continue;
            };
            let admitted = endpoint.security_group_ids.iter().any(|group| {
                network.security_group(group).is_some_and(|g| {
                    super::firewall::rules_allow(
                        &g.ingress,
                        443,
                        &network.node_security_group_ids,
                        Some(source),
                    )
                })
            });
            // Groups nodemedic could not read are not blamed.
            let all_known = endpoint
                .security_group_ids
                .iter()
                .all(|g| network.security_group(g).is_some());
            if !admitted && all_known && !endpoint.security_group_ids.is_empty() {
                findings.push(Finding {
                    cause: Cause::VpcEndpointBlocksHttps,
                    blocking: true,
                    summary: format!(
                        "endpoint {} ({}) does not admit HTTPS from subnet {}",
                        endpoint.id, endpoint.service_name, subnet.id
                    ),
                    explanation: format!(
                        "With private DNS, {} resolves to endpoint {} inside the VPC; its security groups ({}) have no \
                         ingress rule for TCP 443 from {} or the nodes' security groups, so those calls time out.",
                        endpoint.service_name,
                        endpoint.id,
                        endpoint.security_group_ids.join(", "),
                        subnet.cidr
                    ),
                    evidence: vec![Fact::new(&endpoint.id, format!("security groups {}", endpoint.security_group_ids.join(", ")))],
                    remedy: Some(format!(
                        "aws ec2 authorize-security-group-ingress --group-id {} --protocol tcp --port 443 --cidr {}",
                        endpoint.security_group_ids[0], subnet.cidr
                    )),
                    subject: Subject::Resource { id: endpoint.id.clone() },
                });
            }
        }
    }
    findings
}
