//! Incident sources EKS gives no event for: the health watcher, the join deadline, and
//! CloudTrail preflights; and fixes that wait for approval even in auto mode.

use nodemedic::lab::{self, CLUSTER};
use serde_json::json;

use crate::support::{World, actions, pairs};

pub(crate) fn cloudtrail(account: &str, event_name: &str, nodegroup: &str) -> String {
    json!({
        "version": "0", "id": format!("ct-{event_name}-{nodegroup}"), "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.eks", "account": account, "time": "2026-11-21T00:00:00Z", "region": "us-west-2",
        "resources": [],
        "detail": {
            "eventSource": "eks.amazonaws.com", "eventName": event_name,
            "requestParameters": {"name": CLUSTER, "nodegroupName": nodegroup},
            "responseElements": {"nodegroup": {"nodegroupName": nodegroup, "clusterName": CLUSTER}}
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_health_watcher_turns_a_degraded_nodegroup_into_one_incident() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    let watch = [("NODEMEDIC_WATCH__CLUSTERS", CLUSTER)];

    world.run_once_with("dry-run", &watch);
    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0]["nodegroup"], lab.nodegroup);
    assert_eq!(incidents[0]["cause"], "kms_key_policy_blocks_autoscaling");
    let shown = world.show(incidents[0]["incident_id"].as_str().unwrap());
    let received = shown["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "event_received")
        .unwrap();
    assert_eq!(received["body"]["trigger"]["kind"]["type"], "health");

    // Another replica (or a restart) publishes the same state again: same id, no second incident.
    world.run_once_with("dry-run", &watch);
    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["events"], 1);
    let shown = world.show(incidents[0]["incident_id"].as_str().unwrap());
    assert!(
        shown["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "event_duplicate")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_nodemedic_event_is_refused_and_a_signed_one_is_not() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    // Anyone who may send to the queue writes a health event in nodemedic's own shape.
    let forged = json!({
        "version": "0", "id": "forged-health-1", "detail-type": "Nodegroup Health Issue",
        "source": "nodemedic", "account": world.network.account, "time": "2026-11-21T00:00:00Z",
        "region": "us-west-2", "resources": [],
        "detail": {"cluster": CLUSTER, "nodegroup": lab.nodegroup, "status": "DEGRADED", "issues": []},
        "nodemedic-signature": "00".repeat(32)
    });
    world.send_raw(&forged.to_string()).await;
    world.run_once("auto");
    assert!(world.incidents().is_empty(), "a forged event opens nothing");
    let refused = world
        .loose_records()
        .into_iter()
        .find(|r| r.kind == "event_ignored")
        .expect("the refusal is recorded");
    assert!(
        refused
            .body
            .to_string()
            .contains("signature does not match"),
        "{}",
        refused.body
    );
    assert_eq!(
        world.messages_waiting(&world.queue.url).await,
        0,
        "and deleted"
    );
    // The watcher's own events are signed with the key the store holds, and go through.
    world.run_once_with("dry-run", &[("NODEMEDIC_WATCH__CLUSTERS", CLUSTER)]);
    assert_eq!(world.incidents().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_check_after_the_deadline_opens_an_incident_when_eks_says_the_node_never_joined() {
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
        .nat_gateway_id(&world.network.nat_gateway)
        .send()
        .await
        .unwrap();
    let group = lab::nodegroup(c, &world.network, "late", &subnet, (0, 1, 1), None)
        .await
        .unwrap();
    lab::publish_launch_event(c, &world.network, &group, &subnet)
        .await
        .unwrap();
    let deadline = [("NODEMEDIC_JOIN__DEADLINE_SECS", "2")];

    world.run_once_with("dry-run", &deadline);
    assert!(
        world.incidents().is_empty(),
        "the launch itself looks healthy"
    );
    let instance = c
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&group)
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()[0]
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    // EKS reports the instance after it missed the join window (moto cannot: the emulator does).
    world
        .emulator
        .set_nodegroup_health(
            CLUSTER,
            "late",
            "DEGRADED",
            json!([{"code": "NodeCreationFailure", "message": "Instances failed to join the kubernetes cluster", "resourceIds": [instance]}]),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    world.run_once_with("dry-run", &deadline);

    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0]["cause"], "node_creation_failure");
    let shown = world.show(incidents[0]["incident_id"].as_str().unwrap());
    let received = shown["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "event_received")
        .unwrap();
    assert_eq!(received["body"]["trigger"]["kind"]["type"], "join_check");
    assert_eq!(received["body"]["trigger"]["kind"]["instance_id"], instance);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_check_for_a_node_that_joined_is_quiet() {
    let world = World::new(3).await;
    let launched = crate::cluster_view::launched(&world, "fine").await;
    // The cluster's API (a stand-in) shows the instance's Node, Ready.
    let server = crate::cluster_view::served(&world, CLUSTER).await;
    crate::cluster_view::register(
        &server,
        &launched,
        "fine",
        nodemedic::lab::apiserver::objects::Ready::True,
    );
    let deadline = [("NODEMEDIC_JOIN__DEADLINE_SECS", "1")];
    world.run_once_with("dry-run", &deadline);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    world.run_once_with("dry-run", &deadline);
    assert!(world.incidents().is_empty());
    let checks = world
        .loose_records()
        .into_iter()
        .filter(|r| r.kind == "event_healthy" && r.body["trigger"]["kind"]["type"] == "join_check")
        .count();
    assert_eq!(checks, 1, "the join check ran and found nothing wrong");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_check_that_cannot_ask_the_cluster_waits_for_the_eks_signal() {
    let world = World::new(3).await;
    crate::cluster_view::launched(&world, "unseen").await;
    // The workshop cluster's API is not reachable: the emulator's CA data is no certificate.
    let deadline = [("NODEMEDIC_JOIN__DEADLINE_SECS", "1")];
    world.run_once_with("dry-run", &deadline);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let second = world.run_once_with("dry-run", &deadline);
    assert!(world.incidents().is_empty());
    let healthy = world
        .loose_records()
        .into_iter()
        .filter(|r| r.kind == "event_healthy" && r.body["trigger"]["kind"]["type"] == "join_check")
        .count();
    assert_eq!(healthy, 0, "an unanswered question is not a healthy answer");
    let log = crate::support::stderr(&second);
    let line = log
        .lines()
        .find(|l| l.contains("the join check waits for EKS's own signal"))
        .unwrap_or_else(|| panic!("the join check is delayed to EKS's signal: {log}"));
    let remaining: i64 = line
        .split("remaining_secs")
        .nth(1)
        .and_then(|rest| {
            rest.trim_start_matches(['=', '"', ':', ' '])
                .split(|c: char| !c.is_ascii_digit())
                .next()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((880..=900).contains(&remaining), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloudtrail_create_nodegroup_is_checked_before_any_instance_fails() {
    let world = World::new(3).await;
    let c = &world.clients;
    let subnet = lab::subnet(c, &world.network.vpc, "10.42.192.0/19")
        .await
        .unwrap();
    lab::route_table(c, &world.network.vpc, &subnet)
        .await
        .unwrap();
    lab::nodegroup(c, &world.network, "brand-new", &subnet, (0, 2, 0), None)
        .await
        .unwrap();
    world
        .send_raw(&cloudtrail(
            &world.network.account,
            "CreateNodegroup",
            "brand-new",
        ))
        .await;

    world.run_once("dry-run");

    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["cause"], "subnet_no_egress_route");
    assert_eq!(
        actions(&incidents[0]),
        pairs(&[("add_nat_route", "planned")]),
        "no instance yet: nothing to cycle"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fix_of_shared_infrastructure_waits_for_approval_even_in_auto_mode() {
    let world = World::new(3).await;
    let c = &world.clients;
    // A second NAT gateway in the zone survives the first one's deletion.
    let allocation = c
        .ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await
        .unwrap();
    c.ec2
        .create_nat_gateway()
        .subnet_id(&world.network.public_subnet)
        .allocation_id(allocation.allocation_id().unwrap())
        .send()
        .await
        .unwrap();
    c.ec2
        .delete_nat_gateway()
        .nat_gateway_id(&world.network.nat_gateway)
        .send()
        .await
        .unwrap();
    let before = world.routes(&world.network.private_route_table).await;
    world
        .send_raw(&cloudtrail(
            &world.network.account,
            "UpdateNodegroupConfig",
            "default",
        ))
        .await;

    world.run_once("auto");

    let incidents = world.incidents();
    assert_eq!(incidents[0]["cause"], "default_route_blackhole");
    assert_eq!(incidents[0]["outcome"], "planned");
    assert_eq!(
        actions(&incidents[0]),
        pairs(&[
            ("replace_default_route", "planned"),
            ("cycle_nodegroup", "planned")
        ])
    );
    assert_eq!(
        world.routes(&world.network.private_route_table).await,
        before,
        "nothing changed without approval"
    );
    assert!(world.nodegroup_updates("default").await.is_empty());
}
