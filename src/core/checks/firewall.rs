//! Firewall rules: evaluates security groups (stateful, any matching allow admits) and network
//! ACLs (stateless, first matching rule by number decides) for the traffic a node needs.

use std::net::Ipv4Addr;

use super::ip::{Cidr, cidr_contains};
use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{AclEntry, Evidence, NetworkFacts, SecurityGroupRule};

/// Stands for "anywhere on the internet" when checking rules (an AWS public address).
const INTERNET: Ipv4Addr = Ipv4Addr::new(52, 94, 0, 1);
/// Samples of the ephemeral range return traffic arrives on.
const RETURN_PORTS: [i32; 4] = [1025, 32768, 49152, 65535];

fn protocol_is_tcp_or_all(protocol: &str) -> bool {
    matches!(protocol, "-1" | "tcp" | "6" | "all")
}

/// Whether any rule admits TCP `port` from (or to) a peer in one of `groups` or at `address`.
pub(super) fn rules_allow(
    rules: &[SecurityGroupRule],
    port: i32,
    groups: &[String],
    address: Option<Ipv4Addr>,
) -> bool {
    rules.iter().any(|rule| {
        let port_ok = rule.protocol == "-1"
            || rule.protocol == "all"
            || (protocol_is_tcp_or_all(&rule.protocol)
                && rule.from_port.is_none_or(|from| from <= port)
                && rule.to_port.is_none_or(|to| port <= to));
        let peer_ok = rule.source_groups.iter().any(|g| groups.contains(g))
            || address.is_some_and(|ip| rule.cidrs.iter().any(|c| cidr_contains(c, ip)));
        port_ok && peer_ok
    })
}

pub fn findings(evidence: &Evidence, network: &NetworkFacts) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(security_group_finding(evidence, network));
    for subnet in &network.subnet_ids {
        findings.extend(acl_finding(evidence, network, subnet));
    }
    findings
}

fn security_group_finding(evidence: &Evidence, network: &NetworkFacts) -> Option<Finding> {
    let cluster = evidence.cluster.as_ref()?;
    let control_plane: Vec<String> = cluster
        .control_plane_security_groups()
        .into_iter()
        .map(str::to_string)
        .collect();
    let nodes = &network.node_security_group_ids;
    let node_groups: Vec<_> = nodes
        .iter()
        .filter_map(|id| network.security_group(id))
        .collect();
    let plane_groups: Vec<_> = control_plane
        .iter()
        .filter_map(|id| network.security_group(id))
        .collect();
    // Rules nodemedic could not read are not judged.
    if node_groups.is_empty()
        || node_groups.len() != nodes.len()
        || plane_groups.len() != control_plane.len()
    {
        return None;
    }
    let node_address = network
        .subnet_ids
        .iter()
        .filter_map(|s| network.subnet(s))
        .find_map(|s| Cidr::parse(&s.cidr))
        .map(|c| c.sample());
    let plane_address = cluster
        .subnet_ids
        .iter()
        .filter_map(|s| network.subnet(s))
        .find_map(|s| Cidr::parse(&s.cidr))
        .map(|c| c.sample())
        .or(node_address);
    // Nodes reach a private endpoint inside the VPC, a public one across the internet.
    let api_address = if cluster.endpoint_private_access {
        plane_address
    } else {
        Some(INTERNET)
    };

    let mut problems = Vec::new();
    let mut remedies = Vec::new();
    let first_node = nodes[0].as_str();
    let first_plane = control_plane
        .first()
        .map(String::as_str)
        .unwrap_or("<cluster-sg>");
    if !node_groups
        .iter()
        .any(|g| rules_allow(&g.egress, 443, &control_plane, api_address))
    {
        problems.push(format!(
            "no node security group ({}) allows outbound TCP 443 to the API server",
            nodes.join(", ")
        ));
        remedies.push(format!(
            "aws ec2 authorize-security-group-egress --group-id {first_node} --protocol tcp --port 443 --source-group {first_plane}"
        ));
    }
    if cluster.endpoint_private_access
        && !plane_groups
            .iter()
            .any(|g| rules_allow(&g.ingress, 443, nodes, node_address))
    {
        problems.push(format!(
            "no control plane security group ({}) allows inbound TCP 443 from the nodes",
            control_plane.join(", ")
        ));
        remedies.push(format!(
            "aws ec2 authorize-security-group-ingress --group-id {first_plane} --protocol tcp --port 443 --source-group {first_node}"
        ));
    }
    if !node_groups
        .iter()
        .any(|g| rules_allow(&g.ingress, 10250, &control_plane, plane_address))
    {
        problems.push(format!(
            "no node security group ({}) allows inbound TCP 10250 (kubelet) from the control plane",
            nodes.join(", ")
        ));
        remedies.push(format!(
            "aws ec2 authorize-security-group-ingress --group-id {first_node} --protocol tcp --port 10250 --source-group {first_plane}"
        ));
    }
    if problems.is_empty() {
        return None;
    }
    Some(Finding {
        cause: Cause::SecurityGroupBlocksCluster,
        blocking: true,
        summary: format!(
            "security groups block node-to-control-plane traffic: {}",
            problems[0]
        ),
        explanation: format!(
            "Nodes use security group(s) {} and the control plane {}. {}.",
            nodes.join(", "),
            control_plane.join(", "),
            problems.join("; ")
        ),
        evidence: problems.iter().map(|p| Fact::new(first_node, p)).collect(),
        remedy: Some(remedies.join("\n")),
        subject: Subject::Resource {
            id: first_node.to_string(),
        },
    })
}

