//! Persistence: SeaORM entities and queries. Returns domain types, owns every
//! transaction, and classifies database errors once, by kind.
//!
//! A method that changes state and has an event to publish takes the event and writes
//! both in one transaction (the outbox), so a crash leaves both or neither.

pub mod entity;

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, RuntimeErr, SqlErr, TransactionTrait, Value,
};
use tracing::instrument;
use uuid::Uuid;

use crate::domain::email::Email;
use crate::domain::token::TokenDigest;
use crate::domain::{Account, Error, Result};
use crate::events::seal::SealedToken;
use entity::{accounts, event_retention, events, reset_tokens};

/// Arbitrary, fixed key of the PostgreSQL advisory lock that serialises outbox writers.
const OUTBOX_LOCK_KEY: i64 = 0x7077_7265_7365_7401;
/// PostgreSQL channel on which every outbox commit is announced to all replicas.
pub const EVENTS_CHANNEL: &str = "pwreset_events";

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Sorts a database error into what a caller can act on: a connection problem is
/// `Unavailable`, anything else `Internal`.
fn classify(err: DbErr) -> Error {
    let unavailable = match &err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::WorkerCrashed
        ),
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

#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub account: Account,
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub id: Uuid,
    pub email: Email,
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: Uuid,
    pub account_id: Uuid,
    pub digest: TokenDigest,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub client_ip: String,
    pub user_agent: String,
}

#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    /// Why the token is not live, if it is not.
    pub fn refusal(&self, now: DateTime<Utc>) -> Option<&'static str> {
        if self.used_at.is_some() {
            Some("used")
        } else if self.revoked_at.is_some() {
            Some("revoked")
        } else if self.expires_at <= now {
            Some("expired")
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    TokenCreated = 1,
    PasswordChanged = 2,
    ResetRequestedForUnknownEmail = 3,
}

impl EventKind {
    fn from_db(kind: i16) -> Option<Self> {
        match kind {
            1 => Some(EventKind::TokenCreated),
            2 => Some(EventKind::PasswordChanged),
            3 => Some(EventKind::ResetRequestedForUnknownEmail),
            _ => None,
        }
    }
}

/// An outbox row as written and as read back.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Assigned by the database; ignored on insert.
    pub sequence: i64,
    pub occurred_at: DateTime<Utc>,
    pub kind: EventKind,
    pub account_id: Uuid,
    pub email: String,
    pub token_id: Option<Uuid>,
    pub sealed_token: Option<SealedToken>,
    pub expires_at: Option<DateTime<Utc>>,
    pub client_ip: String,
    pub user_agent: String,
    pub locale: String,
    pub retain_until: DateTime<Utc>,
}

/// One entry for [`Store::write_outbox`]: an event, with the token it announces.
#[derive(Debug, Clone)]
pub struct OutboxWrite {
    pub token: Option<NewToken>,
    pub event: StoredEvent,
    pub cap: Option<TokenCap>,
}

/// At most `max` tokens per account created after `since`.
#[derive(Debug, Clone, Copy)]
pub struct TokenCap {
    pub max: u32,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored; the event's sequence.
    Created(i64),
    /// The account reached its cap: nothing stored.
    Capped,
    /// Another token has the same digest (plausible only for short numeric codes).
    DigestTaken,
}

