//! The command line: every flag has a `PWRESET_*` environment variable, and each
//! subcommand takes only the flags it reads.

mod section;
mod value;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use self::section::{
    ClientArgs, DatabaseArgs, EventArgs, HashingArgs, HistoryArgs, ImportLimitArgs, KeyArgs, LimitArgs, PasswordArgs,
    ServerArgs, SharedArgs, TokenArgs,
};
pub use self::value::{DatabaseUrl, Floor, GeneratorKind, LogFormat, RateArg};

#[derive(Debug, Parser)]
#[command(name = "pwreset", version, about = "Password-reset identity sub-service (gRPC)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the gRPC server (applies pending migrations first unless --no-migrate).
    // Boxed: the server's flags outweigh the other commands' many times over.
    Serve(Box<ServeArgs>),
    /// Apply pending migrations and exit.
    Migrate(MigrateArgs),
    /// Delete expired tokens, events past retention and password history beyond
    /// --password-history, print how many, exit.
    Purge(PurgeArgs),
    /// Import accounts with existing password hashes from JSON lines or CSV (a file
    /// ending in .csv, with a header): email, password_hash, and optionally active,
    /// created_at. Existing e-mails are skipped; exits non-zero if any line was refused.
    Import(ImportArgs),
}

impl Command {
    /// The flags every subcommand takes.
    pub fn shared(&self) -> &SharedArgs {
        match self {
            Command::Serve(args) => &args.database.shared,
            Command::Migrate(args) => &args.shared,
            Command::Purge(args) => &args.database.shared,
            Command::Import(args) => &args.database.shared,
        }
    }
}

/// `pwreset serve`: every section of the settings.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    #[command(flatten)]
    pub passwords: PasswordArgs,
    #[command(flatten)]
    pub hashing: HashingArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub clients: ClientArgs,
    #[command(flatten)]
    pub events: EventArgs,
}

/// `pwreset migrate`: the database only.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub shared: SharedArgs,
}

/// `pwreset purge`: the database, the server key, and how much password history to keep.
#[derive(Debug, Clone, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub history: HistoryArgs,
}

/// `pwreset import FILE`: the database and which imported hashes are accepted.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The file to import.
    pub file: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub imports: ImportLimitArgs,
}
