//! Scenarios of identity, launch templates, keys and EKS health.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn node_role_problems_and_a_missing_access_entry() {
    let world = World::new(3).await;
    let c = &world.clients;
    let partial = lab::node_role(c, "partial-node", &["AmazonEKSWorkerNodePolicy"])
        .await
        .unwrap();
    lab::nodegroup_in(
        c,
        CLUSTER,
        &partial,
        "partial",
        &world.network.private_subnet,
        (0, 1, 0),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        world.blocking_causes("partial"),
        vec!["node_role_missing_policy"]
    );
    let ghost = format!(
        "arn:aws:iam::{}:role/deleted-node-role",
        world.network.account
    );
    lab::nodegroup_in(
        c,
        CLUSTER,
        &ghost,
        "ghost",
        &world.network.private_subnet,
        (0, 1, 0),
        None,
    )
    .await
    .unwrap();
    assert_eq!(world.blocking_causes("ghost"), vec!["node_role_not_found"]);

    lab::cluster_named(c, &world.network, "api-only", Some(AuthenticationMode::Api))
        .await
        .unwrap();
    lab::nodegroup_in(
        c,
        "api-only",
        &world.network.node_role_arn,
        "nodes",
        &world.network.private_subnet,
        (0, 1, 0),
        None,
    )
    .await
    .unwrap();
    let (code, reports) = world.diagnose("api-only", Some("nodes"));
    assert_eq!(
        (code, reports[0]["cause"].clone()),
        (3, json!("node_role_missing_access_entry"))
    );
    c.eks
        .create_access_entry()
        .cluster_name("api-only")
        .principal_arn(&world.network.node_role_arn)
        .r#type("EC2_LINUX")
        .send()
        .await
        .unwrap();
    assert_eq!(
        world.diagnose("api-only", Some("nodes")).0,
        0,
        "with the access entry it is healthy"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_ami_launch_templates_without_bootstrap_or_image() {
    let world = World::new(3).await;
    let c = &world.clients;
    let no_bootstrap = template(
        &world,
        "custom",
        RequestLaunchTemplateData::builder()
            .image_id("ami-12c6146b")
            .build(),
    )
    .await;
    lab::nodegroup(
        c,
        &world.network,
        "custom",
        &world.network.private_subnet,
        (0, 1, 0),
        Some(&no_bootstrap),
    )
    .await
    .unwrap();
    assert_eq!(
        world.blocking_causes("custom"),
        vec!["custom_ami_without_bootstrap"]
    );
    use base64::Engine;
    let bootstrap = base64::engine::general_purpose::STANDARD
        .encode("#!/bin/bash\n/etc/eks/bootstrap.sh eks-workshop\n");
    let gone = template(
        &world,
        "gone-image",
        RequestLaunchTemplateData::builder()
            .image_id("ami-0000000000000dead")
            .user_data(bootstrap)
            .build(),
    )
    .await;
    lab::nodegroup(
        c,
        &world.network,
        "gone",
        &world.network.private_subnet,
        (0, 1, 0),
        Some(&gone),
    )
    .await
    .unwrap();
    assert_eq!(world.blocking_causes("gone"), vec!["ami_not_found"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_template_naming_a_deleted_security_group() {
    let world = World::new(3).await;
    let group = security_group(&world, "short-lived").await;
    let template = template(
        &world,
        "stale",
        RequestLaunchTemplateData::builder()
            .security_group_ids(&group)
            .build(),
    )
    .await;
    lab::nodegroup(
        &world.clients,
        &world.network,
        "stale",
        &world.network.private_subnet,
        (0, 1, 0),
        Some(&template),
    )
    .await
    .unwrap();
    world
        .clients
        .ec2
        .delete_security_group()
        .group_id(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(
        world.blocking_causes("stale"),
        vec!["launch_template_security_group_missing"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subnet_of_another_vpc_and_a_full_subnet() {
    let world = World::new(3).await;
    let c = &world.clients;
    let other = c
        .ec2
        .create_vpc()
        .cidr_block("10.99.0.0/16")
        .send()
        .await
        .unwrap();
    let other_vpc = other.vpc().unwrap().vpc_id().unwrap().to_string();
    let elsewhere = lab::subnet(c, &other_vpc, "10.99.0.0/24").await.unwrap();
    lab::nodegroup(c, &world.network, "elsewhere", &elsewhere, (0, 1, 0), None)
        .await
        .unwrap();
    assert!(
        world
            .blocking_causes("elsewhere")
            .contains(&"subnet_in_other_vpc".to_string())
    );

    let tiny = lab::subnet(c, &world.network.vpc, "10.42.250.0/28")
        .await
        .unwrap();
    let table = lab::route_table(c, &world.network.vpc, &tiny)
        .await
        .unwrap();
    c.ec2
        .create_route()
        .route_table_id(&table)
        .destination_cidr_block("0.0.0.0/0")
        .nat_gateway_id(&world.network.nat_gateway)
        .send()
        .await
        .unwrap();
    c.ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(11)
        .max_count(11)
        .subnet_id(&tiny)
        .send()
        .await
        .unwrap();
    lab::nodegroup(c, &world.network, "full", &tiny, (0, 1, 0), None)
        .await
        .unwrap();
    assert_eq!(
        world.blocking_causes("full"),
        vec!["subnet_out_of_addresses"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_002_key_policy_and_a_disabled_key() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network).await.unwrap();
    assert_eq!(
        world.blocking_causes(&lab.nodegroup),
        vec!["kms_key_policy_blocks_autoscaling"]
    );
    world
        .clients
        .kms
        .disable_key()
        .key_id(&lab.key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        world.blocking_causes(&lab.nodegroup),
        vec!["kms_key_unusable"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_template_whose_key_already_grants_auto_scaling_is_healthy() {
    let world = World::new(3).await;
    let c = &world.clients;
    let key = c.kms.create_key().send().await.unwrap();
    let key_arn = key.key_metadata().unwrap().arn().unwrap().to_string();
    let data = RequestLaunchTemplateData::builder()
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name("/dev/xvda")
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .encrypted(true)
                        .kms_key_id(&key_arn)
                        .volume_size(20)
                        .build(),
                )
                .build(),
        )
        .build();
    let role = format!(
        "arn:aws:iam::{}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
        world.network.account
    );
    let granted = match nodemedic::core::key_policy::patch(
        &lab::root_only_policy(&world.network.account),
        nodemedic::core::key_policy::Caller::for_key(&role, &key_arn),
    )
    .unwrap()
    {
        nodemedic::core::key_policy::KeyPolicyPatch::Patched { policy, .. } => policy,
        nodemedic::core::key_policy::KeyPolicyPatch::AlreadyGranted => unreachable!(),
    };
    c.kms
        .put_key_policy()
        .key_id(&key_arn)
        .policy_name("default")
        .policy(granted)
        .send()
        .await
        .unwrap();
    let template = template(&world, "granted", data).await;
    lab::nodegroup(
        c,
        &world.network,
        "granted",
        &world.network.private_subnet,
        (0, 1, 1),
        Some(&template),
    )
    .await
    .unwrap();
    assert_eq!(world.blocking_causes("granted"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn eks_health_issues_moto_cannot_express() {
    let world = World::new(3).await;
    world
        .emulator
        .set_nodegroup_health(
            CLUSTER,
            "default",
            "DEGRADED",
            json!([{"code": "ClusterUnreachable", "message": "timed out", "resourceIds": []}]),
        )
        .await
        .unwrap();
    assert_eq!(
        world.blocking_causes("default"),
        vec!["cluster_unreachable"]
    );
    world
        .emulator
        .set_nodegroup_health(
            CLUSTER,
            "default",
            "DEGRADED",
            json!([{"code": "NodeCreationFailure", "message": "Instances failed to join the kubernetes cluster", "resourceIds": ["i-1"]}]),
        )
        .await
        .unwrap();
    assert_eq!(
        world.blocking_causes("default"),
        vec!["node_creation_failure"]
    );
}
