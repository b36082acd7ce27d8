//! Parses the command line, starts telemetry and runs serve, migrate, purge or import.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pwreset::cli::{Cli, Command};
use pwreset::domain::runtime::clock::SystemClock;
use pwreset::{App, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = pwreset::telemetry::init(cli.settings.log_format);
    let code = match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "pwreset failed");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::try_from(&cli.settings)?;
    match cli.command {
        Command::Serve => App::build(config, Arc::new(SystemClock)).await?.serve().await?,
        Command::Migrate => {
            pwreset::app::migrate(&config.database_url).await?;
            println!("migrations applied");
        }
        Command::Purge => {
            let counts = App::build(config, Arc::new(SystemClock)).await?.purge().await?;
            println!("purged {} expired tokens and {} events past retention", counts.tokens, counts.events);
        }
        Command::Import { file } => {
            let summary = pwreset::app::import(&config, &file).await?;
            print!("{}", summary.report());
            if !summary.refused.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
