//! The guard's limits end to end against the emulator: the kill switch mid-storm, scope rules and
//! the ignore tag, circuit breakers, verification with exact rollback, one fix for a storm, and
//! dry-run permission checks.

use aws_sdk_ec2::types::Tag;
use nodemedic::aws::AwsResultExt;
use nodemedic::lab;
use serde_json::{Value, json};

use crate::breakage::{
    TOKEN, broken_nodegroup, decisions, only_local, policy_text, publish, publish_lab_002,
    the_incident,
};
use crate::support::{WebhookSink, World, actions, http, incident_of, pairs, stderr};

#[tokio::test(flavor = "multi_thread")]
async fn the_kill_switch_stops_a_storm_mid_way_without_a_restart() {
    let world = World::new(3).await;
    let first = broken_nodegroup(&world, "storm-a", "10.42.128.0/24").await;
    let second = broken_nodegroup(&world, "storm-b", "10.42.129.0/24").await;
    let third = broken_nodegroup(&world, "storm-c", "10.42.130.0/24").await;
    let address = "127.0.0.1:0".to_string();
    let daemon = world.start_daemon(
        "auto",
        &[
            ("NODEMEDIC_HTTP__ADDRESS", &address),
            ("NODEMEDIC_HTTP__TOKENS__ALICE", TOKEN),
        ],
    );
    let port = daemon.http_port(60);

    publish(&world, &first).await;
    world.wait_until("the first fix", 60, |incidents| {
        incident_of(incidents, "storm-a").is_some_and(|i| i["outcome"] == "fixed")
    });
    let (status, _) = http(
        port,
        "PUT",
        "/v1/kill-switch",
        Some(TOKEN),
        Some(r#"{"on": true, "reason": "storm: hands off"}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(
        http(
            port,
            "PUT",
            "/v1/kill-switch",
            None,
            Some(r#"{"on": false}"#)
        )
        .0,
        401,
        "turning it off needs a token too"
    );
    publish(&world, &second).await;
    publish(&world, &third).await;
    world.wait_until("the held incidents", 60, |incidents| {
        ["storm-b", "storm-c"]
            .iter()
            .all(|n| incident_of(incidents, n).is_some_and(|i| i["outcome"] == "planned"))
    });

    for broken in [&second, &third] {
        assert!(
            only_local(&world.routes(&broken.route_table).await),
            "{} was touched with the kill switch on",
            broken.nodegroup
        );
        assert!(world.nodegroup_updates(&broken.nodegroup).await.is_empty());
    }
    let incidents = world.incidents();
    let held = the_incident(&incidents, "storm-b")["incident_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(
        decisions(&world, &held)
            .iter()
            .any(|(_, decision, reason)| decision == "hold"
                && reason.contains("kill switch")
                && reason.contains("alice")),
        "{:#?}",
        decisions(&world, &held)
    );
    let status = world.operate(&["kill-switch", "status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("ON"));

    // Off again: the next event of the storm is fixed, by the same daemon.
    assert_eq!(
        http(
            port,
            "PUT",
            "/v1/kill-switch",
            Some(TOKEN),
            Some(r#"{"on": false}"#)
        )
        .0,
        200
    );
    publish(&world, &second).await;
    world.wait_until("the fix after the kill switch", 60, |incidents| {
        incident_of(incidents, "storm-b").is_some_and(|i| i["outcome"] == "fixed")
    });
    drop(daemon);
    assert!(!only_local(&world.routes(&second.route_table).await));
    assert!(only_local(&world.routes(&third.route_table).await));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_verification_rolls_back_the_route_and_the_key_policy_exactly() {
    let world = World::new(3).await;
    let lab_000 = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    let lab_002 = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    // Something nodemedic cannot see keeps the relaunched instances from starting.
    for group in [&lab_000.group, &lab_002.group] {
        world
            .emulator
            .force_launch_failure(group, Some("Client.InternalError: Client error on launch"))
            .await
            .expect("forced failure");
    }
    let routes_before = world.routes(&lab_000.route_table).await;
    let policy_before = policy_text(&world, &lab_002.key_id).await;
    let sink = WebhookSink::start();
    let config = world.config_file(&format!(
        "[notify]\nwebhooks = [{{ url = \"{}\", format = \"json\" }}]\n",
        sink.url
    ));
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &lab_000.group,
        &lab_000.subnet,
    )
    .await
    .expect("event");
    publish_lab_002(&world, &lab_002).await;
    let first_launch = world
        .peek_bodies()
        .await
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .find(|e| e["detail"]["AutoScalingGroupName"] == json!(lab_000.group))
        .expect("the lab 000 event")["detail"]
        .clone();

    world.run_once_full(
        "auto",
        &["--config", &config],
        &[("NODEMEDIC_VERIFY__TIMEOUT_SECS", "3")],
    );

    assert_eq!(world.routes(&lab_000.route_table).await, routes_before);
    assert_eq!(policy_text(&world, &lab_002.key_id).await, policy_before);
    let incidents = world.incidents();
    assert_eq!(incidents.len(), 2);
    for (nodegroup, fix) in [
        (&lab_000.nodegroup, "add_nat_route"),
        (&lab_002.nodegroup, "patch_kms_key_policy"),
    ] {
        let incident = the_incident(&incidents, nodegroup);
        assert_eq!(incident["outcome"], "failed");
        assert_eq!(
            actions(incident),
            pairs(&[(fix, "rolled_back"), ("cycle_nodegroup", "applied")])
        );
        let id = incident["incident_id"].as_str().expect("id");
        let verification = world.records_of(id, "verification");
        assert_eq!(verification[0]["body"]["passed"], false);
        assert_eq!(world.records_of(id, "rollback").len(), 2);
    }
    let notices = sink.json();
    let escalations: Vec<&Value> = notices
        .iter()
        .filter(|n| n["event"] == "escalation")
        .collect();
    assert!(
        escalations.iter().any(|n| n["detail"]
            .as_str()
            .is_some_and(|d| d.contains("verification failed"))),
        "{notices:#?}"
    );
    assert_eq!(
        notices
            .iter()
            .filter(|n| n["event"] == "outcome" && n["outcome"] == "failed")
            .count(),
        2
    );

    // Never again on its own: the same failure seen again changes nothing, because this fix
    // already failed; the plan waits for a human instead.
    let breakers = String::from_utf8_lossy(&world.operate(&["breakers", "list", "--json"]).stdout)
        .into_owned();
    assert!(
        !breakers.contains("\"open\""),
        "two failures in two scopes open no breaker at the default threshold: {breakers}"
    );
    lab::put_event(
        &world.clients,
        &world.network.account,
        nodemedic::intake::LAUNCH_SUCCESSFUL,
        &first_launch,
        &lab_000.group,
    )
    .await
    .expect("event");
    world.run_once("auto");
    assert_eq!(world.routes(&lab_000.route_table).await, routes_before);
    let incident = the_incident(&world.incidents(), &lab_000.nodegroup).clone();
    assert_eq!(incident["outcome"], "failed");
    let id = incident["incident_id"].as_str().expect("id");
    let last = decisions(&world, id);
    assert!(
        last.last()
            .is_some_and(|(_, decision, reason)| decision == "hold"
                && reason.contains("does not retry a failed fix blindly")),
        "{last:#?}"
    );
    let waiting = world.plans(false);
    assert_eq!(waiting.len(), 1, "{waiting:#?}");

    // A human who removed the hidden cause approves the retry: it is applied, within the
    // cooldown, and verified.
    world
        .emulator
        .force_launch_failure(&lab_000.group, None)
        .await
        .expect("clear");
    let plan_id = waiting[0]["plan_id"].as_str().expect("plan");
    world.operate(&["approve", plan_id, "--by", "alice"]);
    world.run_once("auto");
    assert!(!only_local(&world.routes(&lab_000.route_table).await));
    assert_eq!(
        the_incident(&world.incidents(), &lab_000.nodegroup)["outcome"],
        "fixed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_breaker_opens_after_the_configured_failures_and_holds_its_scope() {
    let world = World::new(3).await;
    let first = broken_nodegroup(&world, "vpc-a", "10.42.128.0/24").await;
    let second = broken_nodegroup(&world, "vpc-b", "10.42.129.0/24").await;
    let third = broken_nodegroup(&world, "vpc-c", "10.42.130.0/24").await;
    world
        .emulator
        .deny(&["ec2:CreateRoute"])
        .await
        .expect("deny");
    publish(&world, &first).await;
    publish(&world, &second).await;
    let env = [("NODEMEDIC_GUARD__BREAKER_FAILURES", "2")];

    world.run_once_with("auto", &env);

    let incidents = world.incidents();
    for nodegroup in ["vpc-a", "vpc-b"] {
        let incident = the_incident(&incidents, nodegroup);
        assert_eq!(incident["outcome"], "failed");
        assert_eq!(
            actions(incident),
            pairs(&[("add_nat_route", "failed"), ("cycle_nodegroup", "skipped")])
        );
    }
    let breakers: Vec<Value> =
        String::from_utf8_lossy(&world.operate(&["breakers", "list", "--json"]).stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
    let open: Vec<&str> = breakers
        .iter()
        .filter(|b| b["state"] == "open")
        .filter_map(|b| b["scope"].as_str())
        .collect();
    let vpc_scope = format!("vpc:{}", world.network.vpc);
    let account_scope = format!("account:{}", world.network.account);
    assert!(open.contains(&vpc_scope.as_str()), "{breakers:#?}");
    assert!(
        !open.contains(&account_scope.as_str()) && !open.contains(&"global"),
        "an account's breaker needs twice as many failures, the global one four times: {breakers:#?}"
    );

    // The permission is back, but the scope stays observe-only until a human resets it.
    world.emulator.deny(&[]).await.expect("allow");
    publish(&world, &third).await;
    world.run_once_with("auto", &env);
    assert!(only_local(&world.routes(&third.route_table).await));
    let incidents = world.incidents();
    let held = the_incident(&incidents, "vpc-c");
    assert_eq!(held["outcome"], "planned");
    let id = held["incident_id"].as_str().expect("id").to_string();
    let held_back = decisions(&world, &id);
    assert!(
        held_back.iter().all(|(_, decision, _)| decision == "skip")
            && held_back[0]
                .2
                .contains(&format!("circuit breaker {vpc_scope}")),
        "{held_back:#?}"
    );
    let opened: usize = ["vpc-a", "vpc-b"]
        .iter()
        .map(|n| {
            let id = the_incident(&incidents, n)["incident_id"]
                .as_str()
                .expect("id")
                .to_string();
            world.records_of(&id, "breaker_opened").len()
        })
        .sum();
    assert_eq!(opened, 1, "the vpc breaker, recorded once");

    world.operate(&["breakers", "reset", &vpc_scope, "--by", "alice"]);
    publish(&world, &third).await;
    world.run_once_with("auto", &env);
    assert!(!only_local(&world.routes(&third.route_table).await));
    assert_eq!(
        the_incident(&world.incidents(), "vpc-c")["outcome"],
        "fixed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_scope_and_an_ignore_tag_are_never_touched() {
    let world = World::new(3).await;
    let lab_000 = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    let lab_002 = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    world
        .clients
        .ec2
        .create_tags()
        .resources(&lab_000.route_table)
        .tags(
            Tag::builder()
                .key("nodemedic.io/ignore")
                .value("true")
                .build(),
        )
        .send()
        .await
        .op("ec2:CreateTags")
        .expect("tag");
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &lab_000.group,
        &lab_000.subnet,
    )
    .await
    .expect("event");
    publish_lab_002(&world, &lab_002).await;
    let policy_before = policy_text(&world, &lab_002.key_id).await;

    world.run_once_with(
        "auto",
        &[(
            "NODEMEDIC_SCOPE__DENY_NODEGROUPS",
            "eks-workshop/new_nodegroup_1",
        )],
    );

    assert!(only_local(&world.routes(&lab_000.route_table).await));
    assert_eq!(policy_text(&world, &lab_002.key_id).await, policy_before);
    for nodegroup in [&lab_000.nodegroup, &lab_002.nodegroup] {
        assert!(world.nodegroup_updates(nodegroup).await.is_empty());
    }
    let incidents = world.incidents();
    for (nodegroup, why) in [
        (&lab_000.nodegroup, "carries the nodemedic.io/ignore tag"),
        (
            &lab_002.nodegroup,
            "nodegroup eks-workshop/new_nodegroup_1 is denied",
        ),
    ] {
        let incident = the_incident(&incidents, nodegroup);
        let id = incident["incident_id"].as_str().expect("id");
        let all = decisions(&world, id);
        assert!(
            all.iter().all(|(_, decision, _)| decision == "skip") && all[0].2.contains(why),
            "{nodegroup}: {all:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_whose_tags_cannot_be_read_is_not_touched() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    // The ignore tag (on by default) could be on the key: unreadable tags must not fail open.
    world
        .emulator
        .deny(&["kms:ListResourceTags"])
        .await
        .expect("deny");
    publish_lab_002(&world, &lab).await;
    let policy_before = policy_text(&world, &lab.key_id).await;

    world.run_once("auto");

    assert_eq!(policy_text(&world, &lab.key_id).await, policy_before);
    assert!(world.nodegroup_updates(&lab.nodegroup).await.is_empty());
    let incidents = world.incidents();
    let incident = the_incident(&incidents, &lab.nodegroup);
    assert_eq!(incident["cause"], "kms_key_policy_blocks_autoscaling");
    let id = incident["incident_id"].as_str().expect("id");
    let all = decisions(&world, id);
    assert!(
        all[0].1 == "skip" && all[0].2.contains("could not be read"),
        "{all:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_nodegroups_locked_out_by_one_key_get_one_incident_and_one_policy_change() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    let mut groups = vec![lab.group.clone()];
    for n in 2..=10 {
        groups.push(
            lab::nodegroup(
                &world.clients,
                &world.network,
                &format!("shared-key-{n}"),
                &world.network.private_subnet,
                (0, 1, 1),
                Some(&lab.launch_template),
            )
            .await
            .expect("nodegroup"),
        );
    }
    for group in &groups {
        lab::publish_launch_event(
            &world.clients,
            &world.network,
            group,
            &world.network.private_subnet,
        )
        .await
        .expect("event");
    }

    world.run_once("auto");

    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let incident = &incidents[0];
    assert_eq!(incident["cause"], "kms_key_policy_blocks_autoscaling");
    assert_eq!(incident["outcome"], "fixed");
    assert_eq!(
        incident["nodegroups"].as_array().map(Vec::len),
        Some(10),
        "{incident:#}"
    );
    let id = incident["incident_id"].as_str().expect("id");
    let policy_writes = world
        .records_of(id, "step_result")
        .iter()
        .filter(|r| r["body"]["fix"] == "patch_kms_key_policy")
        .count();
    assert_eq!(policy_writes, 1);
    let policy = world.key_policy(&lab.key_id).await;
    assert_eq!(
        policy["Statement"].as_array().map(Vec::len),
        Some(3),
        "two statements added once: {policy:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_says_whether_the_role_may_apply_each_step_and_changes_nothing() {
    let world = World::new(3).await;
    let lab = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    world
        .emulator
        .deny(&["ec2:CreateRoute"])
        .await
        .expect("deny");
    lab::publish_launch_event(&world.clients, &world.network, &lab.group, &lab.subnet)
        .await
        .expect("event");

    let output = world.run_once("dry-run");

    assert!(only_local(&world.routes(&lab.route_table).await));
    let incidents = world.incidents();
    let id = incidents[0]["incident_id"].as_str().expect("id");
    let checks: Vec<(String, String)> = world
        .records_of(id, "permission_check")
        .iter()
        .map(|r| {
            (
                r["body"]["fix"].as_str().unwrap_or("").to_string(),
                r["body"]["permission"]["result"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        pairs(&[
            ("add_nat_route", "denied"),
            ("cycle_nodegroup", "unchecked")
        ]),
        "{}",
        stderr(&output)
    );

    world.emulator.deny(&[]).await.expect("allow");
    lab::publish_launch_event(&world.clients, &world.network, &lab.group, &lab.subnet)
        .await
        .expect("event");
    world.run_once("dry-run");
    assert!(only_local(&world.routes(&lab.route_table).await));
    let last = world
        .records_of(id, "permission_check")
        .into_iter()
        .find(|r| {
            r["body"]["fix"] == "add_nat_route" && r["body"]["permission"]["result"] == "allowed"
        });
    assert!(last.is_some(), "the check says allowed once the role may");
}