/// What `Confirm` commits at once.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub token_id: Uuid,
    pub account_id: Uuid,
    pub password_hash: String,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub tokens: u64,
    pub events: u64,
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
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
        }
        let db = Database::connect(options).await.with_context(|| "connecting to the database")?;
        Ok(Self { db })
    }

    /// Applies pending migrations; the same function `pwreset migrate` runs.
    pub async fn migrate(&self) -> anyhow::Result<()> {
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
        self.db.close().await.context("closing the database")
    }

    #[instrument(skip_all, err, level = "debug")]
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await.db()
    }

    #[instrument(skip_all, err(level = "debug"), level = "debug")]
    pub async fn create_account(&self, new: NewAccount) -> Result<Account> {
        let now = millis(new.created_at);
        let model = accounts::ActiveModel {
            id: Set(new.id),
            email: Set(new.email.as_str().to_owned()),
            password_hash: Set(new.password_hash),
            active: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
            password_changed_at: Set(None),
        };
        match accounts::Entity::insert(model).exec_with_returning(&self.db).await {
            Ok(row) => Ok(to_account(&row)),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Err(Error::AccountExists),
            Err(e) => Err(classify(e)),
        }
    }

    #[instrument(skip_all, err, level = "debug")]
    pub async fn account_by_email(&self, email: &Email) -> Result<Option<AccountRecord>> {
        let row =
            accounts::Entity::find().filter(accounts::Column::Email.eq(email.as_str())).one(&self.db).await.db()?;
        Ok(row.map(to_record))
    }

    #[instrument(skip_all, err, level = "debug")]
    pub async fn account_by_id(&self, id: Uuid) -> Result<Option<AccountRecord>> {
        Ok(accounts::Entity::find_by_id(id).one(&self.db).await.db()?.map(to_record))
    }

    /// Sets the active flag; deactivating also revokes every live token of the account
    /// and destroys their sealed copies, in the same transaction.
    #[instrument(skip_all, err, level = "debug")]
    pub async fn set_active(&self, id: Uuid, active: bool, now: DateTime<Utc>) -> Result<Option<Account>> {
        let txn = self.db.begin().await.db()?;
        let updated = accounts::Entity::update_many()
            .col_expr(accounts::Column::Active, Expr::value(active))
            .col_expr(accounts::Column::UpdatedAt, Expr::value(millis(now)))
            .filter(accounts::Column::Id.eq(id))
            .exec(&txn)
            .await
            .db()?;
        if updated.rows_affected == 0 {
            return Ok(None);
        }
        if !active {
            revoke_live_tokens(&txn, id, None, now).await?;
        }
        let row = accounts::Entity::find_by_id(id).one(&txn).await.db()?;
        txn.commit().await.db()?;
        Ok(row.as_ref().map(to_account))
    }

    /// Stores a rehash made under current parameters, unless the hash changed meanwhile.
    #[instrument(skip_all, err, level = "debug")]
    pub async fn upgrade_password_hash(
        &self,
        id: Uuid,
        old_hash: &str,
        new_hash: String,
        now: DateTime<Utc>,
    ) -> Result<()> {
        accounts::Entity::update_many()
            .col_expr(accounts::Column::PasswordHash, Expr::value(new_hash))
            .col_expr(accounts::Column::UpdatedAt, Expr::value(millis(now)))
            .filter(accounts::Column::Id.eq(id))
            .filter(accounts::Column::PasswordHash.eq(old_hash))
            .exec(&self.db)
            .await
            .db()?;
        Ok(())
    }

    /// Writes a batch of outbox entries in one transaction (group commit: one fsync for
    /// the batch), each in a savepoint of its own. An entry with a token first revokes
    /// the account's earlier live tokens, unless the account already had `cap` tokens
    /// created in the cap's window (counted from the outbox, so the cap holds across
    /// replicas) or the digest is taken: then that entry changes nothing.
    #[instrument(skip_all, err, level = "debug", fields(batch = writes.len()))]
    pub async fn write_outbox(&self, writes: Vec<OutboxWrite>) -> Result<Vec<Inserted>> {
        let txn = self.db.begin().await.db()?;
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            // Serialise with other replicas' writers before counting, so two racing
            // requests for one account cannot both pass the cap.
            outbox_lock(&txn).await?;
        }
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let entry = txn.begin().await.db()?;
            let outcome = write_one(&entry, write).await?;
            if matches!(outcome, Inserted::Created(_)) {
                entry.commit().await.db()?;
            } else {
                entry.rollback().await.db()?;
            }
            outcomes.push(outcome);
        }
        txn.commit().await.db()?;
        Ok(outcomes)
    }

    #[instrument(skip_all, err, level = "debug")]
    /// The token with any of `digests` (one per server key still accepted).
    pub async fn token_by_digests(&self, digests: &[TokenDigest]) -> Result<Option<TokenRecord>> {
        let row = reset_tokens::Entity::find()
            .filter(reset_tokens::Column::Digest.is_in(digests.iter().map(|d| d.0.to_vec())))
            .one(&self.db)
            .await
            .db()?;
        Ok(row.map(|t| TokenRecord {
            id: t.id,
            account_id: t.account_id,
            expires_at: from_millis(t.expires_at),
            used_at: t.used_at.map(from_millis),
            revoked_at: t.revoked_at.map(from_millis),
        }))
    }

    /// Deletes a token that is no longer live (an expired one was presented) and
    /// destroys its sealed copy.
    #[instrument(skip_all, err, level = "debug")]
    pub async fn discard_token(&self, id: Uuid) -> Result<()> {
        let txn = self.db.begin().await.db()?;
        reset_tokens::Entity::delete_by_id(id).exec(&txn).await.db()?;
        events::Entity::update_many()
            .col_expr(events::Column::SealedToken, Expr::value(Value::Bytes(None)))
            .filter(events::Column::TokenId.eq(id))
            .exec(&txn)
            .await
            .db()?;
        txn.commit().await.db()
    }

    /// Consumes the token, sets the password, revokes the account's other live tokens,
    /// destroys their sealed copies and records `PasswordChanged`, all or nothing.
    /// Of two racing calls with one token exactly one succeeds; the other gets
    /// `TokenNotFound`.
    #[instrument(skip_all, err(level = "debug"), level = "debug")]
    pub async fn confirm(&self, c: Confirmation, event: StoredEvent) -> Result<i64> {
        let now = millis(c.now);
        let txn = self.db.begin().await.db()?;
        let consumed = reset_tokens::Entity::update_many()
            .col_expr(reset_tokens::Column::UsedAt, Expr::value(now))
            .filter(reset_tokens::Column::Id.eq(c.token_id))
            .filter(reset_tokens::Column::UsedAt.is_null())
            .filter(reset_tokens::Column::RevokedAt.is_null())
            .filter(reset_tokens::Column::ExpiresAt.gt(now))
            .exec(&txn)
            .await
            .db()?;
        if consumed.rows_affected != 1 {
            txn.rollback().await.db()?;
            return Err(Error::TokenNotFound);
        }
        let changed = accounts::Entity::update_many()
            .col_expr(accounts::Column::PasswordHash, Expr::value(c.password_hash))
            .col_expr(accounts::Column::PasswordChangedAt, Expr::value(now))
            .col_expr(accounts::Column::UpdatedAt, Expr::value(now))
            .filter(accounts::Column::Id.eq(c.account_id))
            .filter(accounts::Column::Active.eq(true))
            .exec(&txn)
            .await
            .db()?;
        if changed.rows_affected != 1 {
            txn.rollback().await.db()?;
            return Err(Error::TokenNotFound);
        }
        revoke_live_tokens(&txn, c.account_id, Some(c.token_id), c.now).await?;
        let sequence = insert_event(&txn, event).await?;
        txn.commit().await.db()?;
        Ok(sequence)
    }

    /// Up to `limit` retained events with a sequence above `after`, oldest first.
    #[instrument(skip_all, err, level = "debug")]
    pub async fn events_after(&self, after: i64, limit: u64) -> Result<Vec<StoredEvent>> {
        let rows = events::Entity::find()
            .filter(events::Column::Sequence.gt(after))
            .order_by_asc(events::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await
            .db()?;
        Ok(rows.into_iter().filter_map(to_event).collect())
    }

    /// The highest committed sequence, or 0 when there is none.
    #[instrument(skip_all, err, level = "debug")]
    pub async fn last_sequence(&self) -> Result<i64> {
        let last = events::Entity::find()
            .select_only()
            .column_as(events::Column::Sequence.max(), "max")
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await
            .db()?;
        Ok(last.flatten().unwrap_or(0))
    }

    /// The highest sequence ever purged: a cursor below it may have missed events.
    #[instrument(skip_all, err, level = "debug")]
    pub async fn purged_through(&self) -> Result<i64> {
        let row = event_retention::Entity::find_by_id(1).one(&self.db).await.db()?;
        Ok(row.map_or(0, |r| r.purged_through))
    }

    /// Deletes expired tokens and events past retention, and destroys sealed copies of
    /// tokens that have expired.
    #[instrument(skip_all, err, level = "debug")]
    pub async fn purge(&self, now: DateTime<Utc>) -> Result<PurgeCounts> {
        let now = millis(now);
        let txn = self.db.begin().await.db()?;
        let sealed = events::Entity::update_many()
            .col_expr(events::Column::SealedToken, Expr::value(Value::Bytes(None)))
            .filter(events::Column::SealedToken.is_not_null())
            .filter(events::Column::ExpiresAt.lte(now))
            .exec(&txn)
            .await
            .db()?;
        let tokens = reset_tokens::Entity::delete_many()
            .filter(reset_tokens::Column::ExpiresAt.lte(now))
            .exec(&txn)
            .await
            .db()?;
        let newest_purged = events::Entity::find()
            .select_only()
            .column_as(events::Column::Sequence.max(), "max")
            .filter(events::Column::RetainUntil.lte(now))
            .into_tuple::<Option<i64>>()
            .one(&txn)
            .await
            .db()?
            .flatten();
        let mut purged_events = 0;
        if let Some(newest) = newest_purged {
            // Everything at or below the newest purged event goes, so the retained
            // events are always one contiguous run and the watermark is exact.
            purged_events = events::Entity::delete_many()
                .filter(events::Column::Sequence.lte(newest))
                .exec(&txn)
                .await
                .db()?
                .rows_affected;
            event_retention::Entity::update_many()
                .col_expr(event_retention::Column::PurgedThrough, Expr::value(newest))
                .filter(event_retention::Column::Id.eq(1))
                .filter(event_retention::Column::PurgedThrough.lt(newest))
                .exec(&txn)
                .await
                .db()?;
        }
        txn.commit().await.db()?;
        tracing::debug!(sealed_destroyed = sealed.rows_affected, "purge");
        Ok(PurgeCounts { tokens: tokens.rows_affected, events: purged_events })
    }
}

