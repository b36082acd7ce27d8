//! Statements every write transaction shares: the first lock of the lock order,
//! appending an event, announcing commits, revoking an account's tokens.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, Value};
use uuid::Uuid;

use super::entity::{events, reset_tokens};
use super::listen::{EVENTS_CHANNEL, OUTBOX_LOCK_KEY, REVOKED_CHANNEL};
use super::row::event_model;
use super::{Classify, millis};
use crate::domain::event::{NewEvent, Sequence};
use crate::domain::token::TokenPurpose;
use crate::domain::{AccountId, Result};

/// Takes the transaction-scoped outbox lock, the first lock of every write
/// transaction (PostgreSQL only; re-entrant; SQLite has one writer anyway).
pub(super) async fn outbox_lock<C: ConnectionTrait>(db: &C) -> Result<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({OUTBOX_LOCK_KEY})")).await.db()?;
    }
    Ok(())
}

/// Appends one event inside the caller's transaction.
pub(super) async fn insert_event<C: ConnectionTrait>(db: &C, event: NewEvent) -> Result<Sequence> {
    // Sequence values are drawn in call order but transactions commit in any order;
    // holding this lock from before the draw until commit makes sequence order commit
    // order, so a reader that has seen N never later finds a new event < N.
    outbox_lock(db).await?;
    let sequence = events::Entity::insert(event_model(event)).exec(db).await.db()?.last_insert_id;
    notify(db, sequence).await?;
    Ok(Sequence::from_db(sequence))
}

/// Announces an outbox commit to every listening replica (PostgreSQL only): delivered
/// when, and only if, the transaction commits.
pub(super) async fn notify<C: ConnectionTrait>(db: &C, sequence: i64) -> Result<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_notify('{EVENTS_CHANNEL}', '{sequence}')")).await.db()?;
    }
    Ok(())
}

/// Announces a revocation without an event (PostgreSQL only), on commit.
pub(super) async fn notify_revoked<C: ConnectionTrait>(db: &C, account_id: AccountId) -> Result<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_notify('{REVOKED_CHANNEL}', '{account_id}')")).await.db()?;
    }
    Ok(())
}

/// Destroys the sealed copies of these tokens (they are no longer live).
pub(super) async fn destroy_copies<C: ConnectionTrait>(db: &C, tokens: &[Uuid]) -> Result<()> {
    events::Entity::update_many()
        .col_expr(events::Column::SealedToken, Expr::value(Value::Bytes(None)))
        .filter(events::Column::TokenId.is_in(tokens.iter().copied()))
        .exec(db)
        .await
        .db()?;
    Ok(())
}

/// Which of an account's tokens a revocation ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Revoke {
    /// Every token but this one (the one a Confirm consumes).
    pub keep: Option<Uuid>,
    /// Only tokens of this purpose; `None`: every purpose.
    pub purpose: Option<TokenPurpose>,
}

impl Revoke {
    pub const ALL: Revoke = Revoke { keep: None, purpose: None };

    pub fn purpose(purpose: TokenPurpose) -> Self {
        Revoke { keep: None, purpose: Some(purpose) }
    }
}

/// Revokes the accounts' live tokens that `which` names and destroys the sealed copies
/// of those tokens (with every other of the accounts' copies whose token is no longer
/// live); how many live tokens were revoked.
pub(super) async fn revoke_live_tokens<C: ConnectionTrait>(
    db: &C,
    accounts: &[AccountId],
    which: Revoke,
    now: DateTime<Utc>,
) -> Result<u64> {
    let now = millis(now);
    let mut revoke = reset_tokens::Entity::update_many()
        .col_expr(reset_tokens::Column::RevokedAt, Expr::value(now))
        .filter(reset_tokens::Column::AccountId.is_in(accounts.iter().map(|a| a.uuid())))
        .filter(reset_tokens::Column::UsedAt.is_null())
        .filter(reset_tokens::Column::RevokedAt.is_null())
        .filter(reset_tokens::Column::ExpiresAt.gt(now));
    if let Some(keep) = which.keep {
        revoke = revoke.filter(reset_tokens::Column::Id.ne(keep));
    }
    if let Some(purpose) = which.purpose {
        revoke = revoke.filter(reset_tokens::Column::Purpose.eq(purpose.code()));
    }
    let revoked = revoke.exec(db).await.db()?.rows_affected;
    let mut destroy = events::Entity::update_many()
        .col_expr(events::Column::SealedToken, Expr::value(Value::Bytes(None)))
        .filter(events::Column::AccountId.is_in(accounts.iter().map(|a| a.uuid())))
        .filter(events::Column::SealedToken.is_not_null());
    if let Some(purpose) = which.purpose {
        destroy = destroy.filter(events::Column::Purpose.eq(purpose.code()));
    }
    destroy.exec(db).await.db()?;
    Ok(revoked)
}
