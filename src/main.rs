//! The `nodemedic` binary: parses the command line and runs one subcommand of the library.

use std::process::ExitCode;

use clap::Parser;
use nodemedic::cli::{CliError, EXIT_BAD_SETTINGS};

fn main() -> ExitCode {
    let cli = nodemedic::cli::Cli::parse();
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
            eprintln!("nodemedic: {:#}", anyhow::Error::from(error));
            if bad_settings {
                ExitCode::from(EXIT_BAD_SETTINGS)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