/// Revokes the account's live tokens (all but `keep`) and destroys the sealed copies
/// of every token of the account that is no longer live.
async fn revoke_live_tokens<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    keep: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<()> {
    let now = millis(now);
    let mut revoke = reset_tokens::Entity::update_many()
        .col_expr(reset_tokens::Column::RevokedAt, Expr::value(now))
        .filter(reset_tokens::Column::AccountId.eq(account_id))
        .filter(reset_tokens::Column::UsedAt.is_null())
        .filter(reset_tokens::Column::RevokedAt.is_null());
    if let Some(keep) = keep {
        revoke = revoke.filter(reset_tokens::Column::Id.ne(keep));
    }
    revoke.exec(db).await.db()?;
    events::Entity::update_many()
        .col_expr(events::Column::SealedToken, Expr::value(Value::Bytes(None)))
        .filter(events::Column::AccountId.eq(account_id))
        .filter(events::Column::SealedToken.is_not_null())
        .exec(db)
        .await
        .db()?;
    Ok(())
}

/// One outbox entry, inside its savepoint; see [`Store::write_outbox`].
async fn write_one<C: ConnectionTrait>(db: &C, write: OutboxWrite) -> Result<Inserted> {
    let OutboxWrite { token, event, cap } = write;
    if let Some(token) = token {
        // The first statement writes, so SQLite takes its write lock up front and two
        // writers never deadlock upgrading a read lock.
        revoke_live_tokens(db, token.account_id, None, token.created_at).await?;
        if let Some(cap) = cap {
            let recent = events::Entity::find()
                .filter(events::Column::AccountId.eq(token.account_id))
                .filter(events::Column::Kind.eq(EventKind::TokenCreated as i16))
                .filter(events::Column::OccurredAt.gt(millis(cap.since)))
                .count(db)
                .await
                .db()?;
            if recent >= u64::from(cap.max) {
                // Rolled back whole, revocation included: requests past the cap must not
                // let anyone keep invalidating the account's latest token.
                return Ok(Inserted::Capped);
            }
        }
        let model = reset_tokens::ActiveModel {
            id: Set(token.id),
            account_id: Set(token.account_id),
            digest: Set(token.digest.0.to_vec()),
            created_at: Set(millis(token.created_at)),
            expires_at: Set(millis(token.expires_at)),
            used_at: Set(None),
            revoked_at: Set(None),
            client_ip: Set(token.client_ip),
            user_agent: Set(token.user_agent),
        };
        match reset_tokens::Entity::insert(model).exec_without_returning(db).await {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Ok(Inserted::DigestTaken);
            }
            Err(e) => return Err(classify(e)),
        }
    }
    Ok(Inserted::Created(insert_event(db, event).await?))
}

