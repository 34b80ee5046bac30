//! Settings: config/default.toml (embedded), then an optional file, then `NODEMEDIC_*`
//! environment variables, then command-line flags; validated once, with every problem named
//! by its key.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Deserialize;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::core::guard::{FixPolicy, Freeze, Mode, Policy, ScopeRules};
use crate::core::plan::FixKind;

const DEFAULTS: &str = include_str!("../config/default.toml");
pub const ENV_PREFIX: &str = "NODEMEDIC";
/// Variables with this prefix are test hooks (see [`crate::faults`]), never settings.
pub const TEST_HOOK_PREFIX: &str = "NODEMEDIC_TESTING_";

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub mode: Mode,
    pub queue_url: String,
    pub region: Option<String>,
    pub intake: IntakeSettings,
    pub audit: AuditSettings,
    pub remediation: RemediationSettings,
    pub log: LogSettings,
    pub watch: WatchSettings,
    pub join: JoinSettings,
    pub fixes: BTreeMap<FixKind, FixPolicy>,
    pub scope: ScopeRules,
    pub guard: GuardSettings,
    pub freezes: Vec<Freeze>,
    pub verify: VerifySettings,
    pub notify: NotifySettings,
    pub http: HttpSettings,
    pub otlp: OtlpSettings,
    pub store: StoreSettings,
    pub accounts: AccountsSettings,
}

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

/// What IAM and STS accept in role names, role session names and external ids.
fn iam_name_chars(text: &str, extra: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) || extra.contains(c))
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
    freezes: Vec<RawFreeze>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFreeze {
    from: String,
    until: String,
    #[serde(default)]
    reason: String,
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
    #[serde(default = "default_webhook_format")]
    pub format: String,
    #[serde(default)]
    pub template: String,
}

fn default_webhook_format() -> String {
    "json".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub address: String,
    pub tokens: BTreeMap<String, String>,
    pub ready_window_secs: u64,
    pub console: bool,
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
    pub deadline_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeSettings {
    pub wait_time_secs: u64,
    pub max_messages: i32,
    pub visibility_timeout_secs: i32,
    pub max_in_flight: usize,
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub backend: String,
    pub lease_ttl_secs: u64,
    pub state_table: String,
    pub audit_table: String,
    pub event_ttl_days: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    pub path: PathBuf,
    pub journal_mode: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationSettings {
    pub nodegroup_poll_secs: f64,
    pub nodegroup_timeout_secs: u64,
    pub route_verdict_ttl_secs: u64,
    pub incident_window_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: String,
    pub level: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    mode: String,
    queue_url: String,
    region: String,
    intake: IntakeSettings,
    audit: AuditSettings,
    remediation: RemediationSettings,
    log: LogSettings,
    watch: WatchSettings,
    join: JoinSettings,
    fixes: BTreeMap<String, String>,
    scope: ScopeRules,
    guard: GuardSettings,
    verify: VerifySettings,
    notify: NotifySettings,
    http: HttpSettings,
    otlp: OtlpSettings,
    store: StoreSettings,
    accounts: AccountsSettings,
}

/// Values given on the command line; they win over every other source.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub queue_url: Option<String>,
    pub mode: Option<String>,
    pub audit_db: Option<PathBuf>,
}

/// One thing wrong with the settings, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub problem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read settings: {0}")]
    Load(String),
    #[error("invalid settings:\n{}", .0.iter().map(|p| format!("  - {}: {}", p.key, p.problem)).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Invalid(problems) => problems.clone(),
            ConfigError::Load(text) => vec![Problem {
                key: "(source)".into(),
                problem: text.clone(),
            }],
        }
    }
}

