//! The outbox: writing events (with the tokens they announce, group-committed), reading
//! them back in sequence order, retention, and PostgreSQL commit notifications.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr, TransactionTrait, Value,
};
use tracing::instrument;
use uuid::Uuid;

use super::entity::{accounts, event_retention, events, reset_tokens};
use super::tokens::{NewToken, revoke_live_tokens};
use super::{Classify, Store, classify, from_millis, millis};
use crate::domain::Result;
use crate::events::seal::SealedToken;

/// Arbitrary, fixed key of the PostgreSQL advisory lock that serialises outbox writers.
pub const OUTBOX_LOCK_KEY: i64 = 0x7077_7265_7365_7401;
/// PostgreSQL channel on which every outbox commit is announced to all replicas.
pub const EVENTS_CHANNEL: &str = "pwreset_events";
/// PostgreSQL channel on which a revocation that has no event of its own (deactivating
/// an account) is announced, with the account's id, so replicas drop cached tokens.
pub const REVOKED_CHANNEL: &str = "pwreset_tokens_revoked";

/// A PostgreSQL notification, as [`follow_commits`] passes it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// An outbox commit, with its newest sequence.
    Committed(i64),
    /// The account's tokens were revoked without an event.
    Revoked(Uuid),
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
    /// Stored.
    Created,
    /// The account (or the unknown address) reached its cap: nothing stored.
    Capped,
    /// The account is no longer active: nothing stored.
    Inactive,
    /// Another token has the same digest (plausible only for short numeric codes).
    DigestTaken,
}

/// What [`Store::write_outbox`] did with each entry, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub outcomes: Vec<Inserted>,
    /// The highest sequence written, if any entry was.
    pub newest: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub tokens: u64,
    pub events: u64,
}

impl Store {
    /// Writes a batch of outbox entries in one transaction (group commit: one fsync for
    /// the batch). An entry with a token revokes the account's earlier live tokens,
    /// unless the account already had `cap` tokens created in the cap's window (counted
    /// from the outbox, so the cap holds across replicas) or the digest is taken: then
    /// that entry changes nothing. The result is the same as writing the entries one
    /// after another, in order.
    ///
    /// The batch is written with a fixed number of set-based statements (one grouped cap
    /// count, one revocation, one multi-row insert per table), whatever its size. Only if
    /// a digest is already taken (plausible with short numeric codes alone) is it
    /// written again entry by entry, each in a savepoint, to find the colliding ones.
    #[instrument(skip_all, err, level = "debug", fields(batch = writes.len()))]
    pub async fn write_outbox(&self, writes: &[OutboxWrite], caps_on: bool) -> Result<Written> {
        let _turn = self.write_turn().await;
        match self.write_outbox_once(writes, caps_on, false).await? {
            Some(written) => Ok(written),
            // A digest was taken: the transaction was rolled back whole; write again,
            // entry by entry, each in a savepoint, to find the colliding ones.
            None => self.write_outbox_once(writes, caps_on, true).await?.ok_or_else(|| {
                crate::domain::Error::Internal(anyhow::anyhow!("the outbox write found a collision twice"))
            }),
        }
    }

