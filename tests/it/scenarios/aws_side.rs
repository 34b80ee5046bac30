//! Worlds for the checks of the whole AWS-side checklist (cluster and nodegroup status, subnet
//! addresses, endpoint DNS and endpoint policies), each with a near miss that must pass. States
//! moto cannot express (a cluster that is not ACTIVE, a nodegroup marked failed) are set through
//! the emulator's test endpoints.

use aws_sdk_ec2::types::VpcEndpointType;
use nodemedic::lab::CLUSTER;
use serde_json::json;

use super::{nodegroup_in_new_subnet, probe};
use crate::support::World;

async fn cluster_status(world: &World, status: &str) {
    world
        .emulator
        .set_cluster_status(CLUSTER, status)
        .await
        .expect("status");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_that_failed_takes_no_nodes_and_one_updating_warns() {
    let world = World::new(3).await;
    cluster_status(&world, "FAILED").await;
    assert_eq!(world.blocking_causes("default"), vec!["cluster_not_active"]);

    cluster_status(&world, "UPDATING").await;
    assert_eq!(world.blocking_causes("default"), Vec::<String>::new());
    let check = world.check("default", "eks.cluster_status");
    assert_eq!(check["result"], "warn", "{check:#}");
    assert_eq!(check["causes"], json!(["cluster_updating"]));

    cluster_status(&world, "ACTIVE").await;
    assert_eq!(
        world.check("default", "eks.cluster_status")["result"],
        "pass"
    );
}

/// An UpdateClusterConfig that turns on API-server logging, as an operator would.
async fn turn_on_logging(world: &World) {
    use aws_sdk_eks::types::{LogSetup, LogType, Logging};
    world
        .clients
        .eks
        .update_cluster_config()
        .name(CLUSTER)
        .logging(
            Logging::builder()
                .cluster_logging(
                    LogSetup::builder()
                        .types(LogType::Api)
                        .enabled(true)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("update");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_in_progress_on_an_active_cluster_warns_and_is_named() {
    let world = World::new(3).await;
    // Near miss: an update that has finished.
    turn_on_logging(&world).await;
    let done = world.check("default", "eks.cluster_status");
    assert_eq!(done["result"], "pass", "{done:#}");
    // moto keeps the cluster ACTIVE; ListUpdates is what shows the update still running.
    world
        .emulator
        .cluster_updates_take(600)
        .await
        .expect("slow updates");
    turn_on_logging(&world).await;
    let (code, reports) = world.diagnose(CLUSTER, Some("default"));
    assert_eq!(code, 0, "a warning, not a blocking cause");
    let warning = reports[0]["diagnosis"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["cause"] == "cluster_updating")
        .cloned()
        .unwrap_or_else(|| panic!("no cluster_updating in {reports:#}"));
    assert!(
        warning["summary"]
            .as_str()
            .is_some_and(|s| s.contains("(LoggingUpdate) in progress")),
        "{warning:#}"
    );
    let check = world.check("default", "eks.cluster_status");
    assert_eq!(check["result"], "warn", "{check:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nodegroup_marked_failed_without_a_health_issue_is_named() {
    let world = World::new(3).await;
    world
        .emulator
        .set_nodegroup_health(CLUSTER, "default", "CREATE_FAILED", json!([]))
        .await
        .expect("health");
    assert_eq!(
        world.blocking_causes("default"),
        vec!["nodegroup_create_failed"]
    );
    // Near miss: a health issue names the cause, and the status adds nothing.
    world
        .emulator
        .set_nodegroup_health(
            CLUSTER,
            "default",
            "DEGRADED",
            json!([{"code": "Ec2SubnetMissingIpv6Assignment", "message": "no IPv6", "resourceIds": []}]),
        )
        .await
        .expect("health");
    assert_eq!(
        world.blocking_causes("default"),
        vec!["subnet_missing_ipv6"]
    );
    assert_eq!(
        world.check("default", "eks.nodegroup_status")["result"],
        "pass"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_subnet_under_a_large_nodegroup_warns_and_a_roomy_one_passes() {
    let world = World::new(3).await;
    // A /28 holds 11 instances once AWS has taken its five addresses; the nodegroup may grow to 20.
    nodegroup_in_new_subnet(&world, "small", "10.42.250.0/28", (0, 20, 0), true).await;
    assert_eq!(world.blocking_causes("small"), Vec::<String>::new());
    let check = world.check("small", "net.subnet_addresses");
    assert_eq!(check["result"], "warn", "{check:#}");
    assert_eq!(check["causes"], json!(["subnet_low_on_addresses"]));

    probe(&world, true).await;
    assert_eq!(
        world.check("probe", "net.subnet_addresses")["result"],
        "pass"
    );
}

/// The probe subnet without a default route, with interface endpoints for the private join
/// (private DNS as given) and the S3 gateway endpoint on its route table.
pub(super) async fn private_join(world: &World, sts_private_dns: bool) {
    let (subnet, table) = probe(world, false).await;
    for service in ["ec2", "ecr.api", "ecr.dkr", "sts"] {
        world
            .clients
            .ec2
            .create_vpc_endpoint()
            .vpc_id(&world.network.vpc)
            .vpc_endpoint_type(VpcEndpointType::Interface)
            .service_name(format!("com.amazonaws.us-west-2.{service}"))
            .subnet_ids(&subnet)
            .private_dns_enabled(service != "sts" || sts_private_dns)
            .send()
            .await
            .expect("endpoint");
    }
    s3_gateway(world, &table, None).await;
}

async fn s3_gateway(world: &World, table: &str, policy: Option<serde_json::Value>) {
    let mut request = world
        .clients
        .ec2
        .create_vpc_endpoint()
        .vpc_id(&world.network.vpc)
        .vpc_endpoint_type(VpcEndpointType::Gateway)
        .service_name("com.amazonaws.us-west-2.s3")
        .route_table_ids(table);
    if let Some(policy) = policy {
        request = request.policy_document(policy.to_string());
    }
    request.send().await.expect("s3 endpoint");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sts_endpoint_without_private_dns_blocks_a_private_join() {
    let world = World::new(3).await;
    private_join(&world, false).await;
    assert_eq!(
        world.blocking_causes("probe"),
        vec!["vpc_endpoint_private_dns_disabled"]
    );
    let check = world.check("probe", "net.vpc_endpoints");
    assert_eq!(check["result"], "fail");
    assert!(
        check["remedy"]
            .as_str()
            .is_some_and(|r| r.contains("--private-dns-enabled")),
        "{check:#}"
    );
}

/// The routed probe subnet, its S3 traffic through a gateway endpoint with `policy`.
async fn probe_behind_s3_policy(policy: serde_json::Value) -> World {
    let world = World::new(3).await;
    let (_, table) = probe(&world, true).await;
    s3_gateway(&world, &table, Some(policy)).await;
    world
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_endpoint_policy_for_one_bucket_keeps_nodes_from_ecr() {
    let world = probe_behind_s3_policy(json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:*",
            "Resource": ["arn:aws:s3:::team-artifacts", "arn:aws:s3:::team-artifacts/*"]}]}))
    .await;
    assert_eq!(
        world.blocking_causes("probe"),
        vec!["s3_endpoint_policy_blocks_ecr"]
    );
    assert_eq!(
        world.check("probe", "net.s3_endpoint_policy")["result"],
        "fail"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_endpoint_policy_that_allows_ecr_and_the_repositories_passes() {
    let world = probe_behind_s3_policy(json!({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
    "Resource": [
        "arn:aws:s3:::prod-us-west-2-starport-layer-bucket/*",
        "arn:aws:s3:::al2023-repos-us-west-2-de612dc2/*",
        "arn:aws:s3:::amazonlinux-2-repos-us-west-2/*"
    ]}]}))
    .await;
    assert_eq!(world.blocking_causes("probe"), Vec::<String>::new());
    assert_eq!(
        world.check("probe", "net.s3_endpoint_policy")["result"],
        "pass"
    );
}

/// A nodegroup in the workshop's private subnet, created as a user would with an AMI type and a
/// Kubernetes version of their choosing.
async fn nodegroup_with(
    world: &World,
    name: &str,
    ami_type: Option<aws_sdk_eks::types::AmiTypes>,
    version: Option<&str>,
) {
    world
        .clients
        .eks
        .create_nodegroup()
        .cluster_name(CLUSTER)
        .nodegroup_name(name)
        .node_role(&world.network.node_role_arn)
        .subnets(&world.network.private_subnet)
        .set_ami_type(ami_type)
        .set_version(version.map(str::to_string))
        .scaling_config(
            aws_sdk_eks::types::NodegroupScalingConfig::builder()
                .min_size(0)
                .max_size(1)
                .desired_size(0)
                .build(),
        )
        .send()
        .await
        .expect("nodegroup");
}

#[tokio::test(flavor = "multi_thread")]
async fn amazon_linux_2_nodes_on_kubernetes_1_33_are_unsupported_and_al2023_passes() {
    let world = World::new(3).await;
    nodegroup_with(
        &world,
        "legacy",
        Some(aws_sdk_eks::types::AmiTypes::Al2X8664),
        None,
    )
    .await;
    assert_eq!(
        world.blocking_causes("legacy"),
        vec!["ami_type_unsupported"]
    );
    nodegroup_with(&world, "current", None, None).await;
    assert_eq!(world.blocking_causes("current"), Vec::<String>::new());
    let check = world.check("current", "eks.ami_type");
    assert_eq!(check["result"], "pass", "{check:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_newer_than_the_control_plane_or_too_far_behind_are_refused() {
    let world = World::new(3).await;
    nodegroup_with(&world, "ahead", None, Some("1.34")).await;
    assert_eq!(world.blocking_causes("ahead"), vec!["node_version_skew"]);
    nodegroup_with(&world, "behind", None, Some("1.29")).await;
    assert_eq!(world.blocking_causes("behind"), vec!["node_version_skew"]);
    // Near miss: three minors behind is within the skew policy.
    nodegroup_with(&world, "lagging", None, Some("1.30")).await;
    assert_eq!(world.blocking_causes("lagging"), Vec::<String>::new());
    assert_eq!(world.check("lagging", "eks.version_skew")["result"], "pass");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_role_trusting_ec2_only_inside_an_organization_gives_nodes_no_credentials() {
    let world = World::new(3).await;
    let c = &world.clients;
    let role = nodemedic::lab::node_role(c, "org-bound-node", &nodemedic::lab::NODE_POLICIES)
        .await
        .expect("role");
    // After a move between organizations someone pinned the trust to the old organization.
    c.iam
        .update_assume_role_policy()
        .role_name("org-bound-node")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}}]})
            .to_string(),
        )
        .send()
        .await
        .expect("trust");
    nodemedic::lab::nodegroup_in(
        c,
        CLUSTER,
        &role,
        "org-bound",
        &world.network.private_subnet,
        (0, 1, 0),
        None,
    )
    .await
    .expect("nodegroup");
    assert_eq!(
        world.blocking_causes("org-bound"),
        vec!["node_role_trust_invalid"]
    );
    // Near miss: the workshop's node role trusts EC2 plainly.
    assert_eq!(
        world.check("default", "iam.node_role_trust")["result"],
        "pass"
    );
}

/// Auto Scaling's text when the instance profile a launch names does not exist: nothing in the
/// launch evidence explains it.
const PROFILE_FAILURE: &str = "Value (eks-ghost-profile) for parameter iamInstanceProfile.name is invalid. \
                               Invalid IAM Instance Profile name. Launching EC2 instance failed.";

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_launch_the_launch_evidence_does_not_explain_reads_the_node_role() {
    assert!(
        nodemedic::core::checks::classify_launch_failure(PROFILE_FAILURE).is_none(),
        "the text alone names no cause"
    );
    let world = World::new(3).await;
    let c = &world.clients;
    let ghost = format!(
        "arn:aws:iam::{}:role/deleted-node-role",
        world.network.account
    );
    let group = nodemedic::lab::nodegroup_in(
        c,
        CLUSTER,
        &ghost,
        "ghost",
        &world.network.private_subnet,
        (0, 1, 0),
        None,
    )
    .await
    .expect("nodegroup");
    world
        .emulator
        .force_launch_failure(&group, Some(PROFILE_FAILURE))
        .await
        .expect("forced failure");
    // The launch fails on the forced message.
    super::scale_out_to_one(&world, "ghost").await;
    nodemedic::lab::publish_launch_event(c, &world.network, &group, &world.network.private_subnet)
        .await
        .expect("event");
    world.run_once("dry-run");
    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(
        incidents[0]["cause"], "node_role_not_found",
        "the node role was read for the failed launch: {incidents:#?}"
    );
}

/// A nodegroup on moto's AMI ami-12c6146b through a launch template that bootstraps it and maps
/// the AMI's root device with `size` GiB.
async fn custom_root(world: &World, name: &str, size: i32) {
    use aws_sdk_ec2::types::{
        LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
        RequestLaunchTemplateData,
    };
    use base64::Engine;
    let image = world
        .clients
        .ec2
        .describe_images()
        .image_ids("ami-12c6146b")
        .send()
        .await
        .expect("image");
    let root = image.images()[0]
        .root_device_name()
        .expect("root device")
        .to_string();
    let user_data = base64::engine::general_purpose::STANDARD
        .encode(format!("#!/bin/bash\n/etc/eks/bootstrap.sh {CLUSTER}\n"));
    let data = RequestLaunchTemplateData::builder()
        .image_id("ami-12c6146b")
        .user_data(user_data)
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(root)
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(size)
                        .build(),
                )
                .build(),
        )
        .build();
    super::nodegroup_with_template(world, name, data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_volume_smaller_than_the_ami_snapshot_fails_and_30_gib_passes() {
    let world = World::new(3).await;
    custom_root(&world, "tiny-root", 8).await;
    assert_eq!(
        world.blocking_causes("tiny-root"),
        vec!["root_volume_too_small"]
    );
    custom_root(&world, "roomy-root", 30).await;
    assert_eq!(world.blocking_causes("roomy-root"), Vec::<String>::new());
    assert_eq!(
        world.check("roomy-root", "launch.root_volume")["result"],
        "pass"
    );
}

/// A nodegroup whose launch template requires IMDSv2 with the given hop limit.
async fn imds_nodegroup(world: &World, name: &str, hops: i32) {
    use aws_sdk_ec2::types::{
        LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataOptionsRequest,
        RequestLaunchTemplateData,
    };
    let data = RequestLaunchTemplateData::builder()
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .http_put_response_hop_limit(hops)
                .build(),
        )
        .build();
    super::nodegroup_with_template(world, name, data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn imdsv2_with_one_hop_warns_and_two_hops_pass() {
    let world = World::new(3).await;
    imds_nodegroup(&world, "one-hop", 1).await;
    assert_eq!(world.blocking_causes("one-hop"), Vec::<String>::new());
    let check = world.check("one-hop", "instance.imds");
    assert_eq!(check["result"], "warn", "{check:#}");
    assert_eq!(check["causes"], json!(["imds_hop_limit_too_low"]));
    imds_nodegroup(&world, "two-hops", 2).await;
    assert_eq!(world.check("two-hops", "instance.imds")["result"], "pass");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_role_without_the_cluster_policy_is_invalid() {
    let world = World::new(3).await;
    let c = &world.clients;
    let role = nodemedic::lab::role(c, "bare-cluster-role", "eks.amazonaws.com", &[])
        .await
        .expect("role");
    c.eks
        .create_cluster()
        .name("bare")
        .version(nodemedic::lab::KUBERNETES_VERSION)
        .role_arn(role)
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids(&world.network.private_subnet)
                .subnet_ids(&world.network.public_subnet)
                .build(),
        )
        .send()
        .await
        .expect("cluster");
    nodemedic::lab::nodegroup_in(
        c,
        "bare",
        &world.network.node_role_arn,
        "nodes",
        &world.network.private_subnet,
        (0, 1, 0),
        None,
    )
    .await
    .expect("nodegroup");
    let (code, reports) = world.diagnose("bare", Some("nodes"));
    assert_eq!(
        (code, reports[0]["cause"].clone()),
        (3, json!("cluster_role_invalid")),
        "{reports:#}"
    );
    // The role trusts EKS and lacks only the policy: the plan attaches it, after approval.
    let fixes: Vec<&str> = reports[0]["plan"]["steps"]
        .as_array()
        .expect("plan steps")
        .iter()
        .filter_map(|step| step["fix"].as_str())
        .collect();
    assert_eq!(
        fixes.first(),
        Some(&"attach_cluster_role_policy"),
        "{reports:#}"
    );
    // Near miss: the workshop's cluster role trusts EKS and has the policy.
    assert_eq!(world.check("default", "iam.cluster_role")["result"], "pass");
}

/// The instance of the workshop's `default` nodegroup.
async fn default_instance(world: &World) -> String {
    let reservations = world
        .clients
        .ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:eks:nodegroup-name")
                .values("default")
                .build(),
        )
        .send()
        .await
        .expect("instances");
    reservations
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.instance_id())
        .expect("the default nodegroup's instance")
        .to_string()
}

