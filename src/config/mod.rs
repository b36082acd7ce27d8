//! Typed settings, validated once at start-up, one section at a time: each file here
//! turns one group of flags into the settings of the component that owns them.
//! Handlers never see `Config`.

mod client;
mod event;
mod hasher;
mod key;
mod limit;
mod password;
mod server;
mod token;

use std::net::SocketAddr;
use std::time::Duration;

use argon2::Params;
pub use pwreset_proto::secret::Secret;

pub use self::event::EventSettings;
pub use self::key::KeySource;
pub use self::server::{ServerSettings, TlsSettings};
pub use self::token::{MAX_GUESS_ODDS, MIN_SHORT_CODES};
pub use crate::cli::DatabaseUrl;
use crate::cli::{ImportArgs, PurgeArgs, ServeArgs};
use crate::domain::model::imported::ImportLimits;
use crate::domain::model::keys::ServerKey;
use crate::domain::model::password::PasswordPolicy;
use crate::domain::model::token::TokenPolicy;
use crate::domain::runtime::hasher::HasherSettings;
use crate::domain::runtime::limits::RateLimits;
use crate::grpc::client::ClientIpSettings;

/// What `pwreset serve` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub database_max_connections: u32,
    pub migrate: bool,
    pub key: KeySource,
    /// Keys being rotated out: still accepted, never used for new tokens or events.
    pub previous_keys: Vec<ServerKey>,
    pub tokens: TokenPolicy,
    pub passwords: PasswordPolicy,
    pub hasher: HasherSettings,
    pub limits: RateLimits,
    pub clients: ClientIpSettings,
    pub events: EventSettings,
    pub server: ServerSettings,
}

/// What `pwreset purge` runs with.
#[derive(Debug, Clone)]
pub struct PurgeSettings {
    pub database_url: DatabaseUrl,
    pub migrate: bool,
    pub key: KeySource,
    pub password_history: u32,
}

/// What `pwreset import` runs with.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    pub database_url: DatabaseUrl,
    pub migrate: bool,
    pub limits: ImportLimits,
}

impl TryFrom<&ServeArgs> for Config {
    type Error = anyhow::Error;

    fn try_from(args: &ServeArgs) -> anyhow::Result<Self> {
        let database_url = args.database.shared.database_url.clone();
        let (key, previous_keys) = key::keys(&args.keys, &database_url)?;
        let tokens = token::tokens(&args.tokens)?;
        let passwords = password::passwords(&args.passwords)?;
        let hasher = hasher::hasher(&args.hashing)?;
        let events = event::events(&args.events);
        let limits = limit::rate_limits(&args.limits, events.retention)?;
        let clients = client::clients(&args.clients)?;
        let server = server::server(&args.server)?;
        Ok(Config {
            database_url,
            database_max_connections: args.server.database_max_connections.max(1),
            migrate: args.database.migrate(),
            key,
            previous_keys,
            tokens,
            passwords,
            hasher,
            limits,
            clients,
            events,
            server,
        })
    }
}

impl TryFrom<&PurgeArgs> for PurgeSettings {
    type Error = anyhow::Error;

    fn try_from(args: &PurgeArgs) -> anyhow::Result<Self> {
        let database_url = args.database.shared.database_url.clone();
        // Previous keys are not used by a purge, but refused as `serve` would refuse them.
        let (key, _previous) = key::keys(&args.keys, &database_url)?;
        Ok(PurgeSettings {
            database_url,
            migrate: args.database.migrate(),
            key,
            password_history: password::password_history(args.history.password_history)?,
        })
    }
}

impl TryFrom<&ImportArgs> for ImportSettings {
    type Error = anyhow::Error;

    fn try_from(args: &ImportArgs) -> anyhow::Result<Self> {
        Ok(ImportSettings {
            database_url: args.database.shared.database_url.clone(),
            migrate: args.database.migrate(),
            limits: hasher::import_limits(&args.imports)?,
        })
    }
}

impl Config {
    /// Defaults for tests: cheap argon2, no rate limits, an in-process key.
    pub fn for_tests(database_url: &str) -> Self {
        Config {
            database_url: DatabaseUrl::new(database_url),
            database_max_connections: 8,
            migrate: true,
            key: KeySource::Ephemeral,
            previous_keys: Vec::new(),
            tokens: TokenPolicy::default(),
            passwords: PasswordPolicy::default(),
            hasher: HasherSettings {
                params: Params::new(64, 1, 1, None).unwrap_or_default(),
                workers: 2,
                queue_depth: 64,
                imports: ImportLimits::default(),
                verify_answer_floor: None,
            },
            limits: RateLimits::default(),
            clients: ClientIpSettings::default(),
            events: EventSettings {
                retention: Duration::from_secs(24 * 3600),
                poll_interval: Duration::from_millis(200),
                broadcast_capacity: event::BROADCAST_CAPACITY,
                emit_unknown_account_events: false,
            },
            server: ServerSettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                caller_keys: Vec::new(),
                allow_unauthenticated: false,
                max_message_bytes: 16 * 1024,
                shutdown_grace: Duration::from_secs(5),
                sweep_interval: Duration::from_secs(60),
                metrics_listen: None,
                drain_delay: Duration::ZERO,
                health_check_interval: Duration::from_millis(100),
                keepalive_interval: Duration::from_secs(30),
                tls: None,
            },
        }
    }
}

#[cfg(test)]
mod tests;