    /// One attempt of [`write_outbox`](Self::write_outbox); `None` when the set-based
    /// insert met a taken digest (and everything was rolled back).
    async fn write_outbox_once(&self, writes: &[OutboxWrite], caps_on: bool, each: bool) -> Result<Option<Written>> {
        let txn = self.db.begin().await.db()?;
        // The lock order (see `store`): the outbox lock, then accounts, tokens, events.
        // Serialising with other replicas' writers before counting means two racing
        // requests for one account cannot both pass the cap, and no deactivation can
        // commit between the active check below and this commit.
        outbox_lock(&txn).await?;
        // Every batch writes, even one whose requests all lead to nothing: its callers
        // then wait on a commit as long as anyone's (the answer's timing is the same for
        // every address), and on SQLite the write lock is taken before the reads below,
        // so the transaction never has to upgrade a read snapshot that went stale.
        event_retention::Entity::update_many()
            .col_expr(event_retention::Column::PurgedThrough, Expr::col(event_retention::Column::PurgedThrough))
            .filter(event_retention::Column::Id.eq(1))
            .exec(&txn)
            .await
            .db()?;
        let active = active_accounts(&txn, writes).await?;
        let outcomes = apply_caps(&txn, writes, &active, caps_on).await?;
        let written = if each {
            write_each(&txn, writes, outcomes).await?
        } else {
            match write_set(&txn, writes, &outcomes).await? {
                Some(newest) => Written { outcomes, newest },
                None => {
                    txn.rollback().await.db()?;
                    return Ok(None);
                }
            }
        };
        txn.commit().await.db()?;
        Ok(Some(written))
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
        Ok(max_sequence(&self.db).await?.unwrap_or(0))
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
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await.db()?;
        outbox_lock(&txn).await?;
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

/// The accounts of the batch's tokens that are still active, read inside the writer's
/// transaction after its outbox lock: a deactivation (which takes that lock first too)
/// commits either before, and the token is not written, or after, and revokes it.
async fn active_accounts<C: ConnectionTrait>(db: &C, writes: &[OutboxWrite]) -> Result<HashSet<Uuid>> {
    // Run for an empty set too: the same statements for every batch.
    let wanted: HashSet<Uuid> = writes.iter().filter_map(|w| Some(w.token.as_ref()?.account_id)).collect();
    let rows: Vec<Uuid> = accounts::Entity::find()
        .select_only()
        .column(accounts::Column::Id)
        .filter(accounts::Column::Id.is_in(wanted))
        .filter(accounts::Column::Active.eq(true))
        .into_tuple()
        .all(db)
        .await
        .db()?;
    Ok(rows.into_iter().collect())
}

/// What a cap counts: the account's tokens, or the reports for an unknown address.
#[derive(Clone, PartialEq, Eq, Hash)]
enum CapKey {
    Account(Uuid),
    UnknownEmail(String),
}

fn cap_key(write: &OutboxWrite) -> CapKey {
    match &write.token {
        Some(token) => CapKey::Account(token.account_id),
        None => CapKey::UnknownEmail(write.event.email.clone()),
    }
}

/// Decides, in order, which entries the caps let through, with one grouped count for
/// the batch's accounts and one for its unknown addresses. `Capped` entries change
/// nothing, not even a revocation: requests past the cap must not let anyone keep
/// invalidating the latest token. A token for an account that is no longer active is
/// `Inactive` and changes nothing either.
async fn apply_caps<C: ConnectionTrait>(
    db: &C,
    writes: &[OutboxWrite],
    active: &HashSet<Uuid>,
    caps_on: bool,
) -> Result<Vec<Inserted>> {
    let capped: Vec<(CapKey, TokenCap)> = writes.iter().filter_map(|w| Some((cap_key(w), w.cap?))).collect();
    let mut remaining: HashMap<CapKey, i64> = HashMap::new();
    // With caps on, both counts run for every batch, empty or not (the same statements
    // whatever the addresses: see `write_set`).
    let earliest = capped.iter().map(|(_, cap)| cap.since).min();
    if caps_on || earliest.is_some() {
        // The earliest window start in the batch: it can only count more, never fewer.
        let since = earliest.map_or(i64::MAX, millis);
        let accounts: HashSet<Uuid> = capped
            .iter()
            .filter_map(|(key, _)| match key {
                CapKey::Account(id) => Some(*id),
                CapKey::UnknownEmail(_) => None,
            })
            .collect();
        let emails: HashSet<String> = capped
            .iter()
            .filter_map(|(key, _)| match key {
                CapKey::UnknownEmail(email) => Some(email.clone()),
                CapKey::Account(_) => None,
            })
            .collect();
        {
            let recent: Vec<(Uuid, i64)> = events::Entity::find()
                .select_only()
                .column(events::Column::AccountId)
                .column_as(events::Column::Sequence.count(), "recent")
                .filter(events::Column::AccountId.is_in(accounts))
                .filter(events::Column::Kind.eq(EventKind::TokenCreated as i16))
                .filter(events::Column::OccurredAt.gt(since))
                .group_by(events::Column::AccountId)
                .into_tuple()
                .all(db)
                .await
                .db()?;
            remaining.extend(recent.into_iter().map(|(id, n)| (CapKey::Account(id), n)));
        }
        {
            let recent: Vec<(String, i64)> = events::Entity::find()
                .select_only()
                .column(events::Column::Email)
                .column_as(events::Column::Sequence.count(), "recent")
                .filter(events::Column::Email.is_in(emails))
                .filter(events::Column::Kind.eq(EventKind::ResetRequestedForUnknownEmail as i16))
                .filter(events::Column::OccurredAt.gt(since))
                .group_by(events::Column::Email)
                .into_tuple()
                .all(db)
                .await
                .db()?;
            remaining.extend(recent.into_iter().map(|(email, n)| (CapKey::UnknownEmail(email), n)));
        }
    }
    Ok(writes
        .iter()
        .map(|w| {
            if let Some(token) = &w.token
                && !active.contains(&token.account_id)
            {
                return Inserted::Inactive;
            }
            let Some(cap) = w.cap else { return Inserted::Created };
            let used = remaining.entry(cap_key(w)).or_insert(0);
            if *used >= i64::from(cap.max) {
                Inserted::Capped
            } else {
                *used += 1;
                Inserted::Created
            }
        })
        .collect())
}

/// Writes the entries `outcomes` lets through with set-based statements. `None` when
/// a digest is already taken: the caller rolls back and writes entry by entry.
async fn write_set<C: ConnectionTrait>(
    db: &C,
    writes: &[OutboxWrite],
    outcomes: &[Inserted],
) -> Result<Option<Option<i64>>> {
    let accepted: Vec<&OutboxWrite> =
        writes.iter().zip(outcomes).filter(|(_, o)| **o == Inserted::Created).map(|(w, _)| w).collect();
    // Each account's newest token in the batch stays live; the batch's earlier ones for
    // that account are stored already revoked, as writing them in turn would leave them.
    let mut newest_token: HashMap<Uuid, &NewToken> = HashMap::new();
    for token in accepted.iter().filter_map(|w| w.token.as_ref()) {
        newest_token.insert(token.account_id, token);
    }
    // The same statements run whatever the batch holds, with no rows where it has
    // nothing to write: a batch of requests for unknown addresses costs what one for
    // known addresses does (enumeration by timing).
    let now = newest_token.values().map(|t| t.created_at).max().unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let accounts: Vec<Uuid> = newest_token.keys().copied().collect();
    revoke_live_tokens(db, &accounts, None, now).await?;
    let superseded_at = |token: &NewToken| {
        let newest = newest_token.get(&token.account_id)?;
        (newest.id != token.id).then_some(newest.created_at)
    };
    let tokens: Vec<_> =
        accepted.iter().filter_map(|w| w.token.as_ref()).map(|t| token_model(t.clone(), superseded_at(t))).collect();
    if tokens.is_empty() {
        insert_nothing(db, "reset_tokens").await?;
    } else {
        match reset_tokens::Entity::insert_many(tokens).exec_without_returning(db).await {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => return Ok(None),
            Err(e) => return Err(classify(e)),
        }
    }
    let events = accepted.iter().map(|w| {
        let mut event = w.event.clone();
        if w.token.as_ref().is_some_and(|t| superseded_at(t).is_some()) {
            event.sealed_token = None;
        }
        event_model(event)
    });
    let events: Vec<_> = events.collect();
    let newest = if events.is_empty() {
        insert_nothing(db, "events").await?;
        None
    } else {
        // Every writer holds the write lock (SQLite) or the outbox lock (PostgreSQL)
        // until it commits, so these are the newest sequences.
        events::Entity::insert_many(events).exec_with_returning_keys(db).await.db()?.into_iter().max()
    };
    // Sent for an empty batch too (a listener ignores a sequence it has seen).
    notify(db, newest.unwrap_or(0)).await?;
    Ok(Some(newest))
}

/// An insert of no rows into `table`: the statement an empty batch runs in place of
/// its multi-row insert.
async fn insert_nothing<C: ConnectionTrait>(db: &C, table: &str) -> Result<()> {
    db.execute_unprepared(&format!("INSERT INTO {table} SELECT * FROM {table} WHERE 1 = 0")).await.db()?;
    Ok(())
}

/// The highest sequence in the outbox, if any.
async fn max_sequence<C: ConnectionTrait>(db: &C) -> Result<Option<i64>> {
    let max = events::Entity::find()
        .select_only()
        .column_as(events::Column::Sequence.max(), "max")
        .into_tuple::<Option<i64>>()
        .one(db)
        .await
        .db()?;
    Ok(max.flatten())
}

/// The slow path of [`Store::write_outbox`]: each entry the cap let through in a
/// savepoint of its own.
async fn write_each(txn: &DatabaseTransaction, writes: &[OutboxWrite], caps: Vec<Inserted>) -> Result<Written> {
    let mut written = Written { outcomes: Vec::with_capacity(writes.len()), newest: None };
    for (write, cap) in writes.iter().zip(caps) {
        if cap != Inserted::Created {
            written.outcomes.push(cap);
            continue;
        }
        let entry = txn.begin().await.db()?;
        let outcome = match write_one(&entry, write).await? {
            Some(sequence) => {
                entry.commit().await.db()?;
                written.newest = written.newest.max(Some(sequence));
                Inserted::Created
            }
            None => {
                entry.rollback().await.db()?;
                Inserted::DigestTaken
            }
        };
        written.outcomes.push(outcome);
    }
    Ok(written)
}

fn token_model(token: NewToken, revoked_at: Option<DateTime<Utc>>) -> reset_tokens::ActiveModel {
    reset_tokens::ActiveModel {
        id: Set(token.id),
        account_id: Set(token.account_id),
        digest: Set(token.digest.0.to_vec()),
        created_at: Set(millis(token.created_at)),
        expires_at: Set(millis(token.expires_at)),
        used_at: Set(None),
        revoked_at: Set(revoked_at.map(millis)),
        client_ip: Set(token.client_ip),
        user_agent: Set(token.user_agent),
    }
}

/// One outbox entry that the cap let through, inside its savepoint; `None` if its
/// digest is taken.
async fn write_one<C: ConnectionTrait>(db: &C, write: &OutboxWrite) -> Result<Option<i64>> {
    if let Some(token) = &write.token {
        revoke_live_tokens(db, &[token.account_id], None, token.created_at).await?;
        match reset_tokens::Entity::insert(token_model(token.clone(), None)).exec_without_returning(db).await {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => return Ok(None),
            Err(e) => return Err(classify(e)),
        }
    }
    Ok(Some(insert_event(db, write.event.clone()).await?))
}

/// Takes the transaction-scoped outbox lock, the first lock of every write
/// transaction (PostgreSQL only; re-entrant; SQLite has one writer anyway).
pub(super) async fn outbox_lock<C: ConnectionTrait>(db: &C) -> Result<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({OUTBOX_LOCK_KEY})")).await.db()?;
    }
    Ok(())
}