impl Settings {
    /// Usable but probably not what was meant: `nodemedic config check` prints these.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mutates = matches!(self.mode, Mode::Approve | Mode::Auto);
        if self.queue_url.is_empty() {
            warnings.push(
                "queue_url is empty: `nodemedic run` refuses to start without a queue".into(),
            );
        }
        if self.scope.ignore_tag.is_empty() {
            warnings.push(
                "scope.ignore_tag is empty: no route table, key or nodegroup can opt out of fixes"
                    .into(),
            );
        }
        if mutates && self.guard.max_mutations_per_hour == 0 {
            warnings.push(format!(
                "guard.max_mutations_per_hour is 0: in {} mode no fix will ever be applied",
                self.mode
            ));
        }
        if !self.http.address.is_empty() && self.http.tokens.is_empty() {
            warnings.push(format!(
                "http.address is {} but http.tokens is empty: the approvals API refuses every request",
                self.http.address
            ));
        }
        if self.http.console && self.http.address.is_empty() {
            warnings.push(
                "http.console is on but http.address is empty: the console is not served".into(),
            );
        } else if self.http.console && self.http.tokens.is_empty() {
            warnings.push(
                "http.console is on but http.tokens is empty: nobody can sign in to the console"
                    .into(),
            );
        }
        let accounts = &self.accounts;
        if accounts.hub_and_spoke() && accounts.members.is_empty() {
            warnings.push(format!(
                "accounts.role_name is {:?} but accounts.members is empty: only this account is served",
                accounts.role_name
            ));
        }
        if accounts.hub_and_spoke() && accounts.external_id.is_empty() {
            warnings.push(
                "accounts.external_id is empty: member roles cannot require an external id from this daemon"
                    .into(),
            );
        }
        if !accounts.hub_and_spoke() && !accounts.external_id.is_empty() {
            warnings.push(
                "accounts.external_id is set but accounts.role_name is empty: no role is assumed"
                    .into(),
            );
        }
        let asks_for_approval = self.mode == Mode::Approve
            || (self.mode == Mode::Auto
                && FixKind::ALL
                    .iter()
                    .any(|fix| self.policy().fix_policy(*fix) == FixPolicy::Approve));
        if asks_for_approval
            && self.notify.webhooks.is_empty()
            && self.notify.sns_topic_arn.is_empty()
        {
            warnings.push(
                "plans will wait for approval but no webhook or SNS topic tells anyone (`nodemedic plans list` shows them)"
                    .into(),
            );
        }
        warnings
    }

    /// The guard's policy from these settings.
    pub fn policy(&self) -> Policy {
        Policy {
            mode: self.mode,
            fixes: self.fixes.clone(),
            scope: self.scope.clone(),
            freezes: self.freezes.clone(),
            cooldown_secs: self.guard.cooldown_secs,
            max_mutations_per_hour: self.guard.max_mutations_per_hour,
        }
    }

    /// Loads settings from the process environment.
    pub fn load(overrides: &Overrides) -> Result<Settings, ConfigError> {
        Self::load_with_env(overrides, None)
    }

    /// Loads settings with an explicit environment (`None` reads the process environment).
    pub fn load_with_env(
        overrides: &Overrides,
        env: Option<HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = &overrides.config_file {
            if !path.exists() {
                return Err(ConfigError::Invalid(vec![Problem {
                    key: "--config".into(),
                    problem: format!("file {} does not exist", path.display()),
                }]));
            }
            builder = builder.add_source(config::File::from(path.as_path()).required(true));
        }
        let env = env.unwrap_or_else(|| {
            std::env::vars()
                .filter(|(key, _)| !key.starts_with(TEST_HOOK_PREFIX))
                .collect()
        });
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("watch.clusters")
                .with_list_parse_key("scope.accounts")
                .with_list_parse_key("scope.regions")
                .with_list_parse_key("scope.clusters")
                .with_list_parse_key("scope.nodegroups")
                .with_list_parse_key("scope.tags")
                .with_list_parse_key("scope.deny_accounts")
                .with_list_parse_key("scope.deny_regions")
                .with_list_parse_key("scope.deny_clusters")
                .with_list_parse_key("scope.deny_nodegroups")
                .with_list_parse_key("scope.deny_tags")
                .with_list_parse_key("accounts.members")
                .source(Some(env)),
        );
        let set = |builder: config::ConfigBuilder<config::builder::DefaultState>,
                   key: &str,
                   value: Option<String>| {
            builder
                .set_override_option(key, value)
                .map_err(|e| ConfigError::Load(e.to_string()))
        };
        builder = set(builder, "queue_url", overrides.queue_url.clone())?;
        builder = set(builder, "mode", overrides.mode.clone())?;
        builder = set(
            builder,
            "audit.path",
            overrides.audit_db.as_ref().map(|p| p.display().to_string()),
        )?;
        let raw: RawSettings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Invalid(vec![problem_from_load_error(&e.to_string())]))?;
        Self::validate(raw)
    }

    fn validate(raw: RawSettings) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, text: String| {
            problems.push(Problem {
                key: key.into(),
                problem: text,
            })
        };
        let mode = Mode::parse(&raw.mode).unwrap_or_else(|| {
            problem(
                "mode",
                format!(
                    "unknown mode {:?}; expected one of: {}",
                    raw.mode,
                    Mode::ALL.map(Mode::as_str).join(", ")
                ),
            );
            Mode::DryRun
        });
        if !raw.queue_url.is_empty() && !raw.queue_url.starts_with("http") {
            problem(
                "queue_url",
                format!(
                    "{:?} is not a queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)",
                    raw.queue_url
                ),
            );
        }
        let intake = &raw.intake;
        if intake.wait_time_secs > 20 {
            problem(
                "intake.wait_time_secs",
                format!("{} is over SQS's maximum of 20", intake.wait_time_secs),
            );
        }
        if !(1..=10).contains(&intake.max_messages) {
            problem(
                "intake.max_messages",
                format!("{} is outside 1-10", intake.max_messages),
            );
        }
        if !(1..=43_200).contains(&intake.visibility_timeout_secs) {
            problem(
                "intake.visibility_timeout_secs",
                format!("{} is outside 1-43200", intake.visibility_timeout_secs),
            );
        }
        if intake.max_in_flight == 0 {
            problem("intake.max_in_flight", "must be at least 1".into());
        }
        if raw.audit.path.as_os_str().is_empty() {
            problem("audit.path", "must not be empty".into());
        }
        let remediation = &raw.remediation;
        if !(remediation.nodegroup_poll_secs > 0.0 && remediation.nodegroup_poll_secs <= 300.0) {
            problem(
                "remediation.nodegroup_poll_secs",
                format!("{} is outside (0, 300]", remediation.nodegroup_poll_secs),
            );
        }
        if remediation.nodegroup_timeout_secs == 0 {
            problem(
                "remediation.nodegroup_timeout_secs",
                "must be at least 1".into(),
            );
        }
        if !matches!(raw.log.format.as_str(), "text" | "json" | "auto") {
            problem(
                "log.format",
                format!(
                    "{:?} is not one of \"auto\", \"text\", \"json\"",
                    raw.log.format
                ),
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
            problem(
                "log.level",
                format!("{:?} is not a tracing filter", raw.log.level),
            );
        }
        let mut fixes = BTreeMap::new();
        for (name, policy) in &raw.fixes {
            let key = format!("fixes.{name}");
            let Some(fix) = FixKind::from_code(name) else {
                problem(
                    &key,
                    format!(
                        "unknown fix kind; expected one of: {}",
                        FixKind::ALL.map(FixKind::code).join(", ")
                    ),
                );
                continue;
            };
            match policy.as_str() {
                "auto" => fixes.insert(fix, FixPolicy::Auto),
                "approve" => fixes.insert(fix, FixPolicy::Approve),
                "never" => fixes.insert(fix, FixPolicy::Never),
                other => {
                    problem(&key, format!("{other:?} is not auto, approve or never"));
                    None
                }
            };
        }
        let mut freezes = Vec::new();
        for (n, freeze) in raw.guard.freezes.iter().enumerate() {
            let parse = |text: &str, field: &str, problem: &mut dyn FnMut(&str, String)| {
                match OffsetDateTime::parse(text, &Rfc3339) {
                    Ok(at) => Some(at),
                    Err(e) => {
                        problem(
                            &format!("guard.freezes[{n}].{field}"),
                            format!("{text:?} is not RFC 3339: {e}"),
                        );
                        None
                    }
                }
            };
            let from = parse(&freeze.from, "from", &mut problem);
            let until = parse(&freeze.until, "until", &mut problem);
            if let (Some(from), Some(until)) = (from, until) {
                if until <= from {
                    problem(
                        &format!("guard.freezes[{n}]"),
                        "until is not after from".into(),
                    );
                }
                freezes.push(Freeze {
                    from,
                    until,
                    reason: freeze.reason.clone(),
                });
            }
        }
        if raw.guard.breaker_failures == 0 {
            problem("guard.breaker_failures", "must be at least 1".into());
        }
        if raw.guard.approval_poll_secs == 0 {
            problem("guard.approval_poll_secs", "must be at least 1".into());
        }
        if !raw.verify.poll_secs.is_finite() || raw.verify.poll_secs <= 0.0 {
            problem("verify.poll_secs", "must be more than 0".into());
        }
        for (n, hook) in raw.notify.webhooks.iter().enumerate() {
            if !hook.url.starts_with("http://") && !hook.url.starts_with("https://") {
                problem(
                    &format!("notify.webhooks[{n}].url"),
                    format!("{:?} is not an http(s) URL", hook.url),
                );
            }
            if !matches!(hook.format.as_str(), "slack" | "json" | "template") {
                problem(
                    &format!("notify.webhooks[{n}].format"),
                    format!("{:?} is not slack, json or template", hook.format),
                );
            }
            if hook.format == "template" && hook.template.is_empty() {
                problem(
                    &format!("notify.webhooks[{n}].template"),
                    "a template webhook needs a template".into(),
                );
            }
        }
        if !raw.http.address.is_empty() && raw.http.address.parse::<std::net::SocketAddr>().is_err()
        {
            problem(
                "http.address",
                format!("{:?} is not host:port", raw.http.address),
            );
        }
        for (name, token) in &raw.http.tokens {
            if token.len() < 16 {
                problem(
                    &format!("http.tokens.{name}"),
                    "a token needs at least 16 characters".into(),
                );
            }
        }
        if !matches!(raw.store.backend.as_str(), "sqlite" | "dynamodb") {
            problem(
                "store.backend",
                format!(
                    "{:?} is neither \"sqlite\" nor \"dynamodb\"",
                    raw.store.backend
                ),
            );
        }
        if raw.store.backend == "dynamodb" {
            for (key, table) in [
                ("store.state_table", &raw.store.state_table),
                ("store.audit_table", &raw.store.audit_table),
            ] {
                if table.len() < 3 || table.len() > 255 {
                    problem(key, "a DynamoDB table name has 3 to 255 characters".into());
                }
            }
            if raw.store.state_table == raw.store.audit_table {
                problem(
                    "store.audit_table",
                    "must differ from store.state_table".into(),
                );
            }
        }
        if raw.store.event_ttl_days == 0 {
            problem("store.event_ttl_days", "must be at least 1".into());
        }
        if raw.store.lease_ttl_secs < 3 {
            problem("store.lease_ttl_secs", "must be at least 3".into());
        }
        if !matches!(raw.audit.journal_mode.as_str(), "wal" | "delete") {
            problem(
                "audit.journal_mode",
                format!(
                    "{:?} is neither \"wal\" nor \"delete\"",
                    raw.audit.journal_mode
                ),
            );
        }
        if raw.http.ready_window_secs < 2 {
            problem("http.ready_window_secs", "must be at least 2".into());
        }
        let endpoint = &raw.otlp.endpoint;
        if !(endpoint.is_empty()
            || endpoint.starts_with("http://")
            || endpoint.starts_with("https://"))
        {
            problem(
                "otlp.endpoint",
                format!("{:?} is not an http:// or https:// URL", raw.otlp.endpoint),
            );
        }
        if raw.watch.interval_secs == 0 {
            problem("watch.interval_secs", "must be at least 1".into());
        }
        if raw.watch.clusters.iter().any(|c| c.trim().is_empty()) {
            problem("watch.clusters", "contains an empty cluster name".into());
        }
        validate_accounts(&raw.accounts, &mut problem);
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        Ok(Settings {
            mode,
            queue_url: raw.queue_url,
            region: Some(raw.region).filter(|r| !r.is_empty()),
            intake: raw.intake,
            audit: raw.audit,
            remediation: raw.remediation,
            log: raw.log,
            watch: raw.watch,
            join: raw.join,
            fixes,
            scope: raw.scope,
            guard: raw.guard,
            freezes,
            verify: raw.verify,
            notify: raw.notify,
            http: raw.http,
            otlp: raw.otlp,
            store: raw.store,
            accounts: raw.accounts,
        })
    }

    /// `run` needs a queue; other commands do not.
    pub fn require_queue(&self) -> Result<&str, ConfigError> {
        if self.queue_url.is_empty() {
            return Err(ConfigError::Invalid(vec![Problem {
                key: "queue_url".into(),
                problem: "no queue URL: set --queue-url, NODEMEDIC_QUEUE_URL or queue_url in the config file".into(),
            }]));
        }
        Ok(&self.queue_url)
    }
}

