//! Fixes of the AWS-side checklist that change shared infrastructure: planned in auto mode, held
//! for a human, and applied through the real AWS calls once approved.

use aws_sdk_ec2::types::Filter;
use nodemedic::lab::CLUSTER;
use serde_json::json;

use super::aws_side::private_join;
use crate::support::{World, actions, pairs};

/// A CloudTrail UpdateNodegroupConfig of `nodegroup`: it reads the whole checklist, instance or not.
pub(super) fn preflight(world: &World, nodegroup: &str) -> String {
    json!({
        "version": "0", "id": format!("ct-update-{nodegroup}"), "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.eks", "account": world.network.account, "time": "2026-11-21T00:00:00Z",
        "region": "us-west-2", "resources": [],
        "detail": {
            "eventSource": "eks.amazonaws.com", "eventName": "UpdateNodegroupConfig",
            "requestParameters": {"name": CLUSTER, "nodegroupName": nodegroup},
            "responseElements": {"nodegroup": {"nodegroupName": nodegroup, "clusterName": CLUSTER}}
        }
    })
    .to_string()
}

/// The STS interface endpoint of the workshop VPC and whether it answers sts's name.
async fn sts_endpoint(world: &World) -> (String, bool) {
    let found = world
        .clients
        .ec2
        .describe_vpc_endpoints()
        .filters(
            Filter::builder()
                .name("service-name")
                .values("com.amazonaws.us-west-2.sts")
                .build(),
        )
        .send()
        .await
        .expect("endpoints");
    let endpoint = &found.vpc_endpoints()[0];
    (
        endpoint.vpc_endpoint_id().expect("id").to_string(),
        endpoint.private_dns_enabled().unwrap_or(false),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn private_dns_is_turned_on_only_once_approved() {
    let world = World::new(3).await;
    private_join(&world, false).await;
    let (sts, _) = sts_endpoint(&world).await;
    world.send_raw(&preflight(&world, "probe")).await;

    world.run_once("auto");

    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0]["cause"], "vpc_endpoint_private_dns_disabled");
    assert_eq!(incidents[0]["outcome"], "planned");
    assert_eq!(
        actions(&incidents[0]),
        pairs(&[("enable_endpoint_private_dns", "planned")]),
        "no instance yet: nothing to cycle"
    );
    assert_eq!(
        sts_endpoint(&world).await,
        (sts.clone(), false),
        "nothing before approval"
    );

    let waiting = world.plans(false);
    assert_eq!(waiting.len(), 1, "{waiting:#?}");
    let plan = waiting[0]["plan_id"].as_str().expect("plan id").to_string();
    world.operate(&["approve", &plan, "--by", "alice", "--reason", "CHG-42"]);
    world.run_once("auto");

    assert_eq!(
        sts_endpoint(&world).await,
        (sts, true),
        "turned on once approved"
    );
    assert_eq!(
        actions(&world.incidents()[0]),
        pairs(&[("enable_endpoint_private_dns", "applied")])
    );
}
