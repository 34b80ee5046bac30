//! The other processes a test talks to: the daemon, HTTP endpoints, a webhook sink.

use super::*;

/// A running daemon; dropping it stops it (SIGTERM, then SIGKILL after 10 s).
pub struct Daemon {
    pub(super) child: Child,
    pub(super) log: PathBuf,
}

impl Daemon {
    /// What the daemon logged so far.
    pub fn log_so_far(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The port the daemon's HTTP API listens on, read from its "HTTP API listening" log line:
    /// tests give it `127.0.0.1:0` and let the kernel pick, because a port picked by the test
    /// and bound later by the daemon can be taken in between by another test's listener or
    /// outgoing connection. Panics with the log when the line does not come within `seconds`.
    pub fn http_port(&self, seconds: u64) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let log = self.log_so_far();
            let listening = log
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|line| line["message"] == "HTTP API listening")
                .and_then(|line| {
                    line["address"]
                        .as_str()?
                        .parse::<std::net::SocketAddr>()
                        .ok()
                });
            if let Some(address) = listening {
                return address.port();
            }
            assert!(
                Instant::now() < deadline,
                "the HTTP API did not start within {seconds}s: {log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The descriptors the daemon holds open now (Linux).
    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }

    /// Stops the daemon gracefully and returns what it logged.
    pub fn stop(mut self) -> String {
        self.terminate();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `seconds` for the process to exit; its exit status and log.
    pub fn terminate_within(mut self, seconds: u64) -> (Option<std::process::ExitStatus>, String) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut status = None;
        while Instant::now() < deadline {
            if let Ok(Some(exit)) = self.child.try_wait() {
                status = Some(exit);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (
            status,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A free loopback port for a server the test starts.
/// Polls `condition` until it holds; panics after `seconds`.
pub fn wait_for(what: &str, seconds: u64, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One HTTP/1.1 request on loopback: the status code and the body as JSON (Null if not JSON).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP API");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content_type = if body.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A webhook receiver on loopback that keeps every body posted to it.
pub struct WebhookSink {
    pub url: String,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl WebhookSink {
    pub fn start() -> WebhookSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                if stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .is_ok()
                    && let Some(body) = read_request(&mut stream)
                    && let Ok(mut bodies) = sink.lock()
                {
                    bodies.push(body);
                }
            }
        });
        WebhookSink { url, received }
    }

    pub fn received(&self) -> Vec<String> {
        self.received_bytes()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    /// The bodies as sent (OTLP posts protobuf).
    pub fn received_bytes(&self) -> Vec<Vec<u8>> {
        self.received.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// The bodies that are JSON.
    pub fn json(&self) -> Vec<Value> {
        self.received()
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect()
    }
}

/// Reads one request (headers, then Content-Length bytes of body), answers 200 and closes; the
/// body as sent.
pub fn read_request(stream: &mut (impl Read + Write)) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let header_end = loop {
        let read = stream.read(&mut buffer).ok()?;
        if read == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..read]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let headers = String::from_utf8_lossy(&data[..header_end]).to_ascii_lowercase();
    let length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while data.len() < header_end + length {
        let read = stream.read(&mut buffer).ok()?;
        if read == 0 {
            break;
        }
        data.extend_from_slice(&buffer[..read]);
    }
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = stream.flush();
    Some(data[header_end..].to_vec())
}