/// The first entry (by rule number) that matches TCP `port` to or from `address` decides.
fn acl_allows(
    entries: &[AclEntry],
    egress: bool,
    port: i32,
    address: Ipv4Addr,
) -> (bool, Option<i32>) {
    let mut ordered: Vec<&AclEntry> = entries.iter().filter(|e| e.egress == egress).collect();
    ordered.sort_by_key(|e| e.rule_number);
    for entry in ordered {
        let protocol_ok = matches!(entry.protocol.as_str(), "-1" | "6" | "tcp");
        let port_ok = match (entry.port_from, entry.port_to) {
            (Some(from), Some(to)) => from <= port && port <= to,
            _ => true,
        };
        if protocol_ok && port_ok && cidr_contains(&entry.cidr, address) {
            return (entry.action == "allow", Some(entry.rule_number));
        }
    }
    (false, None)
}

fn acl_finding(evidence: &Evidence, network: &NetworkFacts, subnet_id: &str) -> Option<Finding> {
    let acl = network.network_acl_for(subnet_id)?;
    let vpc_address = network
        .vpc
        .cidr_blocks
        .first()
        .and_then(|c| Cidr::parse(c))
        .map(|c| c.sample())
        .unwrap_or(Ipv4Addr::new(10, 0, 0, 10));
    let private_endpoint = evidence
        .cluster
        .as_ref()
        .is_some_and(|c| c.endpoint_private_access);
    let mut checks: Vec<(bool, i32, Ipv4Addr, &str)> = vec![
        (
            true,
            443,
            INTERNET,
            "outbound TCP 443 to the internet (AWS APIs, public endpoint)",
        ),
        (
            true,
            443,
            vpc_address,
            "outbound TCP 443 inside the VPC (private endpoint, VPC endpoints)",
        ),
        (
            false,
            10250,
            vpc_address,
            "inbound TCP 10250 (kubelet) from the control plane",
        ),
    ];
    for port in RETURN_PORTS {
        checks.push((
            false,
            port,
            INTERNET,
            "inbound TCP 1025-65535 from the internet (return traffic)",
        ));
        checks.push((
            true,
            port,
            vpc_address,
            "outbound TCP 1025-65535 inside the VPC (kubelet replies)",
        ));
    }
    if !private_endpoint {
        checks.retain(|(egress, port, address, _)| {
            !(*egress && *port == 443 && *address == vpc_address)
        });
    }
    for (egress, port, address, what) in checks {
        let (allowed, rule) = acl_allows(&acl.entries, egress, port, address);
        if allowed {
            continue;
        }
        let rule_text = rule
            .map(|r| format!("rule {r}"))
            .unwrap_or_else(|| "the implicit deny".into());
        let cidr = if address == INTERNET {
            "0.0.0.0/0".to_string()
        } else {
            network.vpc.cidr_blocks.first().cloned().unwrap_or_default()
        };
        let direction = if egress { "--egress" } else { "--ingress" };
        let ports = if port == 443 || port == 10250 {
            format!("From={port},To={port}")
        } else {
            "From=1025,To=65535".into()
        };
        return Some(Finding {
            cause: Cause::NetworkAclBlocksTraffic,
            blocking: true,
            summary: format!("network ACL {} of subnet {subnet_id} denies {what}", acl.id),
            explanation: format!(
                "Network ACLs are stateless and evaluated in rule order; in {} the first entry matching TCP port {port} \
                 {} {cidr} is {rule_text}, which denies it. Nodes need {what}.",
                acl.id,
                if egress { "to" } else { "from" }
            ),
            evidence: vec![Fact::new(&acl.id, format!("{what}: denied by {rule_text}"))],
            remedy: Some(format!(
                "aws ec2 create-network-acl-entry --network-acl-id {} {direction} --rule-number <below {}> --protocol tcp \
                 --port-range {ports} --cidr-block {cidr} --rule-action allow",
                acl.id,
                rule.unwrap_or(32767)
            )),
            subject: Subject::Resource { id: acl.id.clone() },
        });
    }
    None
}
