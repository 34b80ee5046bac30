//! The test harness: a fresh emulator per test (moto_server on a free loopback port), the queue
//! and EventBridge rule that feed nodemedic, and the real `nodemedic` binary run against them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use nodemedic::aws::AwsResultExt;
use nodemedic::lab::{self, Emulator, EventQueue, LabClients, Network};
use serde_json::Value;

mod peers;
pub use peers::*;

pub struct World {
    pub emulator: Emulator,
    pub clients: LabClients,
    pub queue: EventQueue,
    pub network: Network,
    dir: PathBuf,
    /// Settings every nodemedic run of this world gets (the store backend).
    store_env: Vec<(String, String)>,
}

impl World {
    /// The workshop cluster with its healthy `default` nodegroup, and the event queue
    /// (dead-letter after `max_receives`).
    pub async fn new(max_receives: u32) -> World {
        World::build(max_receives, None).await
    }

    /// A world whose every id repeats from run to run (see [`Emulator::seed`]).
    pub async fn seeded(max_receives: u32, seed: u64) -> World {
        World::build(max_receives, Some(seed)).await
    }

    async fn build(max_receives: u32, seed: Option<u64>) -> World {
        let emulator = Emulator::start(0.5).await.expect("emulator starts");
        if let Some(seed) = seed {
            emulator.seed(seed).await.expect("seeded");
        }
        let clients = LabClients::new(&emulator.sdk_config());
        let queue = lab::event_queue(&clients, "nodemedic-events", max_receives)
            .await
            .expect("queue");
        let network = lab::workshop(&clients).await.expect("workshop");
        let dir =
            std::env::temp_dir().join(format!("nodemedic-it-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        World {
            emulator,
            clients,
            queue,
            network,
            dir,
            store_env: Vec::new(),
        }
    }

    /// Every run of this world keeps its state in DynamoDB tables of the emulator, created with
    /// `nodemedic store init` as an operator would.
    pub fn use_dynamodb(&mut self) {
        self.store_env = vec![
            ("NODEMEDIC_STORE__BACKEND".into(), "dynamodb".into()),
            (
                "NODEMEDIC_STORE__STATE_TABLE".into(),
                "nodemedic-state".into(),
            ),
            (
                "NODEMEDIC_STORE__AUDIT_TABLE".into(),
                "nodemedic-audit".into(),
            ),
        ];
        let output = self.nodemedic(&["store", "init"], &[]);
        assert!(output.status.success(), "store init: {}", stderr(&output));
    }

    pub fn audit_db(&self) -> PathBuf {
        self.dir.join("audit.db")
    }

    /// Writes a settings file into this world's directory; returns its path.
    pub fn config_file(&self, toml: &str) -> String {
        let path = self.dir.join("nodemedic.toml");
        std::fs::write(&path, toml).expect("settings file");
        path.to_str().expect("utf-8").to_string()
    }

    /// `nodemedic` with the emulator's environment and fast test timings, not yet started.
    pub fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> std::process::Command {
        // Another build's binary can stand in for this one (tests/fixtures/README.md).
        let binary = std::env::var("NODEMEDIC_TEST_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_nodemedic").to_string());
        let mut command = std::process::Command::new(binary);
        command.args(args).env_clear();
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        for (key, value) in self.emulator.env() {
            command.env(key, value);
        }
        command
            .env("NODEMEDIC_INTAKE__WAIT_TIME_SECS", "1")
            .env("NODEMEDIC_INTAKE__VISIBILITY_TIMEOUT_SECS", "5")
            .env("NODEMEDIC_REMEDIATION__NODEGROUP_POLL_SECS", "0.2")
            .env("NODEMEDIC_REMEDIATION__NODEGROUP_TIMEOUT_SECS", "30")
            .env("NODEMEDIC_VERIFY__TIMEOUT_SECS", "20")
            .env("NODEMEDIC_VERIFY__POLL_SECS", "0.3")
            // A crashed run's hold on a nodegroup expires quickly, so the restart does not wait.
            .env("NODEMEDIC_STORE__LEASE_TTL_SECS", "3")
            .env("NODEMEDIC_LOG__LEVEL", "info");
        for (key, value) in &self.store_env {
            command.env(key, value);
        }
        for (key, value) in extra_env {
            command.env(key, value);
        }
        command
    }

