//! The scenario corpus: one world per cause of the join checklist, built in the emulator with
//! the API calls a user would make, and the cause `nodemedic diagnose` must name. Near misses
//! must name nothing. States moto cannot express (nodegroup health) are set through the
//! emulator's test endpoint; see also the aws-smithy-mocks units in src/aws/collect/mocked.rs.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, NewDhcpConfiguration, PortRange,
    RequestLaunchTemplateData, RuleAction,
};
use aws_sdk_eks::types::{AuthenticationMode, VpcConfigRequest};
use nodemedic::aws::AwsResultExt;
use nodemedic::lab::{self, CLUSTER};
use serde_json::json;

use crate::support::World;

mod approved_fixes;
mod aws_side;
mod identity;
mod keys;
mod launch;
mod user_data;

/// Scales `nodegroup` out to one instance as a user would, and waits for the emulator to settle
/// the update (half a second) and launch, or fail to.
async fn scale_out_to_one(world: &World, nodegroup: &str) {
    world
        .clients
        .eks
        .update_nodegroup_config()
        .cluster_name(CLUSTER)
        .nodegroup_name(nodegroup)
        .scaling_config(
            aws_sdk_eks::types::NodegroupScalingConfig::builder()
                .min_size(0)
                .max_size(1)
                .desired_size(1)
                .build(),
        )
        .send()
        .await
        .expect("scale out");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
}

/// A nodegroup `probe` in a new subnet 10.42.192.0/19 with its own route table, routed to the
/// workshop's NAT gateway unless `route` is false. Returns (subnet, route table).
async fn probe(world: &World, route: bool) -> (String, String) {
    nodegroup_in_new_subnet(world, "probe", "10.42.192.0/19", (0, 1, 0), route).await
}

/// A nodegroup in a new subnet of the workshop VPC with its own route table, routed to the
/// workshop's NAT gateway unless `route` is false. Returns (subnet, route table).
async fn nodegroup_in_new_subnet(
    world: &World,
    name: &str,
    cidr: &str,
    scaling: (i32, i32, i32),
    route: bool,
) -> (String, String) {
    let c = &world.clients;
    let subnet = lab::subnet(c, &world.network.vpc, cidr).await.unwrap();
    let table = lab::route_table(c, &world.network.vpc, &subnet)
        .await
        .unwrap();
    if route {
        c.ec2
            .create_route()
            .route_table_id(&table)
            .destination_cidr_block("0.0.0.0/0")
            .nat_gateway_id(&world.network.nat_gateway)
            .send()
            .await
            .unwrap();
    }
    lab::nodegroup(c, &world.network, name, &subnet, scaling, None)
        .await
        .unwrap();
    (subnet, table)
}

pub(super) async fn template(world: &World, name: &str, data: RequestLaunchTemplateData) -> String {
    world
        .clients
        .ec2
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(data)
        .send()
        .await
        .op("ec2:CreateLaunchTemplate")
        .unwrap()
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .unwrap()
        .to_string()
}

/// A nodegroup in the workshop's private subnet launching from a new template of `data`.
pub(super) async fn nodegroup_with_template(
    world: &World,
    name: &str,
    data: RequestLaunchTemplateData,
) {
    let template = template(world, name, data).await;
    lab::nodegroup(
        &world.clients,
        &world.network,
        name,
        &world.network.private_subnet,
        (0, 1, 0),
        Some(&template),
    )
    .await
    .expect("nodegroup");
}

