//! The operator's controls: plans, approvals, the kill switch and the circuit breakers.

use std::process::ExitCode;
use std::time::Duration;

use super::*;
use crate::audit::control::{self, PlanStatus};
use crate::operate;

pub(super) async fn plans(
    settings: SettingsArgs,
    all: bool,
    json: bool,
) -> Result<ExitCode, CliError> {
    let store = open_store(settings).await?;
    let status = (!all).then_some(PlanStatus::AwaitingApproval);
    let plans = store.read(|c| control::plans(c, status)).await?;
    if json {
        for plan in &plans {
            println!("{}", serde_json::to_string(plan)?);
        }
    } else {
        print!("{}", crate::report::plans_text(&plans));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn decide(args: DecisionArgs, approve: bool) -> Result<ExitCode, CliError> {
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
        row.status.as_str(),
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

pub(super) async fn kill_switch(args: KillSwitchArgs) -> Result<ExitCode, CliError> {
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

pub(super) async fn breakers(command: BreakersCommand) -> Result<ExitCode, CliError> {
    match command {
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
    }
}
