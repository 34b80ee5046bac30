//! Commands that start something or print what the settings imply: `run`, `demo`,
//! `iam-policy`, `probe`, `store init`, `config check`.

use std::process::ExitCode;

use crate::shutdown::Shutdown;

use super::*;
#[cfg(feature = "demo")]
use crate::settings::{LogFormat, LogSettings, OtlpSettings};

pub(super) async fn daemon(args: RunArgs) -> Result<ExitCode, CliError> {
    let settings = Settings::load(&Overrides {
        config_file: args.settings.config,
        queue_url: args.queue_url,
        mode: args.mode,
        audit_db: args.settings.audit_db,
    })?;
    settings.require_queue()?;
    let telemetry = crate::telemetry::init(&settings.log, &settings.otlp)?;
    let shutdown = Shutdown::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let runtime = crate::daemon::Runtime {
        log_level: telemetry.log_level.clone(),
    };
    let result = crate::daemon::run(settings, args.once, shutdown, runtime).await;
    let flushing = telemetry.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.shutdown()).await;
    result?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "demo")]
pub(super) async fn demo(args: DemoArgs) -> Result<ExitCode, CliError> {
    crate::telemetry::init(
        &LogSettings {
            format: LogFormat::Text,
            level: "warn".into(),
        },
        &OtlpSettings {
            endpoint: String::new(),
            service_name: "nodemedic".into(),
        },
    )?;
    crate::demo::run(&crate::demo::DemoOptions {
        lab: args.lab,
        audit_db: args.audit_db,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn iam_policy(args: IamPolicyArgs) -> Result<ExitCode, CliError> {
    let settings = Settings::load(&Overrides {
        config_file: args.settings.config,
        mode: args.mode,
        ..Overrides::default()
    })?;
    let narrowed = |mut input: crate::iam::PolicyInput| {
        input.partition = args.partition.clone();
        input.managed_tag = args.managed_tag;
        input
    };
    if args.member {
        // clap refuses --member without --hub-principal; an empty one is refused below.
        let hub = args.hub_principal.as_deref().unwrap_or_default();
        let role = crate::iam::member_role(&settings, hub, narrowed)?;
        println!("{}", serde_json::to_string_pretty(&role)?);
        return Ok(ExitCode::SUCCESS);
    }
    let input = narrowed(crate::iam::PolicyInput::from_settings(&settings));
    if args.format == "cloudformation" {
        print!("{}", crate::iam::policy_cloudformation(&input));
    } else if args.format == "cloudformation-member" {
        print!("{}", crate::iam::member_policy_cloudformation(&input));
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::iam::policy_json(&input))?
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn probe(args: ProbeArgs) -> Result<ExitCode, CliError> {
    let address = match args.address {
        Some(address) => address,
        None => {
            Settings::load(&Overrides {
                config_file: args.settings.config,
                ..Overrides::default()
            })?
            .http
            .address
        }
    };
    if address.is_empty() {
        return Err(CliError::Refused(
            "no address to probe: pass --address or set http.address".into(),
        ));
    }
    match crate::http::probe(&address, &args.path).await {
        Ok(status) if (200..300).contains(&status) => Ok(ExitCode::SUCCESS),
        Ok(status) => {
            eprintln!("nodemedic: {} answered {status}", args.path);
            Ok(ExitCode::FAILURE)
        }
        Err(why) => {
            eprintln!("nodemedic: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub(super) async fn store_init(settings: SettingsArgs) -> Result<ExitCode, CliError> {
    let settings = Settings::load(&Overrides {
        config_file: settings.config,
        ..Overrides::default()
    })?;
    if settings.store.backend != StoreBackend::Dynamodb {
        return Err(CliError::Refused(format!(
            "store.backend is {:?}: `store init` creates DynamoDB tables (SQLite creates its file itself)",
            settings.store.backend.as_str()
        )));
    }
    let sdk = crate::aws::load_config(settings.region.as_deref()).await;
    crate::audit::dynamo::create_tables(
        &aws_sdk_dynamodb::Client::new(&sdk),
        &settings.store.state_table,
        &settings.store.audit_table,
    )
    .await?;
    println!(
        "tables {} and {} are ready",
        settings.store.state_table, settings.store.audit_table
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn config_check(
    settings: SettingsArgs,
    mode: Option<String>,
) -> Result<ExitCode, CliError> {
    let settings = Settings::load(&Overrides {
        config_file: settings.config,
        mode,
        audit_db: settings.audit_db,
        ..Overrides::default()
    })?;
    print!("{}", crate::report::settings_text(&settings));
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM (ECS, Kubernetes) or Ctrl-C: stop receiving, finish what is in flight, exit 0.
async fn stop_on_signal(shutdown: Shutdown) {
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    shutdown.request();
                    return;
                }
            };
        tokio::select! {
            _ = terminate.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stop requested: finishing messages in flight");
    shutdown.request();
}