/// The blocking causes `diagnose --instance` finds for the workshop's `default` nodegroup.
fn instance_causes(world: &World, instance: &str) -> Vec<String> {
    let output = world.nodemedic(
        &[
            "diagnose",
            "--cluster",
            CLUSTER,
            "--nodegroup",
            "default",
            "--instance",
            instance,
            "--json",
        ],
        &[],
    );
    let reports: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("diagnose --json");
    reports[0]["diagnosis"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["blocking"] == true)
        .map(|f| f["cause"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nodes_security_groups_are_the_instances_own() {
    let world = World::new(3).await;
    let ec2 = &world.clients.ec2;
    let instance = default_instance(&world).await;
    // Near miss: the instance has the cluster security group EKS gave it.
    assert_eq!(instance_causes(&world, &instance), Vec::<String>::new());
    // Someone swaps the instance's groups for one without the control plane's ingress.
    let group = super::security_group(&world, "hand-picked").await;
    ec2.modify_instance_attribute()
        .instance_id(&instance)
        .groups(&group)
        .send()
        .await
        .expect("groups");
    assert_eq!(
        instance_causes(&world, &instance),
        vec!["security_group_blocks_cluster"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_template_naming_an_instance_profile_is_refused_for_a_managed_nodegroup() {
    use aws_sdk_ec2::types::{
        LaunchTemplateIamInstanceProfileSpecificationRequest, RequestLaunchTemplateData,
    };
    let world = World::new(3).await;
    let data = RequestLaunchTemplateData::builder()
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name("eks-workshop-node")
                .build(),
        )
        .build();
    super::nodegroup_with_template(&world, "profiled", data).await;
    assert_eq!(
        world.blocking_causes("profiled"),
        vec!["launch_template_invalid"]
    );
    // Near miss: the same template without the profile.
    let plain = RequestLaunchTemplateData::builder()
        .instance_type("m5.large".into())
        .build();
    super::nodegroup_with_template(&world, "plain", plain).await;
    assert_eq!(world.blocking_causes("plain"), Vec::<String>::new());
    assert_eq!(world.check("plain", "launch.template")["result"], "pass");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_pending_for_ten_minutes_is_stuck_and_one_pending_for_one_is_not() {
    let world = World::new(3).await;
    let instance = default_instance(&world).await;
    world
        .emulator
        .hold_pending(&instance, 1)
        .await
        .expect("pending");
    assert_eq!(instance_causes(&world, &instance), Vec::<String>::new());
    world
        .emulator
        .hold_pending(&instance, 10)
        .await
        .expect("pending");
    assert_eq!(
        instance_causes(&world, &instance),
        vec!["instance_stuck_pending"]
    );
}