/// Takes the transaction-scoped outbox lock (PostgreSQL only; re-entrant).
async fn outbox_lock<C: ConnectionTrait>(db: &C) -> Result<()> {
    db.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({OUTBOX_LOCK_KEY})")).await.db()?;
    Ok(())
}

async fn insert_event<C: ConnectionTrait>(db: &C, event: StoredEvent) -> Result<i64> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        // Sequence values are drawn in call order but transactions commit in any order;
        // holding this lock from before the draw until commit makes sequence order
        // commit order, so a reader that has seen N never later finds a new event < N.
        outbox_lock(db).await?;
    }
    let (sealed_token, key_id) = match event.sealed_token {
        Some(s) => (Some(s.bytes), Some(s.key_id)),
        None => (None, None),
    };
    let model = events::ActiveModel {
        sequence: NotSet,
        occurred_at: Set(millis(event.occurred_at)),
        kind: Set(event.kind as i16),
        account_id: Set(event.account_id),
        email: Set(event.email),
        token_id: Set(event.token_id),
        sealed_token: Set(sealed_token),
        key_id: Set(key_id),
        expires_at: Set(event.expires_at.map(millis)),
        client_ip: Set(event.client_ip),
        user_agent: Set(event.user_agent),
        locale: Set(event.locale),
        retain_until: Set(millis(event.retain_until)),
    };
    let sequence = events::Entity::insert(model).exec(db).await.db()?.last_insert_id;
    if db.get_database_backend() == DatabaseBackend::Postgres {
        // Delivered to every listening replica when (and only if) the transaction commits.
        db.execute_unprepared(&format!("SELECT pg_notify('{EVENTS_CHANNEL}', '{sequence}')")).await.db()?;
    }
    Ok(sequence)
}