    /// Runs `nodemedic` with the emulator's environment and fast test timings.
    pub fn nodemedic(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        self.command(args, extra_env)
            .output()
            .expect("nodemedic runs")
    }

    /// `nodemedic run --once` in `mode`; asserts it exits 0 and returns its output.
    pub fn run_once(&self, mode: &str) -> Output {
        self.run_once_with(mode, &[])
    }

    pub fn run_once_with(&self, mode: &str, extra_env: &[(&str, &str)]) -> Output {
        self.run_once_full(mode, &[], extra_env)
    }

    /// `run --once` with more arguments (`--config FILE`) and environment; asserts it exits 0.
    pub fn run_once_full(
        &self,
        mode: &str,
        extra_args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Output {
        let output = self.run_once_output(mode, extra_args, extra_env);
        assert!(
            output.status.success(),
            "nodemedic run failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `run --once` whatever its exit status, for runs that are meant to fail.
    pub fn run_once_output(
        &self,
        mode: &str,
        extra_args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Output {
        let audit = self.audit_db();
        let mut args = vec![
            "run",
            "--once",
            "--mode",
            mode,
            "--queue-url",
            &self.queue.url,
            "--audit-db",
            audit.to_str().expect("utf-8 path"),
        ];
        args.extend_from_slice(extra_args);
        self.nodemedic(&args, extra_env)
    }

    /// `nodemedic audit list --json`, one object per incident.
    pub fn incidents(&self) -> Vec<Value> {
        let audit = self.audit_db();
        if !audit.exists() && self.store_env.is_empty() {
            return Vec::new();
        }
        let output = self.nodemedic(
            &[
                "audit",
                "list",
                "--json",
                "--audit-db",
                audit.to_str().expect("utf-8"),
            ],
            &[],
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is a JSON object"))
            .collect()
    }

    /// `nodemedic audit show ID --json`.
    pub fn show(&self, incident: &str) -> Value {
        let audit = self.audit_db();
        let output = self.nodemedic(
            &[
                "audit",
                "show",
                incident,
                "--json",
                "--audit-db",
                audit.to_str().expect("utf-8"),
            ],
            &[],
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON")
    }

    /// Records that belong to no incident, read straight from the audit database.
    pub fn loose_records(&self) -> Vec<nodemedic::audit::Record> {
        let store = nodemedic::audit::AuditStore::open(&self.audit_db()).expect("audit db");
        store
            .read_blocking(|c| c.loose_records(1000))
            .expect("records")
    }

    pub async fn messages_waiting(&self, queue_url: &str) -> u64 {
        let attributes = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .op("sqs:GetQueueAttributes")
            .expect("queue attributes");
        let count = |name| {
            attributes
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        count(QueueAttributeName::ApproximateNumberOfMessages)
            + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }

    /// Sends a raw body to the event queue, as a redelivery or a hand-made message would arrive.
    pub async fn send_raw(&self, body: &str) {
        self.clients
            .sqs
            .send_message()
            .queue_url(&self.queue.url)
            .message_body(body)
            .send()
            .await
            .op("sqs:SendMessage")
            .expect("send");
    }

    /// Takes the bodies waiting on the queue without consuming them for good.
    pub async fn peek_bodies(&self) -> Vec<String> {
        let received = self
            .clients
            .sqs
            .receive_message()
            .queue_url(&self.queue.url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .send()
            .await
            .op("sqs:ReceiveMessage")
            .expect("receive");
        received
            .messages()
            .iter()
            .filter_map(|m| m.body().map(str::to_string))
            .collect()
    }

    pub async fn key_policy(&self, key: &str) -> Value {
        let output = self
            .clients
            .kms
            .get_key_policy()
            .key_id(key)
            .policy_name("default")
            .send()
            .await
            .op("kms:GetKeyPolicy")
            .expect("policy");
        serde_json::from_str(output.policy().expect("a policy")).expect("policy JSON")
    }

    pub async fn routes(&self, table: &str) -> Vec<(String, String, String)> {
        let output = self
            .clients
            .ec2
            .describe_route_tables()
            .route_table_ids(table)
            .send()
            .await
            .op("ec2:DescribeRouteTables")
            .expect("route table");
        output
            .route_tables()
            .iter()
            .flat_map(|t| nodemedic::aws::collect::route_table_facts(t).routes)
            .map(|r| (r.destination, r.target, r.state))
            .collect()
    }

    /// The scaling updates EKS recorded for a nodegroup, oldest first, as "Type=value" lists.
    pub async fn nodegroup_updates(&self, nodegroup: &str) -> Vec<Vec<String>> {
        let listed = self
            .clients
            .eks
            .list_updates()
            .name(lab::CLUSTER)
            .nodegroup_name(nodegroup)
            .send()
            .await
            .op("eks:ListUpdates")
            .expect("updates");
        let mut updates = Vec::new();
        for id in listed.update_ids() {
            let described = self
                .clients
                .eks
                .describe_update()
                .name(lab::CLUSTER)
                .nodegroup_name(nodegroup)
                .update_id(id)
                .send()
                .await
                .op("eks:DescribeUpdate")
                .expect("update");
            updates.push(
                described
                    .update()
                    .map(|u| u.params())
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        format!(
                            "{}={}",
                            p.r#type().map(|t| t.as_str()).unwrap_or("?"),
                            p.value().unwrap_or("?")
                        )
                    })
                    .collect(),
            );
        }
        updates
    }

    pub async fn nodegroup_status(&self, nodegroup: &str) -> (String, i32) {
        let described = self
            .clients
            .eks
            .describe_nodegroup()
            .cluster_name(lab::CLUSTER)
            .nodegroup_name(nodegroup)
            .send()
            .await
            .op("eks:DescribeNodegroup")
            .expect("nodegroup");
        let nodegroup = described.nodegroup().expect("nodegroup");
        (
            nodegroup
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            nodegroup
                .scaling_config()
                .and_then(|s| s.desired_size())
                .unwrap_or(-1),
        )
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The statuses of an incident's actions, as `audit list --json` reports them.
pub fn actions(incident: &Value) -> Vec<(String, String)> {
    incident["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap_or("").to_string(),
                a["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

impl World {
    /// `nodemedic diagnose --cluster C [--nodegroup N] --json`: the exit code and the reports.
    pub fn diagnose(&self, cluster: &str, nodegroup: Option<&str>) -> (i32, Value) {
        let mut args = vec!["diagnose", "--cluster", cluster, "--json"];
        if let Some(nodegroup) = nodegroup {
            args.extend(["--nodegroup", nodegroup]);
        }
        let output = self.nodemedic(&args, &[]);
        let code = output.status.code().unwrap_or(-1);
        let reports = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
            panic!(
                "diagnose printed no JSON (exit {code}):\n{}",
                stderr(&output)
            )
        });
        (code, reports)
    }

    /// The cause codes of the blocking findings `diagnose` reports for one nodegroup.
    pub fn blocking_causes(&self, nodegroup: &str) -> Vec<String> {
        let (code, reports) = self.diagnose(nodemedic::lab::CLUSTER, Some(nodegroup));
        let causes: Vec<String> = reports[0]["diagnosis"]["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["blocking"] == true)
            .map(|f| f["cause"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            code,
            if causes.is_empty() { 0 } else { 3 },
            "exit code for {causes:?}"
        );
        // Each blocking cause fails the one check that decides it.
        let checks = reports[0]["diagnosis"]["checks"]
            .as_array()
            .expect("checks");
        for cause in &causes {
            let owner = checks
                .iter()
                .find(|check| {
                    check["causes"]
                        .as_array()
                        .is_some_and(|c| c.contains(&cause.as_str().into()))
                })
                .unwrap_or_else(|| panic!("no check reports {cause}: {checks:#?}"));
            assert_eq!(owner["result"], "fail", "{owner:#}");
        }
        causes
    }

    /// The result of one check in `diagnose --json` for one nodegroup.
    pub fn check(&self, nodegroup: &str, check: &str) -> Value {
        let (_, reports) = self.diagnose(nodemedic::lab::CLUSTER, Some(nodegroup));
        reports[0]["diagnosis"]["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|result| result["check"] == check)
            .cloned()
            .unwrap_or_else(|| panic!("no check {check} in {reports:#}"))
    }
}

impl World {
    /// An operator command (`approve`, `kill-switch`, `breakers` ...) against this world's audit
    /// database; asserts that it succeeds.
    pub fn operate(&self, args: &[&str]) -> Output {
        let output = self.try_operate(args, &[]);
        assert!(
            output.status.success(),
            "nodemedic {args:?} failed:\n{}",
            stderr(&output)
        );
        output
    }

    /// An operator command on this world's audit database, which may be refused.
    pub fn try_operate(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let audit = self.audit_db();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--audit-db", audit.to_str().expect("utf-8")]);
        self.nodemedic(&all, extra_env)
    }

    /// `nodemedic plans list --json [--all]`.
    pub fn plans(&self, all: bool) -> Vec<Value> {
        let mut args = vec!["plans", "list", "--json"];
        if all {
            args.push("--all");
        }
        String::from_utf8_lossy(&self.operate(&args).stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON plan"))
            .collect()
    }

    /// The records of an incident of a kind, from `audit show --json`.
    pub fn records_of(&self, incident: &str, kind: &str) -> Vec<Value> {
        self.show(incident)["records"]
            .as_array()
            .expect("records")
            .iter()
            .filter(|r| r["kind"] == kind)
            .cloned()
            .collect()
    }

    /// Starts `nodemedic run` (no `--once`) in `mode`; it runs until the handle is dropped.
    pub fn start_daemon(&self, mode: &str, extra_env: &[(&str, &str)]) -> Daemon {
        let audit = self.audit_db();
        let log = self
            .dir
            .join(format!("daemon-{}.log", uuid::Uuid::new_v4().simple()));
        let child = self
            .command(
                &[
                    "run",
                    "--mode",
                    mode,
                    "--queue-url",
                    &self.queue.url,
                    "--audit-db",
                    audit.to_str().expect("utf-8"),
                ],
                extra_env,
            )
            // A file, not a pipe: a pipe nobody reads fills up and blocks the daemon's logging.
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("daemon log"))
            .spawn()
            .expect("nodemedic starts");
        Daemon { child, log }
    }

    /// Polls `condition` (with the incidents so far) until it holds; panics after `seconds`.
    pub fn wait_until(&self, what: &str, seconds: u64, condition: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let incidents = self.incidents();
            if condition(&incidents) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {seconds}s waiting for {what}; incidents: {incidents:#?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// The incident of a nodegroup (the most recent one), if any.
pub fn incident_of<'a>(incidents: &'a [Value], nodegroup: &str) -> Option<&'a Value> {
    incidents.iter().find(|i| {
        i["nodegroup"] == nodegroup
            || i["nodegroups"].as_array().is_some_and(|n| {
                n.iter().any(|n| {
                    n.as_str()
                        .is_some_and(|n| n.ends_with(&format!("/{nodegroup}")))
                })
            })
    })
}
