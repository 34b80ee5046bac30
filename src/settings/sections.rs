//! The settings' sections, one type per `[section]` of config/default.toml, and the choices
//! (enums) some of their keys take.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::core::guard::ScopeRules;

/// Hub and spoke: which other accounts' events this daemon serves, and how it gets in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsSettings {
    /// The role assumed in every member account; empty serves the daemon's own account only.
    pub role_name: String,
    /// Sent with every AssumeRole when not empty; member roles require it in their trust policy.
    pub external_id: String,
    /// Member account ids (12 digits).
    #[serde(deserialize_with = "account_ids")]
    pub members: Vec<String>,
    pub session_name: String,
    pub session_duration_secs: u64,
}

impl AccountsSettings {
    /// Whether other accounts than the daemon's own are served.
    pub fn hub_and_spoke(&self) -> bool {
        !self.role_name.is_empty()
    }
}

/// Account ids as strings. The environment source turns a lone `NODEMEDIC_ACCOUNTS__MEMBERS=
/// 012345678901` into the number 12345678901 before this sees it (only a comma makes a list), so
/// numbers are accepted and given back their leading zeros: an account id has exactly 12 digits.
fn account_ids<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ids {
        Many(Vec<Id>),
        One(Id),
    }
    let text = |id: Id| match id {
        Id::Text(text) => text.trim().to_string(),
        Id::Number(number) => format!("{number:012}"),
    };
    Ok(match Ids::deserialize(deserializer)? {
        Ids::Many(ids) => ids.into_iter().map(text).collect(),
        Ids::One(Id::Text(list)) => list
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect(),
        Ids::One(id) => vec![text(id)],
    })
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSettings {
    pub cooldown_secs: u64,
    pub max_mutations_per_hour: u32,
    pub approval_ttl_secs: u64,
    pub plan_ttl_secs: u64,
    pub approval_poll_secs: u64,
    pub breaker_failures: u32,
    pub breaker_window_secs: u64,
    #[serde(default)]
    pub(super) freezes: Vec<RawFreeze>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFreeze {
    pub(super) from: String,
    pub(super) until: String,
    #[serde(default)]
    pub(super) reason: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySettings {
    pub timeout_secs: u64,
    pub poll_secs: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    pub webhooks: Vec<Webhook>,
    pub sns_topic_arn: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    #[serde(default)]
    pub template: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub address: String,
    pub tokens: BTreeMap<String, String>,
    /// A directory of one file per approver (a mounted Secret): its name is the approver, its
    /// content the token. Added to `tokens`.
    pub tokens_dir: String,
    /// A JSON object of approver → token, as a Secrets Manager key/value secret holds it (ECS
    /// injects it whole into `NODEMEDIC_HTTP__TOKENS_JSON`). Added to `tokens`, then emptied.
    #[serde(default)]
    pub tokens_json: String,
    pub ready_window_secs: u64,
    pub console: bool,
    /// A connection that has not sent a whole request head within this is closed; idle
    /// keep-alive connections too.
    pub header_read_timeout_secs: u64,
    /// A request body not received within this is answered 408.
    pub body_read_timeout_secs: u64,
    /// Connections served at once; more wait in the kernel's backlog, holding no descriptor.
    pub max_connections: usize,
    /// On shutdown, how long open connections may finish before they are dropped.
    pub drain_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSettings {
    pub endpoint: String,
    pub service_name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSettings {
    /// Cluster names, or `*` for every cluster; empty turns the watcher off.
    pub clusters: Vec<String>,
    pub interval_secs: u64,
}

impl WatchSettings {
    pub fn enabled(&self) -> bool {
        !self.clusters.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinSettings {
    /// Unset: see [`JoinSettings::deadline_secs`].
    #[serde(default)]
    pub deadline_secs: Option<u64>,
}

impl JoinSettings {
    /// When a launched instance must have a Node: as set, else 300 s when the cluster's API is
    /// read and 900 s (when EKS reports NodeCreationFailure) when it is not.
    pub fn deadline_secs(&self, cluster_api: &ClusterApiSettings) -> u64 {
        self.deadline_secs
            .unwrap_or(if cluster_api.enabled { 300 } else { 900 })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterApiSettings {
    pub enabled: bool,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeSettings {
    pub wait_time_secs: u64,
    pub max_messages: i32,
    pub visibility_timeout_secs: i32,
    pub max_in_flight: usize,
    pub shutdown_grace_secs: u64,
    /// How long the first handled message of a delete batch waits for others to join it.
    pub delete_batch_wait_ms: u64,
    /// How long the next receive waits for three quarters of the handler slots to be free when fewer are.
    pub receive_batch_wait_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub backend: StoreBackend,
    pub lease_ttl_secs: u64,
    pub state_table: String,
    pub audit_table: String,
    pub event_ttl_days: u64,
    /// The customer managed key the tables are encrypted with (nodemedic-tables.yaml's
    /// `KeyArn`); empty when they use an AWS owned key.
    pub tables_key_arn: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    pub path: PathBuf,
    pub journal_mode: JournalMode,
    /// Signs the SQLite chain's head after every write; empty leaves it unsigned.
    pub anchor_key: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationSettings {
    pub nodegroup_poll_secs: f64,
    pub nodegroup_timeout_secs: u64,
    pub route_verdict_ttl_secs: u64,
    /// How long an Auto Scaling group's nodegroup (or "not ours") is taken as known; 0 resolves
    /// every launch event again.
    pub resolution_ttl_secs: u64,
    /// How long evidence judged unhealthy is reused for the nodegroup's next launches in the
    /// same situation (`pipeline::failure_evidence`); 0 reads it for every launch.
    pub failure_evidence_ttl_secs: u64,
    pub incident_window_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// A setting with a fixed set of values: parsed from its text once, by `validate`, so that no
/// caller matches a string again.
pub trait Choice: Copy + Sized + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;

    fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|choice| choice.as_str() == text)
    }
}

macro_rules! choice {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// The value as written in the settings.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl Choice for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice!(
    /// How log lines are written; `auto` is JSON unless standard error is a terminal.
    LogFormat { Auto => "auto", Text => "text", Json => "json" }
);
choice!(
    /// Where incidents, records and the guard's shared state live.
    StoreBackend {
        /// One file, one replica.
        Sqlite => "sqlite",
        /// Shared tables, several replicas.
        Dynamodb => "dynamodb",
    }
);
choice!(
    /// SQLite's journal: `delete` where WAL's shared memory is not available (some network file
    /// systems).
    JournalMode { Wal => "wal", Delete => "delete" }
);
choice!(
    /// The body a webhook receives.
    #[derive(Default)]
    WebhookFormat { #[default] Json => "json", Slack => "slack", Template => "template" }
);

/// A section as read, before its choices are checked: [`Choice`] fields are still text.
pub(super) trait RawSection {
    type Raw: serde::de::DeserializeOwned + std::fmt::Debug;
}

pub(super) type Raw<T> = <T as RawSection>::Raw;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: String,
    pub(super) level: String,
}

impl RawSection for LogSettings {
    type Raw = RawLog;
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) path: PathBuf,
    pub(super) journal_mode: String,
    pub(super) anchor_key: String,
}

impl RawSection for AuditSettings {
    type Raw = RawAudit;
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) backend: String,
    pub(super) lease_ttl_secs: u64,
    pub(super) state_table: String,
    pub(super) audit_table: String,
    pub(super) event_ttl_days: u64,
    pub(super) tables_key_arn: String,
}

impl RawSection for StoreSettings {
    type Raw = RawStore;
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) webhooks: Vec<RawWebhook>,
    pub(super) sns_topic_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    #[serde(default)]
    pub(super) url: String,
    /// A file holding the URL (a mounted secret), instead of `url`.
    #[serde(default)]
    pub(super) url_file: String,
    #[serde(default = "default_webhook_format")]
    pub(super) format: String,
    #[serde(default)]
    pub(super) template: String,
}

fn default_webhook_format() -> String {
    WebhookFormat::Json.as_str().into()
}

impl RawSection for NotifySettings {
    type Raw = RawNotify;
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub(super) mode: String,
    pub(super) queue_url: String,
    pub(super) region: String,
    pub(super) intake: IntakeSettings,
    pub(super) audit: Raw<AuditSettings>,
    pub(super) remediation: RemediationSettings,
    pub(super) log: Raw<LogSettings>,
    pub(super) watch: WatchSettings,
    pub(super) join: JoinSettings,
    pub(super) cluster_api: ClusterApiSettings,
    pub(super) fixes: BTreeMap<String, String>,
    pub(super) scope: ScopeRules,
    pub(super) guard: GuardSettings,
    pub(super) verify: VerifySettings,
    pub(super) notify: Raw<NotifySettings>,
    pub(super) http: HttpSettings,
    pub(super) otlp: OtlpSettings,
    pub(super) store: Raw<StoreSettings>,
    pub(super) accounts: AccountsSettings,
}
