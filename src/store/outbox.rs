//! The outbox: writing events (with the tokens they announce, group-committed), reading
//! them back in sequence order, retention, and PostgreSQL commit notifications.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    SqlErr, TransactionTrait, Value,
};
use tracing::instrument;
use uuid::Uuid;

use super::entity::{event_retention, events, reset_tokens};
use super::tokens::{NewToken, revoke_live_tokens};
use super::{Classify, Store, classify, from_millis, millis};
use crate::domain::Result;
use crate::events::seal::SealedToken;

/// Arbitrary, fixed key of the PostgreSQL advisory lock that serialises outbox writers.
const OUTBOX_LOCK_KEY: i64 = 0x7077_7265_7365_7401;
/// PostgreSQL channel on which every outbox commit is announced to all replicas.
pub const EVENTS_CHANNEL: &str = "pwreset_events";

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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub tokens: u64,
    pub events: u64,
}

impl Store {
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

pub(super) async fn insert_event<C: ConnectionTrait>(db: &C, event: StoredEvent) -> Result<i64> {
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
