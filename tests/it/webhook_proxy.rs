//! A webhook, an OTLP collector and the AWS APIs reached only through the proxy in `HTTPS_PROXY`, as in a VPC
//! whose egress goes through a corporate proxy. Both peers are stand-ins on loopback: an HTTP
//! CONNECT proxy that records what it was asked to reach and tunnels to one TLS receiver. Neither
//! host name resolves, so a notification or a trace can only arrive by the proxy, and the
//! receiver's certificate is trusted through `SSL_CERT_FILE`, as a re-signing proxy's would be.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodemedic::lab;

use crate::breakage::publish_lab_002;
use crate::support::{World, read_request};

const WEBHOOK_HOST: &str = "hooks.nodemedic-proxy-test.invalid";
const COLLECTOR_HOST: &str = "otel.nodemedic-proxy-test.invalid";
const AWS_HOST: &str = "aws.nodemedic-proxy-test.invalid";

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_and_traces_go_out_through_the_proxy_named_by_https_proxy() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    let receiver = TlsReceiver::start(&world.audit_db().with_file_name("webhook-ca.pem"));
    let proxy = ConnectProxy::start(receiver.port);
    let config = world.config_file(&format!(
        "[notify]\nwebhooks = [{{ url = \"https://{WEBHOOK_HOST}/services/T0/B0/secret-part\", format = \"slack\" }}]\n"
    ));
    publish_lab_002(&world, &lab).await;

    let output = world.run_once_full(
        "approve",
        &["--config", &config],
        &[
            ("HTTPS_PROXY", &proxy.url),
            ("SSL_CERT_FILE", receiver.ca_file.as_str()),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &format!("https://{COLLECTOR_HOST}/v1/traces"),
            ),
            ("OTEL_SERVICE_NAME", "nodemedic-behind-a-proxy"),
        ],
    );

    let logs = String::from_utf8_lossy(&output.stderr);
    let bodies = receiver.bodies();
    assert!(
        bodies
            .iter()
            .any(|body| body.contains("Plan waiting for approval")),
        "{bodies:#?}\n{logs}"
    );
    assert!(
        bodies
            .iter()
            .any(|body| body.contains("nodemedic-behind-a-proxy")),
        "the traces arrived: {logs}"
    );
    // The receiver closes each connection after one request, so every post is a tunnel of its own.
    let asked = proxy.asked();
    assert_eq!(asked.len(), bodies.len(), "{asked:?}");
    for host in [WEBHOOK_HOST, COLLECTOR_HOST] {
        assert!(asked.contains(&format!("{host}:443")), "{host}: {asked:?}");
    }
    assert!(
        !logs.contains("webhook notification failed") && !logs.contains("secret-part"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_calls_go_out_through_the_proxy_too() {
    let world = World::new(3).await;
    let receiver = TlsReceiver::start(&world.audit_db().with_file_name("aws-ca.pem"));
    let proxy = ConnectProxy::start(receiver.port);

    // The stand-in receiver is no AWS: the run fails once it reads the answer, which is after
    // the call went through the proxy.
    let output = world.run_once_output(
        "dry-run",
        &[],
        &[
            ("HTTPS_PROXY", &proxy.url),
            ("SSL_CERT_FILE", receiver.ca_file.as_str()),
            ("AWS_ENDPOINT_URL", &format!("https://{AWS_HOST}")),
        ],
    );

    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the stand-in is no AWS: {logs}");
    assert!(
        proxy.asked().contains(&format!("{AWS_HOST}:443")),
        "the AWS SDK asked the proxy for the endpoint: {:?}\n{logs}",
        proxy.asked()
    );
    assert!(
        receiver
            .bodies()
            .iter()
            .any(|body| body.contains("Action=GetCallerIdentity") || body.contains("QueueUrl")),
        "a signed AWS request arrived through the tunnel: {:?}",
        receiver.bodies()
    );
}

/// An HTTP CONNECT proxy that tunnels every CONNECT to the receiver on loopback, whatever host
/// it names, and keeps the targets it was asked for.
struct ConnectProxy {
    url: String,
    asked: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    fn start(receiver_port: u16) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let record = asked.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || tunnel(client, receiver_port, &record));
            }
        });
        ConnectProxy { url, asked }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

fn tunnel(client: TcpStream, receiver_port: u16, asked: &Mutex<Vec<String>>) -> Option<()> {
    let mut reader = BufReader::new(client.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header == "\r\n" || header.is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let mut client = client;
        client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .ok()?;
        return None;
    };
    asked.lock().ok()?.push(target.to_string());
    let upstream = TcpStream::connect(("127.0.0.1", receiver_port)).ok()?;
    let mut client_writer = client.try_clone().ok()?;
    client_writer
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .ok()?;
    let mut upstream_writer = upstream.try_clone().ok()?;
    let mut upstream_reader = upstream;
    // What the reader buffered past the headers belongs to the tunnel.
    let buffered = reader.buffer().to_vec();
    upstream_writer.write_all(&buffered).ok()?;
    let mut client_reader = reader.into_inner();
    std::thread::spawn(move || std::io::copy(&mut client_reader, &mut upstream_writer));
    std::io::copy(&mut upstream_reader, &mut client_writer).ok()?;
    Some(())
}

/// An HTTPS receiver with a certificate for every host above, made by a CA written to
/// `ca_file`; it answers 200 to every request and keeps the bodies.
struct TlsReceiver {
    port: u16,
    ca_file: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl TlsReceiver {
    fn start(ca_file: &std::path::Path) -> TlsReceiver {
        let (ca_pem, config) =
            lab::apiserver::stand_in_certificates(&[WEBHOOK_HOST, COLLECTOR_HOST, AWS_HOST])
                .expect("certificates");
        std::fs::write(ca_file, ca_pem).expect("write the CA");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                    continue;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut tls = rustls::StreamOwned::new(connection, stream);
                if let Some(body) = read_request(&mut tls)
                    && let Ok(mut bodies) = kept.lock()
                {
                    bodies.push(String::from_utf8_lossy(&body).into_owned());
                }
            }
        });
        TlsReceiver {
            port,
            ca_file: ca_file.to_str().expect("utf-8 path").to_string(),
            bodies,
        }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }
}
