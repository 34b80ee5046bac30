//! The `nodemedic` binary: parses the command line and runs one subcommand of the library.

use std::process::ExitCode;

use clap::Parser;
use nodemedic::cli::{CliError, EXIT_BAD_SETTINGS};

fn main() -> ExitCode {
    let cli = nodemedic::cli::Cli::parse();
    // The daemon's output goes to a log pipeline; the other commands are read by people.
    let daemon = matches!(cli.command, nodemedic::cli::Command::Run(_));
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
    match runtime.block_on(nodemedic::cli::dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            let bad_settings = matches!(error, CliError::Settings(_));
            // anyhow prints the error with every source, as `outer: inner: …`.
            let text = format!("{:#}", anyhow::Error::from(error));
            if daemon {
                let format = std::env::var("NODEMEDIC_LOG__FORMAT").ok();
                eprintln!(
                    "{}",
                    nodemedic::telemetry::fatal_line(&text, format.as_deref())
                );
            } else {
                eprintln!("nodemedic: {text}");
            }
            if bad_settings {
                ExitCode::from(EXIT_BAD_SETTINGS)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
