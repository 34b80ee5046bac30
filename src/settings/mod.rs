//! Settings: config/default.toml (embedded), then an optional file, then `NODEMEDIC_*`
//! environment variables, then command-line flags; validated once, with every problem named
//! by its key.

mod secret_files;
mod sections;
#[cfg(test)]
mod tests;
mod validate;
mod warnings;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::core::guard::{FixPolicy, Freeze, Mode, Policy, ScopeRules};
use crate::core::plan::FixKind;
pub use sections::*;

const DEFAULTS: &str = include_str!("../../config/default.toml");
pub const ENV_PREFIX: &str = "NODEMEDIC";
/// Variables with this prefix are test hooks (see `faults`), never settings.
pub const TEST_HOOK_PREFIX: &str = "NODEMEDIC_TESTING_";

/// Everything nodemedic can be told, validated: the mode, the fix policies and each section.
/// Settings import the core's vocabulary (mode, fix kinds and policies, scope rules) and no
/// module that does I/O; the edges read them.
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
    pub cluster_api: ClusterApiSettings,
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
    /// When a launched instance must have a Node (see [`JoinSettings::deadline_secs`]).
    pub fn join_deadline_secs(&self) -> u64 {
        self.join.deadline_secs(&self.cluster_api)
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
        // Secrets are text as given: parsing `00001234567890123456` as a number would drop its
        // zeros and lock its owner out.
        let (secrets, env): (HashMap<String, String>, HashMap<String, String>) = env
            .into_iter()
            .partition(|(key, _)| is_secret_variable(key));
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
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(secrets)),
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
        let mut raw: RawSettings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Invalid(vec![problem_from_load_error(&e.to_string())]))?;
        let unreadable = secret_files::read_secret_files(&mut raw);
        if !unreadable.is_empty() {
            return Err(ConfigError::Invalid(unreadable));
        }
        Self::validate(raw)
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
    let secret = SECRET_SETTINGS.iter().any(|secret| key.contains(secret));
    Problem {
        key: key.to_string(),
        problem: if secret {
            redacted(text, key)
        } else {
            text.to_string()
        },
    }
}

/// Settings whose values are secrets (approver tokens, webhook URLs): a load error names the
/// key, never the value.
const SECRET_SETTINGS: [&str; 4] = [
    "http.tokens",
    "http.tokens_json",
    "notify.webhooks",
    "audit.anchor_key",
];

/// Whether an environment variable sets one of the [`SECRET_SETTINGS`].
fn is_secret_variable(name: &str) -> bool {
    let Some(key) = name
        .strip_prefix(ENV_PREFIX)
        .and_then(|k| k.strip_prefix('_'))
    else {
        return false;
    };
    let key = key.to_ascii_lowercase().replace("__", ".");
    SECRET_SETTINGS
        .iter()
        .any(|secret| key == *secret || key.starts_with(&format!("{secret}.")))
}

/// `text` with every quoted value (in `"` or backquotes) but the key replaced.
fn redacted(text: &str, key: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = &rest[open..=open];
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(quote) else {
            // An unmatched quote: what follows may be the value.
            out.push_str("<redacted>");
            return out;
        };
        let quoted = &after[..close];
        out.push_str(if quoted.contains(key) {
            quoted
        } else {
            "<redacted>"
        });
        out.push_str(quote);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}
