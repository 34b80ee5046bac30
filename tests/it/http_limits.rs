//! The HTTP server against slow and hostile clients, through the real binary: half-sent
//! requests, more connections than it serves, bodies it must not read, wrong tokens, a log
//! filter that would stall it, and a SIGTERM with connections that never finish.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{Daemon, World, http, wait_for};

const TOKEN: &str = "alice-token-0123456789";

/// A dry-run daemon serving HTTP on a free port with `settings`: the daemon and its port.
fn serving(world: &World, settings: &[(&str, &str)]) -> (Daemon, u16) {
    let address = "127.0.0.1:0".to_string();
    let mut env = vec![("NODEMEDIC_HTTP__ADDRESS", address.as_str())];
    env.extend_from_slice(settings);
    let daemon = world.start_daemon("dry-run", &env);
    let port = daemon.http_port(60);
    (daemon, port)
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    stream
}

/// Reads until the server closes the connection (or the read times out); what it sent.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Whether the server closes `stream` within `seconds` (answering first or not).
fn closed_within(stream: &mut TcpStream, seconds: u64) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(seconds)))
        .expect("timeout");
    let mut buffer = [0u8; 256];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_requests_are_cut_off_at_their_header_deadline() {
    let world = World::new(3).await;
    let (_daemon, port) = serving(&world, &[("NODEMEDIC_HTTP__HEADER_READ_TIMEOUT_SECS", "2")]);
    let mut stuck: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut stream = connect(port);
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
            stream
        })
        .collect();
    let mut idle = connect(port);
    assert_eq!(http(port, "GET", "/healthz", None, None).0, 200);
    assert!(
        closed_within(&mut stuck[0], 10),
        "a half-sent request is closed"
    );
    assert!(closed_within(&mut stuck[39], 10));
    assert!(
        closed_within(&mut idle, 10),
        "an idle connection is closed too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_limit_wait_without_holding_descriptors() {
    let world = World::new(3).await;
    let (daemon, port) = serving(
        &world,
        &[
            ("NODEMEDIC_HTTP__HEADER_READ_TIMEOUT_SECS", "3"),
            ("NODEMEDIC_HTTP__MAX_CONNECTIONS", "50"),
        ],
    );
    let baseline = daemon.open_descriptors();
    // 300 clients that connect and say nothing, as a slow-loris would.
    let _idle: Vec<TcpStream> = (0..300).map(|_| connect(port)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = daemon.open_descriptors();
    assert!(
        held <= baseline + 55,
        "the daemon holds {held} descriptors (from {baseline}): the rest wait in the backlog"
    );
    // The served ones are cut off at their deadline, and a real request gets through.
    let started = Instant::now();
    wait_for("/healthz past the idle clients", 30, || {
        http(port, "GET", "/healthz", None, None).0 == 200
    });
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_are_read_only_after_the_token_and_only_so_much_and_so_long() {
    let world = World::new(3).await;
    let (_daemon, port) = serving(
        &world,
        &[
            ("NODEMEDIC_HTTP__TOKENS__ALICE", TOKEN),
            ("NODEMEDIC_HTTP__BODY_READ_TIMEOUT_SECS", "2"),
        ],
    );
    // No token, a body announced and never sent: refused at once, not waited for.
    let mut stream = connect(port);
    stream
        .write_all(b"PUT /v1/kill-switch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
        .expect("send");
    let started = Instant::now();
    let mut head = [0u8; 64];
    let read = stream.read(&mut head).expect("an answer");
    assert_eq!(status_of(&String::from_utf8_lossy(&head[..read])), 401);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // With a token: 20 KB is over the limit.
    let big = format!(r#"{{"on": false, "reason": "{}"}}"#, "x".repeat(20_000));
    assert_eq!(
        http(port, "PUT", "/v1/kill-switch", Some(TOKEN), Some(&big)).0,
        413
    );
    // With a token: a body that trickles is answered 408 at its deadline.
    let mut stream = connect(port);
    stream
        .write_all(format!("PUT /v1/kill-switch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"on\":").as_bytes())
        .expect("send");
    let answer = read_to_close(&mut stream);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert_eq!(
        http(port, "GET", "/v1/kill-switch", Some(TOKEN), None).1["on"],
        false,
        "nothing was switched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_tokens_are_counted_logged_without_the_token_and_slowed_down() {
    let world = World::new(3).await;
    let (daemon, port) = serving(&world, &[("NODEMEDIC_HTTP__TOKENS__ALICE", TOKEN)]);
    let guess = "guessed-token-9876543210";
    for _ in 0..5 {
        assert_eq!(http(port, "GET", "/v1/plans", Some(guess), None).0, 401);
    }
    assert_eq!(
        http(port, "GET", "/v1/plans", Some(TOKEN), None).0,
        429,
        "turned away for a while, before any token is compared"
    );
    let (_, metrics) = raw_get(port, "/metrics");
    assert!(
        metrics.contains("nodemedic_http_refused_total{reason=\"unknown_token\"} 5"),
        "{metrics}"
    );
    assert!(metrics.contains("nodemedic_http_refused_total{reason=\"slowed_down\"} 1"));
    // /readyz tells anyone whether it is ready, and only a token holder why.
    let (_, ready) = http(port, "GET", "/readyz", None, None);
    assert!(
        ready.get("ready").is_some() && ready.get("reasons").is_none(),
        "{ready}"
    );
    let log = daemon.stop();
    assert!(log.contains("HTTP request refused"), "{log}");
    assert!(!log.contains(guess), "the token itself is never logged");
}

/// A GET on a raw connection: the status and the body as text.
fn raw_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = connect(port);
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("send");
    let answer = read_to_close(&mut stream);
    (status_of(&answer), answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_field_filter_is_refused_and_the_server_stays_responsive() {
    let world = World::new(3).await;
    let (_daemon, port) = serving(&world, &[("NODEMEDIC_HTTP__TOKENS__ALICE", TOKEN)]);
    // The filter that froze the runtime: a span field matched by a nested regular expression.
    let hostile = format!(
        r#"{{"level": "nodemedic[{{x=(((a+)+)+)+{}}}]=trace"}}"#,
        "a".repeat(96)
    );
    for body in [
        hostile.as_str(),
        r#"{"level": "nodemedic[{x=1}]=debug"}"#,
        &format!(r#"{{"level": "{}"}}"#, "a".repeat(300)),
    ] {
        let (status, answer) = http(port, "PUT", "/v1/log-level", Some(TOKEN), Some(body));
        assert_eq!(status, 400, "{answer}");
    }
    let started = Instant::now();
    assert_eq!(http(port, "GET", "/healthz", None, None).0, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    let (status, _) = http(
        port,
        "PUT",
        "/v1/log-level",
        Some(TOKEN),
        Some(r#"{"level": "nodemedic=debug,aws_config=warn"}"#),
    );
    assert_eq!(status, 200, "level directives are still taken");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_the_drain_after_a_few_seconds_whatever_the_clients_do() {
    let world = World::new(3).await;
    let (daemon, port) = serving(
        &world,
        &[
            ("NODEMEDIC_HTTP__TOKENS__ALICE", TOKEN),
            ("NODEMEDIC_HTTP__DRAIN_SECS", "2"),
            ("NODEMEDIC_HTTP__BODY_READ_TIMEOUT_SECS", "120"),
        ],
    );
    // 50 requests whose bodies never finish.
    let _stuck: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut stream = connect(port);
            let _ = stream.write_all(format!("PUT /v1/kill-switch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n{{\"on\"").as_bytes());
            stream
        })
        .collect();
    wait_for("the stuck requests to reach the server", 10, || {
        http(port, "GET", "/healthz", None, None).0 == 200
    });
    let (status, log) = daemon.terminate_within(15);
    assert!(status.is_some(), "still running 15 s after SIGTERM: {log}");
}
