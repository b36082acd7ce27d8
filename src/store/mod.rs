//! Persistence: SeaORM entities and queries behind the domain's traits
//! (`domain::model::persistence`). Maps rows to and from domain types, owns every transaction,
//! and classifies database errors once, by kind. Imports only `domain`.
//!
//! A method that changes state and has an event to publish takes the event and writes
//! both in one transaction (the outbox), so a crash leaves both or neither.
//!
//! Every write transaction takes its locks in one order, enforced by the types that
//! hold them (see [`txn`]). Transient failures that remain (serialization failures, a
//! lost connection) are classified `Unavailable`, and the token writer retries them.

mod accounts;
mod append;
mod attempts;
mod batch;
pub mod entity;
mod history;
mod listen;
mod outbox;
mod revoke;
mod row;
mod tokens;
mod txn;

pub use listen::{EVENTS_CHANNEL, Notice, OUTBOX_LOCK_KEY, REVOKED_CHANNEL, follow_commits};

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseBackend, DatabaseConnection, DbErr, RuntimeErr};
use tracing::instrument;

use crate::domain::model::{Error, Result};

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// SQLSTATEs and SQLite result codes that mean "try the transaction again": a
/// serialization failure or deadlock (PostgreSQL), a busy or locked file (SQLite,
/// including the extended codes of both).
const TRANSIENT_CODES: [&str; 6] = ["40001", "40P01", "5", "6", "261", "517"];

/// Sorts a database error into what a caller can act on: a connection problem or a
/// transient conflict is `Unavailable` (worth retrying), anything else `Internal`.
fn classify(err: DbErr) -> Error {
    let unavailable = match &err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sea_orm::sqlx::Error::Io(_)
            | sea_orm::sqlx::Error::PoolTimedOut
            | sea_orm::sqlx::Error::PoolClosed
            | sea_orm::sqlx::Error::WorkerCrashed
            | sea_orm::sqlx::Error::Protocol(_) => true,
            sea_orm::sqlx::Error::Database(db) => {
                db.code().is_some_and(|code| TRANSIENT_CODES.contains(&code.as_ref()))
                    // 57P01..57P03: the server is shutting down or starting (a restart).
                    || db.code().is_some_and(|code| code.starts_with("57P"))
            }
            _ => false,
        },
        _ => false,
    };
    if unavailable { Error::Unavailable(err.into()) } else { Error::Internal(err.into()) }
}

trait Classify<T> {
    fn db(self) -> Result<T>;
}

impl<T> Classify<T> for std::result::Result<T, DbErr> {
    fn db(self) -> Result<T> {
        self.map_err(classify)
    }
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Where writes run: on SQLite a pool of one connection of its own (SQLite has one
    /// writer anyway), whose page cache no other writer invalidates, so a batch does not
    /// re-read its pages from the file; on PostgreSQL the pool itself.
    write_db: DatabaseConnection,
    /// Queues this process's SQLite writes (SQLite has one writer): without it they
    /// collide on the file lock, and SQLite's busy handler makes the losers sleep in
    /// steps of up to 100 ms rather than start when the lock is free.
    sqlite_write_queue: Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Connects without migrating. SQLite files are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        if url.contains(":memory:") {
            // An in-memory database vanishes when the pool recycles its connection.
            options.idle_timeout(None).max_lifetime(None);
        } else {
            // Write-ahead log with a sync at every commit: a commit is one append and one
            // fsync instead of a journal file created, synced and deleted, readers never
            // wait for a writer, and a committed transaction survives a crash or power
            // loss alike (what "an OK means durable" rests on).
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            options
                .map_sqlx_sqlite_opts(|o| o.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Full));
        }
        // Plan every statement for its own values on PostgreSQL. A prepared statement's
        // generic plan is made once, after five runs, and kept until the table is next
        // analyzed: made while a new deployment's tables are nearly empty, it scans them
        // whole (the cheapest plan for one page) and keeps doing so as they grow, until
        // autovacuum's next ANALYZE, up to minutes later: the writer's revocation then
        // costs 4-5 ms per batch instead of 0.3 ms (BENCHMARKS.md). Planning these short
        // statements afresh costs less than one such scan.
        options.map_sqlx_postgres_opts(|o| o.options([("plan_cache_mode", "force_custom_plan")]));
        let db = Database::connect(options.clone()).await.map_err(|e| connect_error(&e, url))?;
        let write_db = if db.get_database_backend() == DatabaseBackend::Sqlite && !url.contains(":memory:") {
            options.max_connections(1).min_connections(1);
            Database::connect(options).await.map_err(|e| connect_error(&e, url))?
        } else {
            db.clone()
        };
        Ok(Self { db, write_db, sqlite_write_queue: Arc::default() })
    }

    /// Applies pending migrations; the same function `pwreset migrate` runs.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        migration::set_username_key(crate::domain::model::login::stored_username_key);
        Migrator::up(&self.db, None).await.context("applying migrations")
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    pub fn is_postgres(&self) -> bool {
        self.backend() == DatabaseBackend::Postgres
    }

    /// (connections open, connections in use) in the pool.
    pub fn pool_use(&self) -> (u32, u32) {
        let (size, idle) = match self.backend() {
            DatabaseBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DatabaseBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        };
        (size, size.saturating_sub(u32::try_from(idle).unwrap_or(u32::MAX)))
    }

    pub async fn close(self) -> anyhow::Result<()> {
        if self.is_postgres() {
            return self.db.close().await.context("closing the database");
        }
        self.write_db.close().await.context("closing the database (writes)")?;
        self.db.close().await.context("closing the database")
    }

    #[instrument(skip_all, err, level = "debug")]
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await.db()
    }
}

/// A failed connection, said without the URL's password or query: the driver's message
/// may quote the whole connection string, and start-up errors end up in logs.
fn connect_error(e: &DbErr, url: &str) -> anyhow::Error {
    pwreset_proto::redact::url_error("connecting to the database", url, e)
}
