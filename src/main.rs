//! The `nodemedic` binary: parses the command line and wires the library together.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use nodemedic::audit::AuditStore;
use nodemedic::audit::control::{self, PlanStatus};
use nodemedic::audit::store::query;
use nodemedic::cli::{
    AuditCommand, BreakersCommand, Cli, Command, ConfigCommand, DecisionArgs, DiagnoseArgs,
    PlansCommand, SettingsArgs, StoreCommand,
};
use nodemedic::config::{ConfigError, LogSettings, OtlpSettings, Overrides, Settings};
use nodemedic::operate;
use tokio_util::sync::CancellationToken;

/// Exit code for settings that cannot be used (clap uses 2 for bad usage too).
const EXIT_BAD_SETTINGS: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nodemedic: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("nodemedic: {error:#}");
            if error.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(EXIT_BAD_SETTINGS)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            let settings = Settings::load(&Overrides {
                config_file: args.settings.config,
                queue_url: args.queue_url,
                mode: args.mode,
                audit_db: args.settings.audit_db,
            })?;
            settings.require_queue()?;
            let telemetry = nodemedic::telemetry::init(&settings.log, &settings.otlp)?;
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            let runtime = nodemedic::daemon::Runtime {
                log_level: telemetry.log_level.clone(),
            };
            let result = nodemedic::daemon::run(settings, args.once, shutdown, runtime).await;
            let flushing = telemetry.clone();
            let _ = tokio::task::spawn_blocking(move || flushing.shutdown()).await;
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => audit(command).await,
        Command::Demo(args) => {
            nodemedic::telemetry::init(
                &LogSettings {
                    format: "text".into(),
                    level: "warn".into(),
                },
                &OtlpSettings {
                    endpoint: String::new(),
                    service_name: "nodemedic".into(),
                },
            )?;
            nodemedic::demo::run(&args).await.context("demo failed")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::IamPolicy(args) => {
            let settings = Settings::load(&Overrides {
                config_file: args.settings.config,
                mode: args.mode,
                ..Overrides::default()
            })?;
            if args.member {
                // clap refuses --member without --hub-principal; an empty one is refused below.
                let hub = args.hub_principal.as_deref().unwrap_or_default();
                let role = nodemedic::iam::member_role(&settings, hub)?;
                println!("{}", serde_json::to_string_pretty(&role)?);
                return Ok(ExitCode::SUCCESS);
            }
            let input = nodemedic::iam::PolicyInput::from_settings(&settings);
            if args.format == "cloudformation" {
                print!("{}", nodemedic::iam::policy_cloudformation(&input));
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&nodemedic::iam::policy_json(&input))?
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe(args) => {
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
            anyhow::ensure!(
                !address.is_empty(),
                "no address to probe: pass --address or set http.address"
            );
            match nodemedic::http::probe(&address, &args.path).await {
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
        Command::Store {
            command: StoreCommand::Init { settings },
        } => {
            let settings = Settings::load(&Overrides {
                config_file: settings.config,
                ..Overrides::default()
            })?;
            anyhow::ensure!(
                settings.store.backend == "dynamodb",
                "store.backend is {:?}: `store init` creates DynamoDB tables (SQLite creates its file itself)",
                settings.store.backend
            );
            let sdk = nodemedic::aws::load_config(settings.region.as_deref()).await;
            nodemedic::audit::dynamo::create_tables(
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
        Command::Config {
            command: ConfigCommand::Check { settings, mode },
        } => {
            let settings = Settings::load(&Overrides {
                config_file: settings.config,
                mode,
                audit_db: settings.audit_db,
                ..Overrides::default()
            })?;
            print!("{}", nodemedic::report::settings_text(&settings));
            Ok(ExitCode::SUCCESS)
        }
        Command::Catalog => {
            print!("{}", nodemedic::report::catalog_markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Diagnose(args) => diagnose(args).await,
        Command::Plans {
            command:
                PlansCommand::List {
                    settings,
                    all,
                    json,
                },
        } => {
            let store = open_store(settings).await?;
            let status = (!all).then_some(PlanStatus::AwaitingApproval);
            let plans = store.read(move |c| control::plans(c, status)).await?;
            if json {
                for plan in &plans {
                    println!("{}", serde_json::to_string(plan)?);
                }
            } else {
                print!("{}", nodemedic::report::plans_text(&plans));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Approve(args) => decide(args, true).await,
        Command::Reject(args) => decide(args, false).await,
        Command::KillSwitch(args) => {
            let store = open_store(args.settings).await?;
            if args.state == "status" {
                match store.read_blocking(control::kill_switch)? {
                    Some(on) => println!(
                        "kill switch ON since {} by {}: {}",
                        on.at,
                        on.set_by.unwrap_or_default(),
                        on.reason.unwrap_or_default()
                    ),
                    None => println!("kill switch off"),
                }
            } else {
                let by = args.by.unwrap_or_else(operator);
                operate::set_kill_switch(&store, args.state == "on", &by, args.reason.as_deref())?;
                println!("kill switch {}", args.state);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Breakers { command } => match command {
            BreakersCommand::List { settings, json } => {
                let store = open_store(settings).await?;
                let breakers = store.read_blocking(control::breakers)?;
                for breaker in &breakers {
                    if json {
                        println!("{}", serde_json::to_string(breaker)?);
                    } else {
                        println!(
                            "{:<50} {:<7} since {}  {}",
                            breaker.scope, breaker.state, breaker.opened_at, breaker.reason
                        );
                    }
                }
                if breakers.is_empty() && !json {
                    println!("no circuit breakers have opened");
                }
                Ok(ExitCode::SUCCESS)
            }
            BreakersCommand::Reset {
                scope,
                by,
                settings,
            } => {
                let store = open_store(settings).await?;
                operate::reset_breaker(&store, &scope, &by.unwrap_or_else(operator))?;
                println!("breaker {scope} reset");
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}

/// Who is at the keyboard, for the audit trail.
fn operator() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".into())
}

async fn decide(args: DecisionArgs, approve: bool) -> anyhow::Result<ExitCode> {
    let plan_ttl = Duration::from_secs(load_settings(&args.settings)?.guard.plan_ttl_secs);
    let store = open_store(args.settings).await?;
    let by = args.by.unwrap_or_else(operator);
    let row = operate::decide_plan(
        &store,
        &args.plan,
        approve,
        &by,
        args.reason.as_deref(),
        plan_ttl,
    )?;
    println!(
        "plan {} {} by {} (incident {}){}",
        row.plan_id,
        row.status,
        by,
        row.incident_id,
        if approve {
            "; the daemon re-checks the world and applies it if nothing changed"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Exit code of `diagnose` when a nodegroup has a blocking cause.
const EXIT_BLOCKED: u8 = 3;

async fn diagnose(args: DiagnoseArgs) -> anyhow::Result<ExitCode> {
    let sdk = nodemedic::aws::load_config(args.region.as_deref()).await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .context("no AWS region: pass --region or set AWS_REGION")?;
    let account = nodemedic::aws::caller_account(&aws_sdk_sts::Client::new(&sdk)).await?;
    let clients = nodemedic::aws::AwsClients::new(&sdk);
    let request = nodemedic::inspect::Request {
        account,
        region,
        cluster: args.cluster,
        nodegroup: args.nodegroup,
        instance: args.instance,
    };
    let reports = nodemedic::inspect::inspect(&clients, &request).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", nodemedic::report::diagnose_text(&reports));
    }
    Ok(if reports.iter().all(|r| r.healthy) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BLOCKED)
    })
}

fn load_settings(settings: &SettingsArgs) -> anyhow::Result<Settings> {
    Ok(Settings::load(&Overrides {
        config_file: settings.config.clone(),
        audit_db: settings.audit_db.clone(),
        ..Overrides::default()
    })?)
}

async fn open_store(settings: SettingsArgs) -> anyhow::Result<AuditStore> {
    let settings = load_settings(&settings)?;
    if settings.store.backend == "sqlite" {
        let path = &settings.audit.path;
        anyhow::ensure!(
            path.exists(),
            "no audit database at {} (set --audit-db or audit.path)",
            path.display()
        );
    }
    Ok(nodemedic::daemon::open_store(&settings, None).await?)
}

async fn audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::List {
            settings,
            json,
            limit,
        } => {
            let store = open_store(settings).await?;
            let incidents = store.read(move |c| query::list(c, limit)).await?;
            if json {
                for incident in &incidents {
                    println!("{}", nodemedic::report::incident_json(incident));
                }
            } else {
                print!("{}", nodemedic::report::list_text(&incidents));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Show { id, settings, json } => {
            let store = open_store(settings).await?;
            let wanted = id.clone();
            let incident = store
                .read(move |c| query::incident(c, &wanted))
                .await?
                .with_context(|| format!("no incident {id}"))?;
            let records = store.read(move |c| query::records(c, &id)).await?;
            if json {
                println!("{}", nodemedic::report::show_json(&incident, &records));
            } else {
                print!("{}", nodemedic::report::show_text(&incident, &records));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export {
            settings,
            after,
            out,
        } => {
            let store = open_store(settings).await?;
            let records = store.read(move |r| r.all_records(after)).await?;
            let mut lines = String::new();
            for record in &records {
                lines.push_str(&serde_json::to_string(record)?);
                lines.push('\n');
            }
            match out {
                Some(path) => std::fs::write(&path, lines)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{lines}"),
            }
            eprintln!("{} records exported", records.len());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { settings } => {
            let store = open_store(settings).await?;
            match store.read(query::verify_chain).await? {
                Ok(count) => {
                    println!("audit chain intact: {count} records");
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    println!(
                        "audit chain {} BROKEN at record {}: {}",
                        broken.chain, broken.seq, broken.why
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// SIGTERM (ECS, Kubernetes) or Ctrl-C: stop receiving, finish what is in flight, exit 0.
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    shutdown.cancel();
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
    shutdown.cancel();
}