pub(super) async fn security_group(world: &World, name: &str) -> String {
    world
        .clients
        .ec2
        .create_security_group()
        .group_name(name)
        .description(name)
        .vpc_id(&world.network.vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_workshop_has_no_cause_and_exits_zero() {
    let world = World::new(3).await;
    let (code, reports) = world.diagnose(CLUSTER, None);
    assert_eq!(code, 0, "{reports:#}");
    assert_eq!(reports[0]["healthy"], true);
    assert!(reports[0]["aws_calls"]["by_operation"]["ec2:DescribeRouteTables"].as_u64() == Some(1));
    for report in reports.as_array().expect("reports") {
        for check in report["diagnosis"]["checks"].as_array().expect("checks") {
            match check["result"].as_str() {
                Some("pass") => {}
                Some("skipped") => assert!(check["skipped"]["detail"].is_string(), "{check:#}"),
                _ => panic!("a healthy nodegroup: {check:#}"),
            }
        }
    }
    let text = world.nodemedic(&["diagnose", "--cluster", CLUSTER], &[]);
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("checklist:") && text.contains("net.default_route"),
        "{text}"
    );
    assert!(
        text.contains("not checked") && text.contains("NJ35"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_000_subnet_without_a_route() {
    let world = World::new(3).await;
    probe(&world, false).await;
    assert_eq!(
        world.blocking_causes("probe"),
        vec!["subnet_no_egress_route"]
    );
    let (_, reports) = world.diagnose(CLUSTER, Some("probe"));
    assert_eq!(reports[0]["plan"]["steps"][0]["fix"], "add_nat_route");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subnet_that_reaches_aws_through_vpc_endpoints_only_is_healthy() {
    let world = World::new(3).await;
    aws_side::private_join(&world, true).await;
    assert_eq!(world.blocking_causes("probe"), Vec::<String>::new());
    assert_eq!(world.check("probe", "net.vpc_endpoints")["result"], "pass");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_nat_gateway_leaves_a_blackhole() {
    let world = World::new(3).await;
    world
        .clients
        .ec2
        .delete_nat_gateway()
        .nat_gateway_id(&world.network.nat_gateway)
        .send()
        .await
        .unwrap();
    assert_eq!(
        world.blocking_causes("default"),
        vec!["default_route_blackhole"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nat_gateway_in_a_private_subnet_reaches_nothing() {
    let world = World::new(3).await;
    let c = &world.clients;
    let allocation = c
        .ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .unwrap();
    let private_nat = c
        .ec2
        .create_nat_gateway()
        .subnet_id(&world.network.private_subnet)
        .allocation_id(allocation.allocation_id().unwrap())
        .send()
        .await
        .unwrap()
        .nat_gateway()
        .unwrap()
        .nat_gateway_id()
        .unwrap()
        .to_string();
    let (_, table) = probe(&world, false).await;
    c.ec2
        .create_route()
        .route_table_id(&table)
        .destination_cidr_block("0.0.0.0/0")
        .nat_gateway_id(&private_nat)
        .send()
        .await
        .unwrap();
    assert_eq!(
        world.blocking_causes("probe"),
        vec!["nat_gateway_without_internet_route"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn vpc_dns_hostnames_off() {
    let world = World::new(3).await;
    world
        .clients
        .ec2
        .modify_vpc_attribute()
        .vpc_id(&world.network.vpc)
        .enable_dns_hostnames(AttributeBooleanValue::builder().value(false).build())
        .send()
        .await
        .unwrap();
    assert_eq!(world.blocking_causes("default"), vec!["vpc_dns_disabled"]);
}

async fn private_only(world: &World) {
    world
        .clients
        .eks
        .update_cluster_config()
        .name(CLUSTER)
        .resources_vpc_config(
            VpcConfigRequest::builder()
                .endpoint_private_access(true)
                .endpoint_public_access(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_dns_servers_break_a_private_only_cluster_and_only_warn_otherwise() {
    let world = World::new(3).await;
    let c = &world.clients;
    let options = c
        .ec2
        .create_dhcp_options()
        .dhcp_configurations(
            NewDhcpConfiguration::builder()
                .key("domain-name-servers")
                .values("10.0.0.2")
                .build(),
        )
        .send()
        .await
        .unwrap();
    c.ec2
        .associate_dhcp_options()
        .dhcp_options_id(options.dhcp_options().unwrap().dhcp_options_id().unwrap())
        .vpc_id(&world.network.vpc)
        .send()
        .await
        .unwrap();
    let (code, reports) = world.diagnose(CLUSTER, Some("default"));
    assert_eq!(code, 0, "public endpoint: a warning only");
    assert_eq!(
        reports[0]["diagnosis"]["findings"][0]["cause"],
        "dhcp_options_without_amazon_dns"
    );
    private_only(&world).await;
    assert_eq!(
        world.blocking_causes("default"),
        vec!["dhcp_options_without_amazon_dns"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_only_cluster_without_endpoints() {
    let world = World::new(3).await;
    private_only(&world).await;
    probe(&world, false).await;
    assert_eq!(world.blocking_causes("probe"), vec!["vpc_endpoint_missing"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_template_security_group_without_kubelet_ingress() {
    let world = World::new(3).await;
    let group = security_group(&world, "nodes-locked-down").await;
    let template = template(
        &world,
        "locked",
        RequestLaunchTemplateData::builder()
            .security_group_ids(&group)
            .build(),
    )
    .await;
    lab::nodegroup(
        &world.clients,
        &world.network,
        "locked",
        &world.network.private_subnet,
        (0, 1, 0),
        Some(&template),
    )
    .await
    .unwrap();
    assert_eq!(
        world.blocking_causes("locked"),
        vec!["security_group_blocks_cluster"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_network_acl_that_denies_https_out() {
    let world = World::new(3).await;
    let c = &world.clients;
    let (subnet, _) = probe(&world, true).await;
    let acl = c
        .ec2
        .create_network_acl()
        .vpc_id(&world.network.vpc)
        .send()
        .await
        .unwrap();
    let acl_id = acl
        .network_acl()
        .unwrap()
        .network_acl_id()
        .unwrap()
        .to_string();
    for (number, egress, action, ports) in [
        (50, true, RuleAction::Deny, Some((443, 443))),
        (100, true, RuleAction::Allow, None),
        (100, false, RuleAction::Allow, None),
    ] {
        let mut entry = c
            .ec2
            .create_network_acl_entry()
            .network_acl_id(&acl_id)
            .rule_number(number)
            .egress(egress)
            .protocol(if ports.is_some() { "6" } else { "-1" })
            .rule_action(action)
            .cidr_block("0.0.0.0/0");
        if let Some((from, to)) = ports {
            entry = entry.port_range(PortRange::builder().from(from).to(to).build());
        }
        entry.send().await.unwrap();
    }
    let acls = c
        .ec2
        .describe_network_acls()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("association.subnet-id")
                .values(&subnet)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let association = acls.network_acls()[0]
        .associations()
        .iter()
        .find(|a| a.subnet_id() == Some(subnet.as_str()))
        .and_then(|a| a.network_acl_association_id())
        .unwrap()
        .to_string();
    c.ec2
        .replace_network_acl_association()
        .association_id(association)
        .network_acl_id(&acl_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        world.blocking_causes("probe"),
        vec!["network_acl_blocks_traffic"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_subnet_that_assigns_no_public_ips() {
    let world = World::new(3).await;
    let c = &world.clients;
    let subnet = lab::subnet(c, &world.network.vpc, "10.42.192.0/19")
        .await
        .unwrap();
    let table = lab::route_table(c, &world.network.vpc, &subnet)
        .await
        .unwrap();
    c.ec2
        .create_route()
        .route_table_id(&table)
        .destination_cidr_block("0.0.0.0/0")
        .gateway_id(&world.network.internet_gateway)
        .send()
        .await
        .unwrap();
    lab::nodegroup(c, &world.network, "public", &subnet, (0, 1, 0), None)
        .await
        .unwrap();
    assert_eq!(
        world.blocking_causes("public"),
        vec!["public_subnet_without_public_ip"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_endpoint_restricted_to_other_addresses() {
    let world = World::new(3).await;
    world
        .clients
        .eks
        .update_cluster_config()
        .name(CLUSTER)
        .resources_vpc_config(
            VpcConfigRequest::builder()
                .public_access_cidrs("203.0.113.0/24")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        world.blocking_causes("default"),
        vec!["public_endpoint_excludes_nodes"]
    );
}
