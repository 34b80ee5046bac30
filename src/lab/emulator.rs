//! The local AWS emulator: moto_server plus nodemedic's launcher (tests/emulator), started on a
//! free loopback port for the demo and the integration tests.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::LabError;

const LAUNCHER: &str = include_str!("../../tests/emulator/nodemedic_emulator.py");
/// Imported by the launcher from its own folder.
const LAUNCHER_MODULES: [(&str, &str); 7] = [
    (
        "access_analyzer.py",
        include_str!("../../tests/emulator/access_analyzer.py"),
    ),
    (
        "cluster_api.py",
        include_str!("../../tests/emulator/cluster_api.py"),
    ),
    (
        "eks_access_entries.py",
        include_str!("../../tests/emulator/eks_access_entries.py"),
    ),
    (
        "eks_updates.py",
        include_str!("../../tests/emulator/eks_updates.py"),
    ),
    (
        "eks_launch_templates.py",
        include_str!("../../tests/emulator/eks_launch_templates.py"),
    ),
    (
        "ec2_events_patches.py",
        include_str!("../../tests/emulator/ec2_events_patches.py"),
    ),
    (
        "kms_gate.py",
        include_str!("../../tests/emulator/kms_gate.py"),
    ),
];
pub const REGION: &str = "us-west-2";

/// A running emulator; stopped when dropped.
pub struct Emulator {
    child: Child,
    port: u16,
    dir: PathBuf,
    update_seconds: f64,
}

/// Runs the launcher in `dir` on `port`, logging to `dir/emulator.log`.
fn spawn(dir: &std::path::Path, port: u16, update_seconds: f64) -> Result<Child, LabError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("emulator.log"))
        .map_err(|e| LabError::Emulator(e.to_string()))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(&python)
        .arg(dir.join("nodemedic_emulator.py"))
        .args([
            "--port",
            &port.to_string(),
            "--update-seconds",
            &update_seconds.to_string(),
        ])
        // Lets worlds attach AWS managed policies to roles, as in a real account.
        .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LabError::Emulator(format!("cannot run {python}: {e}")))
}

