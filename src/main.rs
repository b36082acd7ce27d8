//! Parses the command line, starts telemetry and runs serve, migrate, purge or import.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pwreset::cli::{Cli, Command};
use pwreset::config::{ImportSettings, PurgeSettings};
use pwreset::{App, Config};
use pwreset_proto::clock::SystemClock;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = pwreset::telemetry::init(cli.command.shared().log_format);
    let code = match run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "pwreset failed");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            let config = Config::try_from(args.as_ref())?;
            App::build(config, Arc::new(SystemClock)).await?.serve().await?;
        }
        Command::Migrate(args) => {
            pwreset::app::migrate(&args.shared.database_url).await?;
            println!("migrations applied");
        }
        Command::Purge(args) => {
            let counts = pwreset::app::purge(&PurgeSettings::try_from(&args)?).await?;
            println!("purged {} expired tokens and {} events past retention", counts.tokens, counts.events);
        }
        Command::Import(args) => {
            let summary = pwreset::app::import(&ImportSettings::try_from(&args)?, &args.file).await?;
            print!("{}", summary.report());
            if !summary.refused.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
