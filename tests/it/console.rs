//! The web console in a real browser: headless Chromium (Debian's package) driven by
//! playwright-core (`tests/browser/console.mjs`) against the daemon running on the emulator. This
//! side builds the world, changes it behind the browser's back when the script asks, and checks
//! the world and the audit trail afterwards. `scripts/ensure-browser` installs what it needs.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nodemedic::aws::AwsResultExt;
use nodemedic::lab;
use serde_json::Value;

use crate::breakage::{TOKEN, publish_lab_002};
use crate::support::{World, http};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where the screenshots are kept after the run.
fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_reviews_and_approves_lab_002_and_refuses_a_stale_plan() {
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run scripts/ensure-browser (scripts/test does)"
    );
    let world = World::new(3).await;
    let lab_002 = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    let lab_000 = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    let address = "127.0.0.1:0".to_string();
    let daemon = world.start_daemon(
        "approve",
        &[
            ("NODEMEDIC_HTTP__ADDRESS", &address),
            ("NODEMEDIC_HTTP__CONSOLE", "true"),
            ("NODEMEDIC_HTTP__TOKENS__ALICE", TOKEN),
            ("NODEMEDIC_GUARD__APPROVAL_POLL_SECS", "1"),
        ],
    );
    let port = daemon.http_port(60);
    publish_lab_002(&world, &lab_002).await;
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &lab_000.group,
        &lab_000.subnet,
    )
    .await
    .expect("event");
    world.wait_until("both plans awaiting approval", 90, |incidents| {
        incidents
            .iter()
            .filter(|i| i["outcome"] == "planned")
            .count()
            == 2
    });
    assert_eq!(
        http(port, "GET", "/console/", None, None).0,
        303,
        "without a session the console sends the browser to sign in"
    );

    let mut script = Command::new("node")
        .arg(browser_dir().join("console.mjs"))
        .current_dir(browser_dir())
        .env("CONSOLE_URL", format!("http://127.0.0.1:{port}"))
        .env("CONSOLE_TOKEN", TOKEN)
        .env("SCREENSHOTS", screenshots())
        .env("NODEGROUP_002", &lab_002.nodegroup)
        .env("NODEGROUP_000", &lab_000.nodegroup)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (Node.js 20 or later is required)");
    let mut to_script = script.stdin.take();
    let from_script = BufReader::new(script.stdout.take().expect("stdout"));
    let mut stale_plan = String::new();
    let mut report = Value::Null;
    for line in from_script.lines() {
        let line = line.expect("the script's output");
        eprintln!("browser: {line}");
        if let Some(plan) = line.strip_prefix("PLAN ") {
            stale_plan = plan.to_string();
        } else if line == "WAITING stale" {
            // Someone adds the route by hand, and someone else approves the plan from the CLI:
            // the daemon collects the evidence again, and the plan no longer matches the world.
            world
                .clients
                .ec2
                .create_route()
                .route_table_id(&lab_000.route_table)
                .destination_cidr_block("0.0.0.0/0")
                .nat_gateway_id(&world.network.nat_gateway)
                .send()
                .await
                .op("ec2:CreateRoute")
                .expect("route");
            world.operate(&["approve", &stale_plan, "--by", "bob"]);
            let wanted = stale_plan.clone();
            crate::support::wait_for("the plan to go stale", 60, || {
                world
                    .plans(true)
                    .iter()
                    .any(|p| p["plan_id"] == wanted.as_str() && p["status"] == "stale")
            });
            // The only go-ahead: closing standard input after it lets the script end.
            let mut stdin = to_script.take().expect("one go-ahead");
            writeln!(stdin, "GO").expect("go-ahead");
        } else if let Some(json) = line.strip_prefix("REPORT ") {
            report = serde_json::from_str(json).expect("the script's report");
        }
    }
    let output = script.wait_with_output().expect("the script ends");
    assert!(
        output.status.success(),
        "the browser test failed:\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.stop()
    );
    assert_eq!(report["mode"], "approve", "{report:#}");
    assert_eq!(
        report["route_check"], "skipped",
        "a failed launch's evidence has no network: the route check is skipped, not passed"
    );

    // The world and the audit trail, read without the console.
    let policy = world.key_policy(&lab_002.key_id).await;
    assert_eq!(
        policy["Statement"].as_array().map(Vec::len),
        Some(3),
        "the approved patch landed: {policy:#}"
    );
    let incidents = world.incidents();
    let fixed = incidents
        .iter()
        .find(|i| i["nodegroup"] == lab_002.nodegroup.as_str())
        .expect("lab 002's incident");
    assert_eq!(fixed["outcome"], "fixed");
    let id = fixed["incident_id"].as_str().expect("id");
    let approvals = world.records_of(id, "approval_decision");
    assert_eq!(approvals.len(), 1, "{approvals:#?}");
    assert_eq!(approvals[0]["body"]["by"], "alice");
    assert_eq!(approvals[0]["body"]["decision"], "approved");
    assert_eq!(
        approvals[0]["body"]["reason"],
        "lab 002 reviewed in the console"
    );
    let plans = world.plans(true);
    let stale = plans
        .iter()
        .find(|p| p["plan_id"] == stale_plan.as_str())
        .expect("lab 000's plan");
    assert_eq!(stale["status"], "stale");
    assert_eq!(
        stale["decided_by"], "bob",
        "alice's late approval changed nothing"
    );
    for page in [
        "console-incidents.png",
        "console-incident-plan.png",
        "console-incident-fixed.png",
        "console-plans.png",
        "console-stale.png",
    ] {
        assert!(screenshots().join(page).exists(), "screenshot {page}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_off_unless_enabled_and_closed_without_tokens() {
    let world = World::new(3).await;
    let address = "127.0.0.1:0".to_string();
    let daemon = world.start_daemon("dry-run", &[("NODEMEDIC_HTTP__ADDRESS", &address)]);
    let port = daemon.http_port(60);
    assert_eq!(
        http(port, "GET", "/console/", None, None).0,
        404,
        "off by default"
    );
    drop(daemon);

    let address = "127.0.0.1:0".to_string();
    let daemon = world.start_daemon(
        "dry-run",
        &[
            ("NODEMEDIC_HTTP__ADDRESS", &address),
            ("NODEMEDIC_HTTP__CONSOLE", "true"),
        ],
    );
    let port = daemon.http_port(60);
    assert_eq!(
        http(port, "GET", "/console/", None, None).0,
        403,
        "enabled but without tokens: closed to everyone"
    );
    assert_eq!(http(port, "GET", "/console/login", None, None).0, 403);
    drop(daemon);
}

/// One raw HTTP/1.1 exchange: the status, the response head and its body.
fn exchange(port: u16, request: &str) -> (u16, String, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn console_page(port: u16, cookie: &str) -> (u16, String) {
    let (status, _, body) = exchange(
        port,
        &format!(
            "GET /console/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_out_ends_the_session_on_every_replica() {
    let world = World::new(3).await;
    let env = [
        ("NODEMEDIC_HTTP__ADDRESS", "127.0.0.1:0"),
        ("NODEMEDIC_HTTP__CONSOLE", "true"),
        ("NODEMEDIC_HTTP__TOKENS__ALICE", TOKEN),
    ];
    // Two replicas on one store, started together.
    let a = world.start_daemon("dry-run", &env);
    let b = world.start_daemon("dry-run", &env);
    let (port_a, port_b) = (a.http_port(60), b.http_port(60));
    let form = format!("token={TOKEN}");
    let (status, head, _) = exchange(
        port_a,
        &format!(
            "POST /console/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(status, 303, "{head}");
    let lowered = head.to_ascii_lowercase();
    for header in [
        "content-security-policy: default-src 'none';",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "referrer-policy: same-origin",
        "cache-control: no-store",
    ] {
        assert!(lowered.contains(header), "{header} missing: {head}");
    }
    assert!(
        lowered.contains("httponly") && lowered.contains("samesite=strict"),
        "{head}"
    );
    let cookie = head
        .lines()
        .find_map(|line| {
            line.strip_prefix("set-cookie: ")
                .or_else(|| line.strip_prefix("Set-Cookie: "))
        })
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_string();
    let (status, page) = console_page(port_b, &cookie);
    assert_eq!(status, 200, "the other replica knows the session");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token on the page")
        .to_string();
    let form = format!("csrf={csrf}");
    let (status, head, _) = exchange(
        port_a,
        &format!(
            "POST /console/logout HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(status, 303, "{head}");
    // The browser that kept its cookie (or stole it) is refused on both replicas.
    assert_ne!(console_page(port_a, &cookie).0, 200);
    assert_ne!(console_page(port_b, &cookie).0, 200);
}