fn validate_accounts(accounts: &AccountsSettings, problem: &mut dyn FnMut(&str, String)) {
    let role = &accounts.role_name;
    if !role.is_empty() && (role.len() > 64 || !iam_name_chars(role, "")) {
        problem(
            "accounts.role_name",
            format!("{role:?} is not an IAM role name (1-64 of A-Z a-z 0-9 _+=,.@-)"),
        );
    }
    if role.is_empty() && !accounts.members.is_empty() {
        problem(
            "accounts.role_name",
            "accounts.members is set: name the role to assume in them".into(),
        );
    }
    let external_id = &accounts.external_id;
    // STS takes 2-1224 characters; a one-character id is refused by AssumeRole itself.
    if !external_id.is_empty()
        && (!(2..=1224).contains(&external_id.len()) || !iam_name_chars(external_id, ":/"))
    {
        problem(
            "accounts.external_id",
            "must be 2-1224 of A-Z a-z 0-9 _+=,.@:/-".into(),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (n, account) in accounts.members.iter().enumerate() {
        let key = format!("accounts.members[{n}]");
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            problem(&key, format!("{account:?} is not a 12-digit account id"));
        } else if !seen.insert(account) {
            problem(&key, format!("{account} is listed twice"));
        }
    }
    let session = &accounts.session_name;
    if !(2..=64).contains(&session.len()) || !iam_name_chars(session, "") {
        problem(
            "accounts.session_name",
            format!("{session:?} is not a role session name (2-64 of A-Z a-z 0-9 _+=,.@-)"),
        );
    }
    if !(900..=43_200).contains(&accounts.session_duration_secs) {
        problem(
            "accounts.session_duration_secs",
            format!(
                "{} is outside 900-43200 (what STS allows)",
                accounts.session_duration_secs
            ),
        );
    }
}

/// The `config` crate reports `... for key `a.b`` or `unknown field `x``; keep the key first.
fn problem_from_load_error(text: &str) -> Problem {
    let key = text
        .split("for key `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .or_else(|| {
            text.split("unknown field `")
                .nth(1)
                .and_then(|rest| rest.split('`').next())
        })
        .unwrap_or("(settings)");
    Problem {
        key: key.to_string(),
        problem: text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], overrides: Overrides) -> Result<Settings, ConfigError> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_with_env(&overrides, Some(env))
    }

    fn keys(error: ConfigError) -> Vec<String> {
        error.problems().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn the_embedded_defaults_are_valid_and_safe() {
        let settings = load(&[], Overrides::default()).unwrap();
        assert_eq!(settings.mode, Mode::DryRun);
        assert_eq!(settings.intake.wait_time_secs, 20);
        assert_eq!(settings.intake.max_messages, 10);
        assert!(settings.queue_url.is_empty());
        assert!(settings.require_queue().is_err());
    }

    #[test]
    fn environment_variables_override_defaults_with_nested_keys() {
        let settings = load(
            &[
                (
                    "NODEMEDIC_QUEUE_URL",
                    "http://localhost:5000/123456789012/q",
                ),
                ("NODEMEDIC_AUDIT__PATH", "/tmp/a.db"),
                ("NODEMEDIC_INTAKE__WAIT_TIME_SECS", "2"),
                ("NODEMEDIC_MODE", "auto"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(settings.queue_url, "http://localhost:5000/123456789012/q");
        assert_eq!(settings.audit.path, PathBuf::from("/tmp/a.db"));
        assert_eq!(settings.intake.wait_time_secs, 2);
        assert_eq!(settings.mode, Mode::Auto);
    }

    #[test]
    fn flags_win_over_the_environment() {
        let settings = load(
            &[
                ("NODEMEDIC_MODE", "auto"),
                ("NODEMEDIC_AUDIT__PATH", "/tmp/env.db"),
            ],
            Overrides {
                mode: Some("dry-run".into()),
                audit_db: Some("/tmp/flag.db".into()),
                queue_url: Some("https://sqs.us-west-2.amazonaws.com/1/q".into()),
                config_file: None,
            },
        )
        .unwrap();
        assert_eq!(settings.mode, Mode::DryRun);
        assert_eq!(settings.audit.path, PathBuf::from("/tmp/flag.db"));
        assert_eq!(
            settings.require_queue().unwrap(),
            "https://sqs.us-west-2.amazonaws.com/1/q"
        );
    }

    #[test]
    fn a_file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("nodemedic-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("nodemedic.toml");
        std::fs::write(&file, "mode = \"auto\"\n[intake]\nmax_in_flight = 2\n").unwrap();
        let overrides = Overrides {
            config_file: Some(file.clone()),
            ..Overrides::default()
        };
        let settings = load(&[], overrides.clone()).unwrap();
        assert_eq!(settings.mode, Mode::Auto);
        assert_eq!(settings.intake.max_in_flight, 2);
        assert_eq!(
            settings.intake.max_messages, 10,
            "unset keys keep their defaults"
        );
        let settings = load(&[("NODEMEDIC_MODE", "dry-run")], overrides).unwrap();
        assert_eq!(settings.mode, Mode::DryRun);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unknown_mode_is_refused_and_named() {
        let error = load(&[("NODEMEDIC_MODE", "yolo")], Overrides::default()).unwrap_err();
        assert_eq!(keys(error), vec!["mode"]);
        let error = load(
            &[],
            Overrides {
                mode: Some("fix-everything".into()),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert!(error.to_string().contains("fix-everything"));
        assert!(error.to_string().contains("dry-run"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let error = load(
            &[
                ("NODEMEDIC_INTAKE__MAX_MESSAGES", "50"),
                ("NODEMEDIC_INTAKE__WAIT_TIME_SECS", "21"),
                ("NODEMEDIC_LOG__FORMAT", "xml"),
                ("NODEMEDIC_QUEUE_URL", "my-queue"),
            ],
            Overrides::default(),
        )
        .unwrap_err();
        let mut found = keys(error);
        found.sort();
        assert_eq!(
            found,
            vec![
                "intake.max_messages",
                "intake.wait_time_secs",
                "log.format",
                "queue_url"
            ]
        );
    }

    #[test]
    fn a_wrongly_typed_value_names_its_key() {
        let error = load(
            &[("NODEMEDIC_INTAKE__MAX_IN_FLIGHT", "lots")],
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(keys(error), vec!["intake.max_in_flight"]);
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let error = load(
            &[("NODEMEDIC_AUDIT__PATHH", "/tmp/x.db")],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("pathh"), "{error}");
    }

    #[test]
    fn watched_clusters_come_as_a_comma_separated_list() {
        let settings = load(
            &[("NODEMEDIC_WATCH__CLUSTERS", "prod,staging")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(settings.watch.clusters, vec!["prod", "staging"]);
        assert!(settings.watch.enabled());
        assert!(
            !load(&[], Overrides::default()).unwrap().watch.enabled(),
            "off by default"
        );
        assert_eq!(
            load(&[], Overrides::default()).unwrap().join.deadline_secs,
            900
        );
    }

    #[test]
    fn fix_policies_scope_and_freezes_are_read_and_checked() {
        let dir =
            std::env::temp_dir().join(format!("nodemedic-guard-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("guard.toml");
        std::fs::write(
            &file,
            "[fixes]\npatch_kms_key_policy = \"approve\"\n[scope]\ndeny_clusters = [\"prod\"]\n\
             [guard]\nfreezes = [{ from = \"2026-12-20T00:00:00Z\", until = \"2027-01-04T00:00:00Z\", reason = \"holidays\" }]\n",
        )
        .unwrap();
        let overrides = Overrides {
            config_file: Some(file.clone()),
            ..Overrides::default()
        };
        let settings = load(
            &[("NODEMEDIC_SCOPE__DENY_TAGS", "env=prod,team=payments")],
            overrides,
        )
        .unwrap();
        let policy = settings.policy();
        assert_eq!(
            policy.fix_policy(FixKind::PatchKmsKeyPolicy),
            FixPolicy::Approve
        );
        assert_eq!(policy.fix_policy(FixKind::AddNatRoute), FixPolicy::Auto);
        assert_eq!(policy.scope.deny_clusters, vec!["prod"]);
        assert_eq!(policy.scope.deny_tags, vec!["env=prod", "team=payments"]);
        assert_eq!(policy.freezes[0].reason, "holidays");
        std::fs::write(
            &file,
            "[fixes]\nadd_route = \"auto\"\npatch_kms_key_policy = \"sometimes\"\n",
        )
        .unwrap();
        let error = load(
            &[],
            Overrides {
                config_file: Some(file),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        let mut found = keys(error);
        found.sort();
        assert_eq!(found, vec!["fixes.add_route", "fixes.patch_kms_key_policy"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn short_tokens_and_bad_addresses_are_refused() {
        let error = load(
            &[
                ("NODEMEDIC_HTTP__ADDRESS", "everywhere"),
                ("NODEMEDIC_HTTP__TOKENS__ALICE", "short"),
            ],
            Overrides::default(),
        )
        .unwrap_err();
        let mut found = keys(error);
        found.sort();
        assert_eq!(found, vec!["http.address", "http.tokens.alice"]);
    }

    #[test]
    fn the_console_is_off_by_default_and_warns_when_nobody_can_use_it() {
        let console_warnings = |env: &[(&str, &str)]| {
            load(env, Overrides::default())
                .unwrap()
                .warnings()
                .into_iter()
                .filter(|w| w.contains("http.console"))
                .collect::<Vec<_>>()
        };
        assert!(!load(&[], Overrides::default()).unwrap().http.console);
        assert!(console_warnings(&[]).is_empty());
        assert!(console_warnings(&[("NODEMEDIC_HTTP__CONSOLE", "true")])[0].contains("not served"));
        assert!(
            console_warnings(&[
                ("NODEMEDIC_HTTP__CONSOLE", "true"),
                ("NODEMEDIC_HTTP__ADDRESS", "127.0.0.1:8080")
            ])[0]
                .contains("nobody can sign in")
        );
        assert!(
            console_warnings(&[
                ("NODEMEDIC_HTTP__CONSOLE", "true"),
                ("NODEMEDIC_HTTP__ADDRESS", "127.0.0.1:8080"),
                ("NODEMEDIC_HTTP__TOKENS__ALICE", "alice-token-0123456789")
            ])
            .is_empty()
        );
    }

    #[test]
    fn one_account_is_served_unless_a_member_role_is_named() {
        let settings = load(&[], Overrides::default()).unwrap();
        assert!(!settings.accounts.hub_and_spoke());
        assert!(settings.accounts.members.is_empty());
        assert_eq!(settings.accounts.session_name, "nodemedic");
        assert_eq!(settings.accounts.session_duration_secs, 3600);
        assert!(settings.warnings().iter().all(|w| !w.contains("accounts.")));
    }

    #[test]
    fn member_accounts_come_from_the_environment_as_a_list() {
        let settings = load(
            &[
                ("NODEMEDIC_ACCOUNTS__ROLE_NAME", "nodemedic-member"),
                ("NODEMEDIC_ACCOUNTS__EXTERNAL_ID", "hub-7f3a"),
                ("NODEMEDIC_ACCOUNTS__MEMBERS", "111111111111,222222222222"),
                ("NODEMEDIC_ACCOUNTS__SESSION_DURATION_SECS", "900"),
            ],
            Overrides::default(),
        )
        .unwrap();
        let accounts = &settings.accounts;
        assert!(accounts.hub_and_spoke());
        assert_eq!(accounts.members, vec!["111111111111", "222222222222"]);
        assert_eq!(accounts.external_id, "hub-7f3a");
        assert_eq!(accounts.session_duration_secs, 900);
        assert!(
            settings.warnings().iter().all(|w| !w.contains("accounts.")),
            "a complete hub-and-spoke setting warns of nothing: {:?}",
            settings.warnings()
        );
    }

    #[test]
    fn a_lone_member_keeps_its_leading_zero() {
        // Without a comma the environment source reads the id as a number.
        let settings = load(
            &[
                ("NODEMEDIC_ACCOUNTS__ROLE_NAME", "nodemedic-member"),
                ("NODEMEDIC_ACCOUNTS__MEMBERS", "012345678901"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(settings.accounts.members, vec!["012345678901"]);
    }

    #[test]
    fn members_from_a_file_are_a_toml_list() {
        let dir =
            std::env::temp_dir().join(format!("nodemedic-accounts-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("accounts.toml");
        std::fs::write(
            &file,
            "[accounts]\nrole_name = \"nodemedic-member\"\nmembers = [\"111111111111\", \"099999999999\"]\n",
        )
        .unwrap();
        let settings = load(
            &[],
            Overrides {
                config_file: Some(file),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(
            settings.accounts.members,
            vec!["111111111111", "099999999999"]
        );
        assert!(
            settings
                .warnings()
                .iter()
                .any(|w| w.contains("accounts.external_id is empty")),
            "{:?}",
            settings.warnings()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_account_settings_are_named_by_key() {
        let error = load(
            &[
                ("NODEMEDIC_ACCOUNTS__ROLE_NAME", "no spaces allowed"),
                ("NODEMEDIC_ACCOUNTS__EXTERNAL_ID", "x"),
                (
                    "NODEMEDIC_ACCOUNTS__MEMBERS",
                    "111111111111,12345,111111111111",
                ),
                ("NODEMEDIC_ACCOUNTS__SESSION_NAME", "a b"),
                ("NODEMEDIC_ACCOUNTS__SESSION_DURATION_SECS", "60"),
            ],
            Overrides::default(),
        )
        .unwrap_err();
        let mut found = keys(error);
        found.sort();
        assert_eq!(
            found,
            vec![
                "accounts.external_id",
                "accounts.members[1]",
                "accounts.members[2]",
                "accounts.role_name",
                "accounts.session_duration_secs",
                "accounts.session_name",
            ]
        );
        let error = load(
            &[("NODEMEDIC_ACCOUNTS__MEMBERS", "111111111111,222222222222")],
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            keys(error),
            vec!["accounts.role_name"],
            "members without a role to assume"
        );
    }

    #[test]
    fn a_missing_config_file_is_named() {
        let error = load(
            &[],
            Overrides {
                config_file: Some("/nonexistent/nodemedic.toml".into()),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert_eq!(keys(error), vec!["--config"]);
    }
}
