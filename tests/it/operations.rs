//! Running nodemedic in production: metrics that follow an incident, readiness that follows
//! AWS, a log level changed at runtime, traces exported over OTLP, `config check` and
//! `iam-policy`.

use nodemedic::lab;
use serde_json::Value;

use crate::breakage::TOKEN;
use crate::support::{WebhookSink, World, http, incident_of, stderr, wait_for};

/// The value of one sample line of the exposition (`name{labels} value`), 0 when absent.
pub(crate) fn sample(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub(crate) fn scrape(port: u16) -> String {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics endpoint");
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_an_incident_and_the_log_level_changes_at_runtime() {
    let world = World::new(3).await;
    let lab = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    let address = "127.0.0.1:0".to_string();
    let daemon = world.start_daemon(
        "auto",
        &[
            ("NODEMEDIC_HTTP__ADDRESS", &address),
            ("NODEMEDIC_HTTP__TOKENS__ALICE", TOKEN),
        ],
    );
    let port = daemon.http_port(60);
    let before = scrape(port);
    assert_eq!(
        sample(
            &before,
            "nodemedic_incidents_total{cause=\"subnet_no_egress_route\"}"
        ),
        0.0
    );

    lab::publish_launch_event(&world.clients, &world.network, &lab.group, &lab.subnet)
        .await
        .expect("event");
    world.wait_until("the fix", 60, |incidents| {
        incident_of(incidents, &lab.nodegroup).is_some_and(|i| i["outcome"] == "fixed")
    });
    let mut after = String::new();
    wait_for("the message to be deleted", 20, || {
        after = scrape(port);
        sample(&after, "nodemedic_messages_deleted_total") >= 1.0
    });

    assert!(sample(&after, "nodemedic_messages_received_total") >= 1.0);
    assert_eq!(
        sample(
            &after,
            "nodemedic_incidents_total{cause=\"subnet_no_egress_route\"}"
        ),
        1.0
    );
    for (fix, status) in [("add_nat_route", "applied"), ("cycle_nodegroup", "applied")] {
        assert_eq!(
            sample(
                &after,
                &format!("nodemedic_fix_steps_total{{fix=\"{fix}\",status=\"{status}\"}}")
            ),
            1.0,
            "{fix} {status}"
        );
    }
    assert!(
        sample(
            &after,
            "nodemedic_aws_calls_total{service=\"ec2\",operation=\"CreateRoute\",outcome=\"ok\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &after,
            "nodemedic_message_handling_seconds_count{disposition=\"deleted\"}"
        ) >= 1.0
    );
    assert!(sample(&after, "nodemedic_message_age_seconds_count") >= 1.0);
    assert_eq!(sample(&after, "nodemedic_kill_switch"), 0.0);
    assert!(
        !after.contains(&lab.route_table) && !after.contains(&lab.group),
        "no resource id becomes a label"
    );

    // Gauges mirror the shared store, read at most every 10 s whatever the scrape rate.
    world.operate(&["kill-switch", "on", "--reason", "metrics test"]);
    wait_for("the kill-switch gauge", 15, || {
        sample(&scrape(port), "nodemedic_kill_switch") == 1.0
    });

    assert_eq!(
        http(
            port,
            "PUT",
            "/v1/log-level",
            None,
            Some(r#"{"level": "debug"}"#)
        )
        .0,
        401
    );
    let (status, body) = http(
        port,
        "PUT",
        "/v1/log-level",
        Some(TOKEN),
        Some(r#"{"level": "nodemedic=debug,warn"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (_, current) = http(port, "GET", "/v1/log-level", Some(TOKEN), None);
    assert_eq!(current["level"], "nodemedic=debug,warn");
    assert_eq!(
        http(
            port,
            "PUT",
            "/v1/log-level",
            Some(TOKEN),
            Some(r#"{"level": "nodemedic=[[["}"#)
        )
        .0,
        400
    );
    let log = daemon.stop();
    assert!(
        log.contains("log level changed"),
        "the change itself is logged: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_the_queue_and_the_credentials_and_recovers() {
    let mut world = World::new(3).await;
    let address = "127.0.0.1:0".to_string();
    let daemon = world.start_daemon(
        "dry-run",
        &[
            ("NODEMEDIC_HTTP__ADDRESS", &address),
            ("NODEMEDIC_HTTP__READY_WINDOW_SECS", "3"),
            ("NODEMEDIC_HTTP__TOKENS__ALICE", TOKEN),
        ],
    );
    let port = daemon.http_port(60);
    wait_for("ready", 30, || {
        http(port, "GET", "/readyz", None, None).0 == 200
    });

    world.emulator.stop().await;
    wait_for("not ready once AWS is gone", 30, || {
        http(port, "GET", "/readyz", None, None).0 == 503
    });
    let mut report = Value::Null;
    wait_for("both the queue and the credentials reported", 30, || {
        report = http(port, "GET", "/readyz", Some(TOKEN), None).1;
        let reasons = report["reasons"].to_string();
        reasons.contains("no successful receive") && reasons.contains("credentials")
    });
    assert_eq!(
        http(port, "GET", "/healthz", None, None).0,
        200,
        "alive all the same: restarting would not bring AWS back"
    );

    // The queue is gone with the emulator's state; a new one with the same URL brings it back.
    world.emulator.restart().await.expect("restart");
    lab::event_queue(&world.clients, "nodemedic-events", 3)
        .await
        .expect("queue again");
    wait_for("ready again without a restart", 60, || {
        http(port, "GET", "/readyz", None, None).0 == 200
    });

    // And it works again: a lab broken in the new world is diagnosed by the same process.
    world.network = lab::workshop(&world.clients).await.expect("workshop again");
    let broken = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &broken.group,
        &broken.subnet,
    )
    .await
    .expect("event");
    world.wait_until("the event after the outage diagnosed", 60, |incidents| {
        incident_of(incidents, &broken.nodegroup)
            .is_some_and(|incident| incident["cause"] == "subnet_no_egress_route")
    });
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_reach_an_otlp_endpoint_and_the_audit_keeps_the_trace_id() {
    let world = World::new(3).await;
    let lab = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    let collector = WebhookSink::start();
    lab::publish_launch_event(&world.clients, &world.network, &lab.group, &lab.subnet)
        .await
        .expect("event");

    let output = world.run_once_with(
        "dry-run",
        &[
            ("NODEMEDIC_OTLP__ENDPOINT", &collector.url),
            ("NODEMEDIC_LOG__FORMAT", "json"),
            ("NODEMEDIC_LOG__LEVEL", "info"),
        ],
    );

    let bodies = collector.received_bytes();
    assert!(!bodies.is_empty(), "{}", stderr(&output));
    let all: Vec<u8> = bodies.concat();
    let contains = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    for span in [
        &b"message"[..],
        b"evidence",
        b"diagnosis",
        b"incident",
        b"guard",
        b"EC2.DescribeRouteTables",
    ] {
        assert!(contains(span), "span {}", String::from_utf8_lossy(span));
    }
    let incidents = world.incidents();
    let id = incidents[0]["incident_id"].as_str().expect("id");
    let received = world.records_of(id, "event_received");
    let trace_id = received[0]["body"]["trace_id"]
        .as_str()
        .expect("the trace id is recorded");
    assert_eq!(trace_id.len(), 32);
    let raw: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    assert!(contains(&raw), "the recorded trace id is the exported one");
    // The log lines of the event carry the same trace id, and a span id, to join logs to traces.
    let logged = stderr(&output);
    let line = logged
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line.to_string().contains(trace_id))
        .unwrap_or_else(|| panic!("no log line carries trace id {trace_id}: {logged}"));
    assert!(line.to_string().contains("span_id"), "{line}");

    // A daemon that cannot start says why in a JSON line when its logs are JSON.
    let output = world
        .command(
            &["run"],
            &[
                ("NODEMEDIC_LOG__FORMAT", "json"),
                ("NODEMEDIC_MODE", "yolo"),
            ],
        )
        .output()
        .expect("run");
    assert!(!output.status.success());
    let last = stderr(&output)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let fatal: Value = serde_json::from_str(&last).unwrap_or_else(|_| panic!("not JSON: {last}"));
    assert_eq!(fatal["level"], "ERROR");
    assert!(
        fatal["message"]
            .as_str()
            .unwrap_or_default()
            .contains("mode"),
        "{fatal}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standard_opentelemetry_variables_turn_export_on() {
    let world = World::new(3).await;
    let lab = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    let collector = WebhookSink::start();
    lab::publish_launch_event(&world.clients, &world.network, &lab.group, &lab.subnet)
        .await
        .expect("event");
    let base = collector.url.trim_end_matches('/').to_string();
    let output = world.run_once_with(
        "dry-run",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &base),
            ("OTEL_SERVICE_NAME", "nodemedic-standard"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging"),
        ],
    );
    let all: Vec<u8> = collector.received_bytes().concat();
    let contains = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"nodemedic-standard"), "{}", stderr(&output));
    assert!(contains(b"staging"), "the resource attributes are exported");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_explains_problems_and_iam_policy_prints_a_policy() {
    let world = World::new(3).await;
    // Every problem at once, each named by its key.
    let bad = world
        .config_file("mode = \"yolo\"\n[log]\nformat = \"xml\"\n[http]\naddress = \"nowhere\"\n");
    let output = world.nodemedic(&["config", "check", "--config", &bad], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    for key in ["- mode:", "- log.format:", "- http.address:"] {
        assert!(text.contains(key), "{key} is named: {text}");
    }
    // A value of the wrong type names its key too.
    let mistyped = world.config_file("[guard]\nmax_mutations_per_hour = -1\n");
    let output = world.nodemedic(&["config", "check", "--config", &mistyped], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("guard.max_mutations_per_hour"));

    let good = world.config_file("mode = \"auto\"\n[scope]\nignore_tag = \"\"\n");
    let output = world.nodemedic(&["config", "check", "--config", &good], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("mode            auto"), "{text}");
    assert!(
        text.contains("warning: scope.ignore_tag is empty"),
        "{text}"
    );

    let output = world.nodemedic(&["iam-policy", "--mode", "observe"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let policy: Value = serde_json::from_slice(&output.stdout).expect("a JSON policy");
    let actions: Vec<String> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    assert!(actions.contains(&"ec2:DescribeRouteTables".to_string()));
    assert!(
        !actions.contains(&"ec2:CreateRoute".to_string()),
        "observe is read-only"
    );
}