impl Emulator {
    /// Starts the emulator with `python3` (or `$PYTHON`); nodegroup updates settle after
    /// `update_seconds`.
    pub async fn start(update_seconds: f64) -> Result<Emulator, LabError> {
        let dir = std::env::temp_dir().join(format!(
            "nodemedic-emulator-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::Emulator(format!("{}: {e}", dir.display())))?;
        let script = dir.join("nodemedic_emulator.py");
        std::fs::write(&script, LAUNCHER).map_err(|e| LabError::Emulator(e.to_string()))?;
        for (name, text) in LAUNCHER_MODULES {
            std::fs::write(dir.join(name), text).map_err(|e| LabError::Emulator(e.to_string()))?;
        }
        let port = free_port()?;
        let child = spawn(&dir, port, update_seconds)?;
        let mut emulator = Emulator {
            child,
            port,
            dir,
            update_seconds,
        };
        emulator.wait_ready().await?;
        Ok(emulator)
    }

    /// Stops the emulator, as an AWS outage would look to a client: connections are refused.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts it again on the same port, with empty state.
    pub async fn restart(&mut self) -> Result<(), LabError> {
        self.stop().await;
        self.child = spawn(&self.dir, self.port, self.update_seconds)?;
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), LabError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(LabError::Emulator(format!(
                    "the emulator exited ({status}); is moto installed? (pip install \"moto[server]\")\n{}",
                    self.log_tail()
                )));
            }
            if self.request("GET", "/_emulator/ping", "").await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(LabError::Emulator(format!(
                    "the emulator did not start in 60 s\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Seeds moto's random source: the same calls then make the same ids in every run, so that
    /// a fixture one build wrote can be read against a world another build made.
    pub async fn seed(&self, seed: u64) -> Result<(), LabError> {
        self.request("POST", &format!("/moto-api/seed?a={seed}"), "")
            .await
            .map(|_| ())
    }

    /// The emulator process's id, for benches that read its CPU time from /proc; `None`
    /// once it has exited.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines the emulator logged, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("emulator.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SDK configuration pointed at the emulator, with fixed test credentials and region.
    pub fn sdk_config(&self) -> SdkConfig {
        let credentials =
            aws_sdk_sts::config::Credentials::new("testing", "testing", None, None, "emulator");
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
                credentials,
            ))
            .build()
    }

    /// Environment for a child process (the daemon) that should talk to this emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Sets a cluster's status (CREATING, UPDATING, FAILED ...): moto's clusters are ACTIVE at
    /// once and stay so.
    pub async fn set_cluster_status(&self, cluster: &str, status: &str) -> Result<(), LabError> {
        let body = serde_json::json!({"region": REGION, "cluster": cluster, "status": status});
        self.request("POST", "/_emulator/cluster-status", &body.to_string())
            .await
            .map(|_| ())
    }

    /// How long the cluster updates UpdateClusterConfig starts from now on stay InProgress: moto
    /// applies them at once and keeps the cluster ACTIVE.
    pub async fn cluster_updates_take(&self, seconds: u64) -> Result<(), LabError> {
        let body = serde_json::json!({"region": REGION, "seconds": seconds});
        self.request(
            "POST",
            "/_emulator/cluster-update-seconds",
            &body.to_string(),
        )
        .await
        .map(|_| ())
    }

    /// Holds an instance `pending`, launched `minutes_ago`: moto's instances run at once.
    pub async fn hold_pending(&self, instance: &str, minutes_ago: u32) -> Result<(), LabError> {
        let body =
            serde_json::json!({"region": REGION, "instance": instance, "minutes_ago": minutes_ago});
        self.request("POST", "/_emulator/instance-pending", &body.to_string())
            .await
            .map(|_| ())
    }

    /// Sets a nodegroup's status and health issues, which moto cannot express on its own.
    pub async fn set_nodegroup_health(
        &self,
        cluster: &str,
        nodegroup: &str,
        status: &str,
        issues: serde_json::Value,
    ) -> Result<(), LabError> {
        let body = serde_json::json!({
            "region": REGION, "cluster": cluster, "nodegroup": nodegroup, "status": status, "issues": issues,
        });
        self.request("POST", "/_emulator/nodegroup-health", &body.to_string())
            .await
            .map(|_| ())
    }

    /// Makes every later launch of the Auto Scaling group fail with `message`, as a cause nodemedic
    /// cannot see would; `None` lets launches through again.
    pub async fn force_launch_failure(
        &self,
        group: &str,
        message: Option<&str>,
    ) -> Result<(), LabError> {
        let body =
            serde_json::json!({ "region": REGION, "asg": group, "message": message.unwrap_or("") });
        self.request("POST", "/_emulator/launch-failure", &body.to_string())
            .await
            .map(|_| ())
    }

    /// Refuses these calls (`ec2:CreateRoute`, `kms:ListResourceTags`, …), dry run or not, as AWS
    /// refuses a role without them; an empty list allows everything again.
    pub async fn deny(&self, actions: &[&str]) -> Result<(), LabError> {
        let body = serde_json::json!({ "actions": actions });
        self.request("POST", "/_emulator/deny", &body.to_string())
            .await
            .map(|_| ())
    }

    /// What IAM Access Analyzer's ValidatePolicy answers from now on (`findingType`,
    /// `issueCode`, `findingDetails` each); moto has no Access Analyzer, the emulator stands in.
    pub async fn set_policy_findings(
        &self,
        findings: &[serde_json::Value],
    ) -> Result<(), LabError> {
        let body = serde_json::json!({ "findings": findings });
        self.request("POST", "/_emulator/policy-findings", &body.to_string())
            .await
            .map(|_| ())
    }

    /// Points a cluster's endpoint and CA bundle at an API server (the stand-in of
    /// [`crate::lab::apiserver`]): moto makes up a hostname and a random CA.
    pub async fn point_cluster_at(
        &self,
        cluster: &str,
        endpoint: &str,
        certificate_authority: &str,
    ) -> Result<(), LabError> {
        let body = serde_json::json!({
            "region": REGION, "cluster": cluster, "endpoint": endpoint,
            "certificate_authority": certificate_authority,
        });
        self.request("POST", "/_emulator/cluster-endpoint", &body.to_string())
            .await
            .map(|_| ())
    }

    /// What GetConsoleOutput returns for an instance, any bytes: moto returns one canned kernel
    /// log for every instance.
    pub async fn set_console_output(&self, instance: &str, output: &[u8]) -> Result<(), LabError> {
        use base64::Engine as _;
        let body = serde_json::json!({
            "region": REGION, "instance": instance,
            "output_base64": base64::engine::general_purpose::STANDARD.encode(output),
        });
        self.request("POST", "/_emulator/console-output", &body.to_string())
            .await
            .map(|_| ())
    }

    /// Backdates a running instance's launch by `minutes_ago`: moto's instances launch when made.
    pub async fn launched_ago(&self, instance: &str, minutes_ago: u32) -> Result<(), LabError> {
        let body =
            serde_json::json!({"region": REGION, "instance": instance, "minutes_ago": minutes_ago});
        self.request("POST", "/_emulator/instance-launched", &body.to_string())
            .await
            .map(|_| ())
    }

    /// A minimal HTTP/1.1 exchange on loopback; returns the body of a 2xx answer.
    async fn request(&self, method: &str, path: &str, body: &str) -> Result<String, LabError> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| LabError::Emulator(e.to_string()))?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| LabError::Emulator(e.to_string()))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .map_err(|e| LabError::Emulator(e.to_string()))?;
        let status_ok = response
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code.starts_with('2'));
        let body = response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        if status_ok {
            Ok(body)
        } else {
            Err(LabError::Emulator(format!(
                "{method} {path}: {}",
                response.lines().next().unwrap_or("")
            )))
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16, LabError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| LabError::Emulator(e.to_string()))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| LabError::Emulator(e.to_string()))
}
