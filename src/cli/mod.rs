//! The subcommands, one function each: `main` parses the command line and calls [`dispatch`].
//! Output goes through `report`; errors come back typed, and `main` prints them.

mod args;
mod audit;
mod control;
mod diagnose;
mod run;

use std::process::ExitCode;

pub use args::*;

use crate::audit::{AuditError, AuditStore};
use crate::settings::{ConfigError, Overrides, Settings, StoreBackend};

/// Why a command failed. `main` prints it with its sources; a [`ConfigError`] exits 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Settings(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] AuditError),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    #[error(transparent)]
    Diagnose(#[from] crate::diagnose::DiagnoseError),
    #[error(transparent)]
    Operate(#[from] crate::operate::OperateError),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error(transparent)]
    MemberRole(#[from] crate::iam::MemberRoleError),
    #[cfg(feature = "demo")]
    #[error("demo failed")]
    Demo(#[from] crate::demo::DemoError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("cannot write {path}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    /// The command cannot do what was asked, for a reason it states.
    #[error("{0}")]
    Refused(String),
}

/// Exit code for settings that cannot be used (clap uses 2 for bad usage too).
pub const EXIT_BAD_SETTINGS: u8 = 2;

/// Runs one subcommand.
pub async fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Run(args) => run::daemon(args).await,
        #[cfg(feature = "demo")]
        Command::Demo(args) => run::demo(args).await,
        Command::IamPolicy(args) => run::iam_policy(args),
        Command::Probe(args) => run::probe(args).await,
        Command::Store {
            command: StoreCommand::Init { settings },
        } => run::store_init(settings).await,
        Command::Config {
            command: ConfigCommand::Check { settings, mode },
        } => run::config_check(settings, mode),
        Command::Catalog => {
            print!("{}", crate::report::catalog_markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Diagnose(args) => diagnose::diagnose(args).await,
        Command::Audit { command } => audit::audit(command).await,
        Command::Plans {
            command:
                PlansCommand::List {
                    settings,
                    all,
                    json,
                },
        } => control::plans(settings, all, json).await,
        Command::Approve(args) => control::decide(args, true).await,
        Command::Reject(args) => control::decide(args, false).await,
        Command::KillSwitch(args) => control::kill_switch(args).await,
        Command::Breakers { command } => control::breakers(command).await,
    }
}

/// Who is at the keyboard, for the audit trail.
fn operator() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".into())
}

fn load_settings(settings: &SettingsArgs) -> Result<Settings, CliError> {
    Ok(Settings::load(&Overrides {
        config_file: settings.config.clone(),
        audit_db: settings.audit_db.clone(),
        ..Overrides::default()
    })?)
}

async fn open_store(settings: SettingsArgs) -> Result<AuditStore, CliError> {
    let settings = load_settings(&settings)?;
    if settings.store.backend == StoreBackend::Sqlite {
        let path = &settings.audit.path;
        if !path.exists() {
            return Err(CliError::Refused(format!(
                "no audit database at {} (set --audit-db or audit.path)",
                path.display()
            )));
        }
    }
    Ok(crate::daemon::open_store(&settings, None).await?)
}
