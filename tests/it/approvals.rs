//! Approvals end to end against the emulator: a plan waits, a human approves it through the CLI
//! or the HTTP API, and the daemon applies it only while the world still matches it.

use nodemedic::aws::AwsResultExt;
use nodemedic::lab;
use serde_json::{Value, json};

use crate::breakage::{TOKEN, grants_autoscaling, policy_text, publish_lab_002};
use crate::support::{Daemon, WebhookSink, World, http, stderr};

#[tokio::test(flavor = "multi_thread")]
async fn an_approved_plan_is_applied_exactly_once_through_the_cli() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    let sink = WebhookSink::start();
    let config = world.config_file(&format!(
        "[notify]\nwebhooks = [{{ url = \"{0}\", format = \"slack\" }}, \
         {{ url = \"{0}\", format = \"template\", template = \"{{event}} {{plan_id}} {{outcome}}\" }}]\n",
        sink.url
    ));
    publish_lab_002(&world, &lab).await;

    world.run_once_full("approve", &["--config", &config], &[]);

    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["outcome"], "planned");
    let waiting = world.plans(false);
    assert_eq!(waiting.len(), 1, "{waiting:#?}");
    let plan_id = waiting[0]["plan_id"].as_str().expect("plan id").to_string();
    assert_eq!(waiting[0]["status"], "awaiting_approval");
    assert_eq!(plan_id, incidents[0]["plan_id"]);
    assert!(
        !grants_autoscaling(&world.key_policy(&lab.key_id).await),
        "nothing is applied before approval"
    );
    assert!(world.nodegroup_updates(&lab.nodegroup).await.is_empty());
    let announced = sink.received();
    assert!(
        announced
            .iter()
            .any(|b| b.contains("Plan waiting for approval") && b.contains(&plan_id)),
        "slack message: {announced:#?}"
    );
    assert!(
        announced.contains(&format!("plan_awaiting_approval {plan_id} ")),
        "template message: {announced:#?}"
    );

    let refused = world.nodemedic(
        &[
            "approve",
            "plan-0000000000000000",
            "--audit-db",
            world.audit_db().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(
        !refused.status.success(),
        "an unknown plan cannot be approved"
    );
    world.operate(&["approve", &plan_id, "--by", "alice", "--reason", "CHG-1234"]);
    assert_eq!(world.plans(false).len(), 0);

    world.run_once_full("approve", &["--config", &config], &[]);

    let policy = world.key_policy(&lab.key_id).await;
    assert!(grants_autoscaling(&policy), "{policy:#}");
    assert_eq!(
        world.nodegroup_updates(&lab.nodegroup).await,
        vec![
            vec!["DesiredSize=0".to_string()],
            vec!["DesiredSize=1".to_string()]
        ]
    );
    let incidents = world.incidents();
    assert_eq!(incidents[0]["outcome"], "fixed");
    let plan = &world.plans(true)[0];
    assert_eq!(
        (
            &plan["status"],
            &plan["decided_by"],
            &plan["decision_reason"]
        ),
        (&json!("applied"), &json!("alice"), &json!("CHG-1234"))
    );
    let incident = incidents[0]["incident_id"].as_str().expect("id");
    let approvals = world.records_of(incident, "approval_decision");
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["body"]["by"], "alice");
    let applied_by: Vec<Value> = world
        .records_of(incident, "guard_decision")
        .iter()
        .filter(|r| r["body"]["decision"]["decision"] == "apply")
        .map(|r| r["body"]["decision"]["approved_by"].clone())
        .collect();
    assert_eq!(applied_by, vec![json!("alice"), json!("alice")]);
    assert_eq!(world.records_of(incident, "verification").len(), 1);
    assert!(
        sink.received()
            .iter()
            .any(|b| b == &format!("outcome {plan_id} fixed")),
        "{:#?}",
        sink.received()
    );

    // Applied once: another pass finds nothing approved to apply.
    world.run_once("approve");
    assert_eq!(world.nodegroup_updates(&lab.nodegroup).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_api_needs_a_token_and_an_approval_wakes_the_running_daemon() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    let address = "127.0.0.1:0".to_string();
    // A poll interval far beyond the test: only the API's wake-up can make the daemon act.
    let daemon: Daemon = world.start_daemon(
        "approve",
        &[
            ("NODEMEDIC_HTTP__ADDRESS", &address),
            ("NODEMEDIC_HTTP__TOKENS__ALICE", TOKEN),
            ("NODEMEDIC_GUARD__APPROVAL_POLL_SECS", "3600"),
        ],
    );
    let port = daemon.http_port(60);
    publish_lab_002(&world, &lab).await;
    world.wait_until("a plan awaiting approval", 60, |incidents| {
        incidents.iter().any(|i| i["outcome"] == "planned")
    });

    assert_eq!(http(port, "GET", "/healthz", None, None).0, 200);
    assert_eq!(http(port, "GET", "/v1/plans", None, None).0, 401);
    assert_eq!(
        http(
            port,
            "GET",
            "/v1/plans",
            Some("not-a-real-token-at-all"),
            None
        )
        .0,
        401
    );
    let (status, plans) = http(port, "GET", "/v1/plans", Some(TOKEN), None);
    assert_eq!(status, 200);
    let plan_id = plans[0]["plan_id"].as_str().expect("a plan").to_string();
    let approve = format!("/v1/plans/{plan_id}/approve");
    assert_eq!(http(port, "POST", &approve, None, None).0, 401);
    assert_eq!(
        world.plans(false).len(),
        1,
        "a refused request changes nothing"
    );
    assert_eq!(
        http(
            port,
            "POST",
            "/v1/plans/plan-0000000000000000/approve",
            Some(TOKEN),
            None
        )
        .0,
        404
    );

    let (status, decided) = http(
        port,
        "POST",
        &approve,
        Some(TOKEN),
        Some(r#"{"reason": "CHG-77"}"#),
    );
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["decided_by"], "alice");
    assert_eq!(
        http(port, "POST", &approve, Some(TOKEN), None).0,
        409,
        "a plan is decided once"
    );

    world.wait_until("the approved plan applied", 60, |incidents| {
        incidents.iter().any(|i| i["outcome"] == "fixed")
    });
    let log = daemon.stop();
    assert!(
        grants_autoscaling(&world.key_policy(&lab.key_id).await),
        "{log}"
    );
    let plan = &world.plans(true)[0];
    assert_eq!(
        (&plan["status"], &plan["decided_by"]),
        (&json!("applied"), &json!("alice"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_the_world_moved_away_from_is_not_applied_and_is_asked_for_again() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    publish_lab_002(&world, &lab).await;
    world.run_once("approve");
    let first = world.plans(false)[0]["plan_id"]
        .as_str()
        .expect("plan")
        .to_string();

    // Someone edits the key policy after the plan was made, before it is approved.
    let mut edited: Value = serde_json::from_str(&lab.policy).expect("policy");
    edited["Statement"]
        .as_array_mut()
        .expect("statements")
        .push(json!({
            "Sid": "AuditorsDescribe",
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:aws:iam::{}:role/auditor", world.network.account) },
            "Action": "kms:DescribeKey",
            "Resource": "*"
        }));
    let edited = edited.to_string();
    world
        .clients
        .kms
        .put_key_policy()
        .key_id(&lab.key_id)
        .policy_name("default")
        .policy(&edited)
        .send()
        .await
        .op("kms:PutKeyPolicy")
        .expect("edit");
    world.operate(&["approve", &first, "--by", "alice"]);

    world.run_once("approve");

    assert_eq!(
        policy_text(&world, &lab.key_id).await,
        edited,
        "a stale plan never overwrites the edit"
    );
    assert!(world.nodegroup_updates(&lab.nodegroup).await.is_empty());
    let plans = world.plans(true);
    let status_of = |id: &str| {
        plans
            .iter()
            .find(|p| p["plan_id"] == id)
            .map(|p| p["status"].clone())
    };
    assert_eq!(status_of(&first), Some(json!("stale")));
    let second: Vec<&Value> = plans
        .iter()
        .filter(|p| p["status"] == "awaiting_approval")
        .collect();
    assert_eq!(second.len(), 1, "the new plan is asked for: {plans:#?}");
    let second = second[0]["plan_id"].as_str().expect("plan").to_string();
    assert_ne!(second, first);
    let incident = world.incidents()[0]["incident_id"]
        .as_str()
        .expect("id")
        .to_string();
    let stale = world.records_of(&incident, "plan_stale");
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0]["body"]["new_plan_id"], json!(second));
    assert!(
        stale[0]["body"]["why"]
            .as_str()
            .is_some_and(|why| why.contains(&lab.key_arn)),
        "{stale:#?}"
    );

    world.operate(&["approve", &second, "--by", "alice"]);
    world.run_once("approve");
    let policy = world.key_policy(&lab.key_id).await;
    assert!(grants_autoscaling(&policy));
    assert!(
        policy["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .any(|s| s["Sid"] == "AuditorsDescribe"),
        "the edit is kept: {policy:#}"
    );
    assert_eq!(world.incidents()[0]["outcome"], "fixed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approved_plan_whose_cause_went_away_is_not_applied() {
    let world = World::new(3).await;
    let lab = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    lab::publish_launch_event(&world.clients, &world.network, &lab.group, &lab.subnet)
        .await
        .expect("event");
    world.run_once("approve");
    let plan = world.plans(false)[0]["plan_id"]
        .as_str()
        .expect("plan")
        .to_string();
    // Someone adds the route by hand before approving.
    world
        .clients
        .ec2
        .create_route()
        .route_table_id(&lab.route_table)
        .destination_cidr_block("0.0.0.0/0")
        .nat_gateway_id(&world.network.nat_gateway)
        .send()
        .await
        .op("ec2:CreateRoute")
        .expect("route");
    world.operate(&["approve", &plan]);

    world.run_once("approve");

    assert!(world.nodegroup_updates(&lab.nodegroup).await.is_empty());
    assert_eq!(world.plans(true)[0]["status"], "stale");
    assert_eq!(world.incidents()[0]["outcome"], "resolved");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_not_acted_on_within_its_ttl_expires_and_nothing_is_applied() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    publish_lab_002(&world, &lab).await;
    world.run_once("approve");
    let plan_id = world.plans(false)[0]["plan_id"]
        .as_str()
        .expect("plan")
        .to_string();
    world.operate(&["approve", &plan_id, "--by", "alice"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));

    world.run_once_with("approve", &[("NODEMEDIC_GUARD__APPROVAL_TTL_SECS", "1")]);

    assert!(!grants_autoscaling(&world.key_policy(&lab.key_id).await));
    assert!(world.nodegroup_updates(&lab.nodegroup).await.is_empty());
    let plan = &world.plans(true)[0];
    assert_eq!(plan["status"], "expired");
    let incident = world.incidents()[0]["incident_id"]
        .as_str()
        .expect("id")
        .to_string();
    let decisions = world.records_of(&incident, "approval_decision");
    assert_eq!(
        decisions
            .iter()
            .map(|d| d["body"]["decision"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        vec!["approved", "expired"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_nobody_decides_within_its_ttl_expires_and_cannot_be_approved() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    publish_lab_002(&world, &lab).await;
    world.run_once("approve");
    let plan_id = world.plans(false)[0]["plan_id"]
        .as_str()
        .expect("plan")
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // The daemon's next pass expires it.
    world.run_once_with("approve", &[("NODEMEDIC_GUARD__PLAN_TTL_SECS", "1")]);
    assert_eq!(world.plans(true)[0]["status"], "expired");
    let late = world.try_operate(&["approve", &plan_id], &[]);
    assert!(!late.status.success());
    assert!(
        stderr(&late).contains("expired, not awaiting approval"),
        "{}",
        stderr(&late)
    );
    assert!(!grants_autoscaling(&world.key_policy(&lab.key_id).await));
    let incident = world.incidents()[0]["incident_id"]
        .as_str()
        .expect("id")
        .to_string();
    let decisions = world.records_of(&incident, "approval_decision");
    assert_eq!(decisions.len(), 1, "{decisions:#?}");
    assert_eq!(decisions[0]["body"]["decision"], "expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_after_the_plan_ttl_is_refused_even_before_the_daemon_expires_it() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    publish_lab_002(&world, &lab).await;
    world.run_once("approve");
    let plan_id = world.plans(false)[0]["plan_id"]
        .as_str()
        .expect("plan")
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let late = world.try_operate(
        &["approve", &plan_id],
        &[("NODEMEDIC_GUARD__PLAN_TTL_SECS", "1")],
    );
    assert!(!late.status.success(), "approved after its time");
    assert_eq!(world.plans(true)[0]["status"], "expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_reach_an_sns_topic() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    // The topic delivers to a queue, so the test can read what nodemedic published.
    let sns = aws_sdk_sns::Client::new(&world.emulator.sdk_config());
    let topic = sns
        .create_topic()
        .name("nodemedic-notices")
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .expect("topic arn")
        .to_string();
    let inbox = world
        .clients
        .sqs
        .create_queue()
        .queue_name("notices")
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let inbox_arn = format!(
        "arn:aws:sqs:{}:{}:notices",
        lab::REGION,
        world.network.account
    );
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&inbox_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    publish_lab_002(&world, &lab).await;

    world.run_once_with("approve", &[("NODEMEDIC_NOTIFY__SNS_TOPIC_ARN", &topic)]);

    let received = world
        .clients
        .sqs
        .receive_message()
        .queue_url(&inbox)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    let notices: Vec<Value> = received
        .messages()
        .iter()
        .filter_map(|m| m.body())
        .filter_map(|b| serde_json::from_str(b).ok())
        .collect();
    let events: Vec<&str> = notices.iter().filter_map(|n| n["event"].as_str()).collect();
    assert!(
        events.contains(&"plan_awaiting_approval") && events.contains(&"outcome"),
        "{notices:#?}"
    );
    assert!(
        notices
            .iter()
            .all(|n| n["cluster"] == lab::CLUSTER && n["nodegroup"] == json!(lab.nodegroup))
    );
}
