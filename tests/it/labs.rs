//! The two seed labs end to end: world built with ordinary API calls, event delivered through
//! EventBridge PutEvents to SQS, the real binary run against the emulator, AWS state asserted.

use nodemedic::lab;
use serde_json::json;

use crate::support::{World, actions, pairs};

const SLR: &str = "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling";

#[tokio::test(flavor = "multi_thread")]
async fn lab_002_auto_patches_the_key_policy_and_cycles_the_nodegroup() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    assert_eq!(
        world.nodegroup_status(&lab.nodegroup).await.0,
        "DEGRADED",
        "the emulator fails KMS-blocked launches"
    );
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &lab.group,
        &world.network.private_subnet,
    )
    .await
    .expect("event");

    world.run_once("auto");

    let policy = world.key_policy(&lab.key_id).await;
    let statements = policy["Statement"].as_array().expect("statements");
    assert_eq!(
        statements.len(),
        3,
        "the old statement plus exactly two: {policy:#}"
    );
    let original: serde_json::Value = serde_json::from_str(&lab.policy).unwrap();
    assert_eq!(
        statements[0], original["Statement"][0],
        "the existing statement is kept as it was"
    );
    assert_eq!(statements[1]["Principal"]["AWS"], SLR);
    assert_eq!(
        statements[1]["Action"],
        json!([
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:ReEncrypt*",
            "kms:GenerateDataKey*",
            "kms:DescribeKey"
        ])
    );
    assert_eq!(statements[2]["Action"], "kms:CreateGrant");
    assert_eq!(
        statements[2]["Condition"]["Bool"]["kms:GrantIsForAWSResource"],
        "true"
    );
    assert!(
        statements
            .iter()
            .all(|s| s["Principal"] != json!("*") && s["Principal"]["AWS"] != json!("*"))
    );

    assert_eq!(
        world.nodegroup_updates(&lab.nodegroup).await,
        vec![
            vec!["DesiredSize=0".to_string()],
            vec!["DesiredSize=1".to_string()]
        ],
        "the nodegroup went to 0 and back to 1"
    );
    assert_eq!(
        world.nodegroup_status(&lab.nodegroup).await,
        ("ACTIVE".to_string(), 1)
    );

    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1);
    let incident = &incidents[0];
    assert_eq!(incident["cause"], "kms_key_policy_blocks_autoscaling");
    assert_eq!(incident["cluster"], lab::CLUSTER);
    assert_eq!(incident["nodegroup"], "new_nodegroup_1");
    assert_eq!(incident["mode"], "auto");
    assert_eq!(incident["outcome"], "fixed");
    assert_eq!(
        actions(incident),
        pairs(&[
            ("patch_kms_key_policy", "applied"),
            ("cycle_nodegroup", "applied")
        ])
    );
    assert_eq!(
        world.messages_waiting(&world.queue.url).await,
        0,
        "the message was deleted"
    );

    let shown = world.show(incident["incident_id"].as_str().unwrap());
    let records = shown["records"].as_array().unwrap();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    let intent = kinds
        .iter()
        .position(|k| *k == "step_intent")
        .expect("an intent record");
    let result = kinds
        .iter()
        .position(|k| *k == "step_result")
        .expect("a result record");
    assert!(
        intent < result,
        "the intent is recorded before the mutation's result: {kinds:?}"
    );
    let before = &records[result]["body"]["result"]["before"]["policy"];
    let before: serde_json::Value =
        serde_json::from_str(before.as_str().expect("old policy recorded")).unwrap();
    assert_eq!(before, original, "the old policy is recorded for rollback");
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_000_auto_routes_the_subnet_to_the_clusters_nat_gateway_and_cycles() {
    let world = World::new(3).await;
    let lab = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    lab::publish_launch_event(&world.clients, &world.network, &lab.group, &lab.subnet)
        .await
        .expect("event");

    world.run_once("auto");

    let routes = world.routes(&lab.route_table).await;
    assert!(
        routes.contains(&(
            "0.0.0.0/0".to_string(),
            world.network.nat_gateway.clone(),
            "active".to_string()
        )),
        "a default route to the cluster's NAT gateway: {routes:?}"
    );
    assert_eq!(
        routes.len(),
        2,
        "only the default route was added: {routes:?}"
    );
    assert_eq!(
        world.nodegroup_updates(&lab.nodegroup).await,
        vec![
            vec!["DesiredSize=0".to_string()],
            vec!["DesiredSize=1".to_string()]
        ]
    );
    assert_eq!(
        world.nodegroup_updates("default").await,
        Vec::<Vec<String>>::new(),
        "the healthy nodegroup is not touched"
    );
    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["cause"], "subnet_no_egress_route");
    assert_eq!(incidents[0]["outcome"], "fixed");
    assert_eq!(
        actions(&incidents[0]),
        pairs(&[("add_nat_route", "applied"), ("cycle_nodegroup", "applied")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_plans_both_labs_and_changes_nothing_at_all() {
    let world = World::new(3).await;
    let lab_000 = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    let lab_002 = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &lab_000.group,
        &lab_000.subnet,
    )
    .await
    .expect("event");
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &lab_002.group,
        &world.network.private_subnet,
    )
    .await
    .expect("event");
    let before = snapshot(&world).await;

    world.run_once("dry-run");

    assert_eq!(snapshot(&world).await, before, "dry-run mutated AWS state");
    let incidents = world.incidents();
    assert_eq!(incidents.len(), 2);
    for incident in &incidents {
        assert_eq!(incident["mode"], "dry-run");
        assert_eq!(incident["outcome"], "planned");
        assert!(
            actions(incident)
                .iter()
                .all(|(_, status)| status == "planned")
        );
    }
    let mut causes: Vec<&str> = incidents
        .iter()
        .map(|i| i["cause"].as_str().unwrap())
        .collect();
    causes.sort();
    assert_eq!(
        causes,
        vec![
            "kms_key_policy_blocks_autoscaling",
            "subnet_no_egress_route"
        ]
    );
    assert_eq!(world.messages_waiting(&world.queue.url).await, 0);
}

/// Everything a fix could change: every route table of the VPC, every key policy, every
/// nodegroup's scaling and update history.
async fn snapshot(world: &World) -> serde_json::Value {
    let tables = world
        .clients
        .ec2
        .describe_route_tables()
        .send()
        .await
        .expect("route tables");
    let mut routes: Vec<_> = tables
        .route_tables()
        .iter()
        .map(|t| {
            let facts = nodemedic::aws::collect::route_table_facts(t);
            json!({"id": facts.id, "routes": facts.routes})
        })
        .collect();
    routes.sort_by_key(|t| t["id"].as_str().unwrap_or_default().to_string());
    let keys = world.clients.kms.list_keys().send().await.expect("keys");
    let mut policies = Vec::new();
    for key in keys.keys() {
        let id = key.key_id().unwrap_or_default();
        policies.push(json!({"key": id, "policy": world.key_policy(id).await}));
    }
    let mut nodegroups = Vec::new();
    for name in ["default", "new_nodegroup_1", "new_nodegroup_2"] {
        nodegroups.push(json!({
            "name": name,
            "status": world.nodegroup_status(name).await,
            "updates": world.nodegroup_updates(name).await,
        }));
    }
    json!({"routes": routes, "policies": policies, "nodegroups": nodegroups})
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_deliveries_change_nothing_twice() {
    let world = World::new(5).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &lab.group,
        &world.network.private_subnet,
    )
    .await
    .expect("event");
    let bodies = world.peek_bodies().await;
    assert_eq!(bodies.len(), 1);
    world.send_raw(&bodies[0]).await;
    world.send_raw(&bodies[0]).await;

    world.run_once("auto");
    // A redelivery long after the fix must not act either.
    world.send_raw(&bodies[0]).await;
    world.run_once("auto");

    let policy = world.key_policy(&lab.key_id).await;
    assert_eq!(
        policy["Statement"].as_array().unwrap().len(),
        3,
        "statements added once"
    );
    assert_eq!(
        world.nodegroup_updates(&lab.nodegroup).await.len(),
        2,
        "one cycle: two updates"
    );
    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "one incident for one event id");
    assert_eq!(incidents[0]["events"], 1);
    let shown = world.show(incidents[0]["incident_id"].as_str().unwrap());
    let duplicates = shown["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "event_duplicate")
        .count();
    assert_eq!(
        duplicates, 3,
        "each extra delivery is recorded as a duplicate"
    );
    assert_eq!(world.messages_waiting(&world.queue.url).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_key_is_reported_and_nothing_is_changed() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    world
        .clients
        .kms
        .disable_key()
        .key_id(&lab.key_id)
        .send()
        .await
        .expect("disable key");
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &lab.group,
        &world.network.private_subnet,
    )
    .await
    .expect("event");

    world.run_once("auto");

    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["cause"], "kms_key_unusable");
    assert_eq!(incidents[0]["outcome"], "no_fix");
    assert!(actions(&incidents[0]).is_empty());
    assert_eq!(
        world.key_policy(&lab.key_id).await["Statement"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(world.nodegroup_updates(&lab.nodegroup).await.is_empty());
    let shown = world.show(incidents[0]["incident_id"].as_str().unwrap());
    let plan = shown["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "plan")
        .unwrap();
    assert!(
        plan["body"]["notes"][0]["text"]
            .as_str()
            .unwrap()
            .contains("aws kms enable-key")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_nat_gateway_the_route_is_not_invented() {
    let world = World::new(3).await;
    world
        .clients
        .ec2
        .delete_nat_gateway()
        .nat_gateway_id(&world.network.nat_gateway)
        .send()
        .await
        .expect("delete NAT gateway");
    let lab = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    lab::publish_launch_event(&world.clients, &world.network, &lab.group, &lab.subnet)
        .await
        .expect("event");

    world.run_once("auto");

    assert_eq!(
        world.routes(&lab.route_table).await.len(),
        1,
        "no route added"
    );
    assert!(
        world.nodegroup_updates(&lab.nodegroup).await.is_empty(),
        "no cycle without a fix"
    );
    let incidents = world.incidents();
    assert_eq!(incidents[0]["cause"], "subnet_no_egress_route");
    assert_eq!(incidents[0]["outcome"], "no_fix");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subnet_that_already_has_its_route_is_healthy_and_opens_no_incident() {
    let world = World::new(3).await;
    let lab = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    world
        .clients
        .ec2
        .create_route()
        .route_table_id(&lab.route_table)
        .destination_cidr_block("0.0.0.0/0")
        .nat_gateway_id(&world.network.nat_gateway)
        .send()
        .await
        .expect("route");
    lab::publish_launch_event(&world.clients, &world.network, &lab.group, &lab.subnet)
        .await
        .expect("event");
    lab::publish_launch_event(&world.clients, &world.network, &lab.group, &lab.subnet)
        .await
        .expect("event");

    world.run_once("auto");

    assert!(world.incidents().is_empty());
    let healthy: Vec<_> = world
        .loose_records()
        .into_iter()
        .filter(|r| r.kind == "event_healthy")
        .collect();
    assert_eq!(healthy.len(), 2);
    assert!(
        healthy.iter().any(|r| r.body["cached"] == true),
        "the second launch reuses the route table's verdict"
    );
}