pub(super) async fn insert_event<C: ConnectionTrait>(db: &C, event: StoredEvent) -> Result<i64> {
    // Sequence values are drawn in call order but transactions commit in any order;
    // holding this lock from before the draw until commit makes sequence order commit
    // order, so a reader that has seen N never later finds a new event < N.
    outbox_lock(db).await?;
    let sequence = events::Entity::insert(event_model(event)).exec(db).await.db()?.last_insert_id;
    notify(db, sequence).await?;
    Ok(sequence)
}

/// Announces an outbox commit to every listening replica (PostgreSQL only): delivered
/// when, and only if, the transaction commits.
async fn notify<C: ConnectionTrait>(db: &C, sequence: i64) -> Result<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_notify('{EVENTS_CHANNEL}', '{sequence}')")).await.db()?;
    }
    Ok(())
}

/// Announces a revocation without an event (PostgreSQL only), on commit.
pub(super) async fn notify_revoked<C: ConnectionTrait>(db: &C, account_id: Uuid) -> Result<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_notify('{REVOKED_CHANNEL}', '{account_id}')")).await.db()?;
    }
    Ok(())
}

fn event_model(event: StoredEvent) -> events::ActiveModel {
    let (sealed_token, key_id) = match event.sealed_token {
        Some(s) => (Some(s.bytes), Some(s.key_id)),
        None => (None, None),
    };
    events::ActiveModel {
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
    }
}

/// Calls `on_notice` with every outbox commit and every revocation announced on
/// PostgreSQL by any replica, until `stop`. Reconnects after failures; subscribers also
/// poll and token caches expire, so a notification lost meanwhile only delays things.
/// `listening` fires once the first LISTEN is in place.
pub async fn follow_commits(
    url: String,
    stop: tokio_util::sync::CancellationToken,
    listening: tokio::sync::oneshot::Sender<()>,
    on_notice: impl Fn(Notice),
) {
    use sea_orm::sqlx::postgres::PgListener;
    let mut listening = Some(listening);
    loop {
        let follow = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen_all([EVENTS_CHANNEL, REVOKED_CHANNEL]).await?;
            if let Some(ready) = listening.take() {
                let _ = ready.send(());
            }
            loop {
                let notification = listener.recv().await?;
                let notice = match notification.channel() {
                    REVOKED_CHANNEL => notification.payload().parse().ok().map(Notice::Revoked),
                    _ => notification.payload().parse().ok().map(Notice::Committed),
                };
                if let Some(notice) = notice {
                    on_notice(notice);
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
