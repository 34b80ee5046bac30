//! Custom-AMI user data, read as EC2 would (MIME multipart, gzip): the bootstrap must match the
//! AMI family, name this cluster, carry what nodeadm needs, and fit in 16 KiB. The AMI is made
//! the way a user makes one, CreateImage from an instance, with an EKS AMI's name.

use std::io::Write;

use aws_sdk_ec2::types::RequestLaunchTemplateData;
use base64::Engine;
use nodemedic::lab::CLUSTER;

use crate::support::World;

const AL2023_NAME: &str = "amazon-eks-node-al2023-x86_64-standard-1.33-v20251016";

/// An AMI named like the AL2023 EKS AMI, made from an instance of moto's ami-12c6146b.
async fn al2023_image(world: &World) -> String {
    let ec2 = &world.clients.ec2;
    let reservation = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .subnet_id(&world.network.private_subnet)
        .send()
        .await
        .expect("instance");
    let instance = reservation.instances()[0]
        .instance_id()
        .expect("id")
        .to_string();
    ec2.create_image()
        .instance_id(instance)
        .name(AL2023_NAME)
        .send()
        .await
        .expect("image")
        .image_id()
        .expect("image id")
        .to_string()
}

fn node_config(cluster: &str, complete: bool) -> String {
    let mut text = format!(
        "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: {cluster}\n"
    );
    if complete {
        text.push_str(
            "    apiServerEndpoint: https://ABCD.gr7.us-west-2.eks.amazonaws.com\n    certificateAuthority: LS0tLS1CRUdJTg==\n    cidr: 10.100.0.0/16\n",
        );
    }
    format!(
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n\n--//\nContent-Type: application/node.eks.aws\n\n{text}\n--//--\n"
    )
}

/// A nodegroup whose launch template runs `image` with `user_data` (already encoded for EC2).
async fn custom_nodegroup(world: &World, name: &str, image: &str, user_data: String) {
    let data = RequestLaunchTemplateData::builder()
        .image_id(image)
        .user_data(user_data)
        .build();
    super::nodegroup_with_template(world, name, data).await;
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn gzipped(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("gzip");
    encoder.finish().expect("gzip")
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_al2023_user_data_is_checked_part_by_part() {
    let world = World::new(3).await;
    let image = al2023_image(&world).await;

    let script = format!("#!/bin/bash\n/etc/eks/bootstrap.sh {CLUSTER}\n");
    custom_nodegroup(&world, "script", &image, base64(script.as_bytes())).await;
    assert_eq!(
        world.blocking_causes("script"),
        vec!["user_data_format_mismatch"]
    );

    let other = node_config("eks-workshop-old", true);
    custom_nodegroup(&world, "other", &image, base64(other.as_bytes())).await;
    assert_eq!(
        world.blocking_causes("other"),
        vec!["bootstrap_cluster_name_mismatch"]
    );

    let bare = node_config(CLUSTER, false);
    custom_nodegroup(&world, "bare", &image, base64(bare.as_bytes())).await;
    assert_eq!(
        world.blocking_causes("bare"),
        vec!["bootstrap_args_missing"]
    );

    let padded = format!(
        "{}\n#{}\n",
        node_config(CLUSTER, true),
        "x".repeat(17 * 1024)
    );
    custom_nodegroup(&world, "padded", &image, base64(padded.as_bytes())).await;
    assert_eq!(world.blocking_causes("padded"), vec!["user_data_too_large"]);

    // Near miss: a complete NodeConfig for this cluster, in gzipped MIME as cloud-init reads it.
    let good = gzipped(&node_config(CLUSTER, true));
    custom_nodegroup(&world, "good", &image, base64(&good)).await;
    assert_eq!(world.blocking_causes("good"), Vec::<String>::new());
    let check = world.check("good", "launch.user_data");
    assert_eq!(check["result"], "pass", "{check:#}");
}
