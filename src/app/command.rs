//! The commands that work on the database and exit: `pwreset migrate`, `purge` and
//! `import`. None of them starts the server's components.

use std::path::Path;

use pwreset_proto::clock::{Clock, SystemClock};

use crate::config::{ImportSettings, PurgeSettings};
use crate::domain::model::persistence::PurgeCounts;
use crate::domain::service::reset;
use crate::import::Summary;
use crate::store::Store;

/// Connects to the database and applies pending migrations: what `pwreset migrate` does.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let store = Store::connect(database_url, 1).await?;
    store.migrate().await?;
    store.close().await
}

/// `pwreset purge`: the database part of the server's sweep, once. Deletes every
/// account's password history beyond `--password-history` (the current hash counts as
/// one), expired tokens, and events past retention; the same two store calls as
/// `ResetService::purge`, without starting the services.
pub async fn purge(settings: &PurgeSettings) -> anyhow::Result<PurgeCounts> {
    // Loaded (and on SQLite created) as `serve` loads it, before any connection, so
    // that `purge` refuses a configuration with no server key as `serve` does.
    settings.key.load()?;
    let store = open(&settings.database_url, settings.migrate).await?;
    let purged = reset::purge(&store, SystemClock.now(), settings.password_history).await;
    store.close().await?;
    Ok(purged?)
}

/// `pwreset import FILE`: the accounts of `file` into the configured database
/// (migrated first unless `--no-migrate`).
pub async fn import(settings: &ImportSettings, file: &Path) -> anyhow::Result<Summary> {
    let store = open(&settings.database_url, settings.migrate).await?;
    let summary = crate::import::import(file, &store, &settings.limits, SystemClock.now()).await;
    store.close().await?;
    summary
}

/// A small pool on the database, migrated first when `migrate`.
async fn open(database_url: &str, migrate: bool) -> anyhow::Result<Store> {
    let store = Store::connect(database_url, 2).await?;
    if migrate {
        store.migrate().await?;
    }
    Ok(store)
}