/// Calls `on_commit` with the sequence of every outbox commit announced on PostgreSQL
/// by any replica, until `stop`. Reconnects after failures; subscribers also poll, so a
/// notification lost meanwhile only delays delivery. `listening` fires once the first
/// LISTEN is in place.
pub async fn follow_commits(
    url: String,
    stop: tokio_util::sync::CancellationToken,
    listening: tokio::sync::oneshot::Sender<()>,
    on_commit: impl Fn(i64),
) {
    use sea_orm::sqlx::postgres::PgListener;
    let mut listening = Some(listening);
    loop {
        let follow = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(EVENTS_CHANNEL).await?;
            if let Some(ready) = listening.take() {
                let _ = ready.send(());
            }
            loop {
                let notification = listener.recv().await?;
                if let Ok(sequence) = notification.payload().parse() {
                    on_commit(sequence);
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sea_orm::sqlx::Error>(())
        };
        tokio::select! {
            result = follow => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "event notifications interrupted; reconnecting");
                }
            }
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}

fn to_account(row: &accounts::Model) -> Account {
    Account {
        id: row.id,
        email: Email::from_trusted(row.email.clone()),
        active: row.active,
        has_usable_password: row.password_hash.is_some(),
        created_at: from_millis(row.created_at),
    }
}

fn to_record(row: accounts::Model) -> AccountRecord {
    AccountRecord { account: to_account(&row), password_hash: row.password_hash }
}

fn to_event(row: events::Model) -> Option<StoredEvent> {
    let kind = EventKind::from_db(row.kind)?;
    let sealed_token = match (row.sealed_token, row.key_id) {
        (Some(bytes), Some(key_id)) => Some(SealedToken { key_id, bytes }),
        _ => None,
    };
    Some(StoredEvent {
        sequence: row.sequence,
        occurred_at: from_millis(row.occurred_at),
        kind,
        account_id: row.account_id,
        email: row.email,
        token_id: row.token_id,
        sealed_token,
        expires_at: row.expires_at.map(from_millis),
        client_ip: row.client_ip,
        user_agent: row.user_agent,
        locale: row.locale,
        retain_until: from_millis(row.retain_until),
    })
}
