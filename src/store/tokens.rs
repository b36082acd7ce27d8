//! Reset tokens: look-up by digest, discarding, the Confirm transaction, revocation.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QuerySelect, RelationTrait, TransactionTrait,
    Value,
};
use tracing::instrument;
use uuid::Uuid;

use super::entity::{accounts, events, reset_tokens};
use super::outbox::{StoredEvent, insert_event, outbox_lock};
use super::{Classify, Store, from_millis, millis};
use crate::domain::token::TokenDigest;
use crate::domain::{Error, Result};

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
    /// Whether the token's account is active: a token of an inactive account is never
    /// live, whatever its own state says.
    pub account_active: bool,
}

impl From<&NewToken> for TokenRecord {
    /// The record of a token just written (the writer checked the account is active),
    /// as the database keeps it (to the millisecond).
    fn from(token: &NewToken) -> Self {
        TokenRecord {
            id: token.id,
            account_id: token.account_id,
            expires_at: from_millis(millis(token.expires_at)),
            used_at: None,
            revoked_at: None,
            account_active: true,
        }
    }
}

impl TokenRecord {
    /// Why the token is not live, if it is not.
    pub fn refusal(&self, now: DateTime<Utc>) -> Option<&'static str> {
        if self.used_at.is_some() {
            Some("used")
        } else if self.revoked_at.is_some() {
            Some("revoked")
        } else if !self.account_active {
            Some("inactive")
        } else if self.expires_at <= now {
            Some("expired")
        } else {
            None
        }
    }
}

/// What `Confirm` commits at once.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub token_id: Uuid,
    pub account_id: Uuid,
    pub password_hash: String,
    pub now: DateTime<Utc>,
}

impl Store {
    #[instrument(skip_all, err, level = "debug")]
    /// The token with any of `digests` (one per server key still accepted).
    pub async fn token_by_digests(&self, digests: &[TokenDigest]) -> Result<Option<TokenRecord>> {
        type Row = (Uuid, Uuid, i64, Option<i64>, Option<i64>, bool);
        let row: Option<Row> = reset_tokens::Entity::find()
            .select_only()
            .columns([
                reset_tokens::Column::Id,
                reset_tokens::Column::AccountId,
                reset_tokens::Column::ExpiresAt,
                reset_tokens::Column::UsedAt,
                reset_tokens::Column::RevokedAt,
            ])
            .column(accounts::Column::Active)
            .join(JoinType::InnerJoin, reset_tokens::Relation::Account.def())
            .filter(reset_tokens::Column::Digest.is_in(digests.iter().map(|d| d.0.to_vec())))
            .into_tuple()
            .one(&self.db)
            .await
            .db()?;
        Ok(row.map(|(id, account_id, expires_at, used_at, revoked_at, account_active)| TokenRecord {
            id,
            account_id,
            expires_at: from_millis(expires_at),
            used_at: used_at.map(from_millis),
            revoked_at: revoked_at.map(from_millis),
            account_active,
        }))
    }

    /// Deletes a token that is no longer live (an expired one was presented) and
    /// destroys its sealed copy.
    #[instrument(skip_all, err, level = "debug")]
    pub async fn discard_token(&self, id: Uuid) -> Result<()> {
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await.db()?;
        outbox_lock(&txn).await?;
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
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await.db()?;
        // The lock order (see `store`): outbox, then the account, then its tokens.
        outbox_lock(&txn).await?;
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
        let consumed = reset_tokens::Entity::update_many()
            .col_expr(reset_tokens::Column::UsedAt, Expr::value(now))
            .filter(reset_tokens::Column::Id.eq(c.token_id))
            .filter(reset_tokens::Column::AccountId.eq(c.account_id))
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
        revoke_live_tokens(&txn, &[c.account_id], Some(c.token_id), c.now).await?;
        let sequence = insert_event(&txn, event).await?;
        txn.commit().await.db()?;
        Ok(sequence)
    }
}

/// Revokes the accounts' live tokens (all but `keep`) and destroys the sealed copies
/// of every token of the accounts that is no longer live.
pub(super) async fn revoke_live_tokens<C: ConnectionTrait>(
    db: &C,
    accounts: &[Uuid],
    keep: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<()> {
    let now = millis(now);
    let mut revoke = reset_tokens::Entity::update_many()
        .col_expr(reset_tokens::Column::RevokedAt, Expr::value(now))
        .filter(reset_tokens::Column::AccountId.is_in(accounts.iter().copied()))
        .filter(reset_tokens::Column::UsedAt.is_null())
        .filter(reset_tokens::Column::RevokedAt.is_null());
    if let Some(keep) = keep {
        revoke = revoke.filter(reset_tokens::Column::Id.ne(keep));
    }
    revoke.exec(db).await.db()?;
    events::Entity::update_many()
        .col_expr(events::Column::SealedToken, Expr::value(Value::Bytes(None)))
        .filter(events::Column::AccountId.is_in(accounts.iter().copied()))
        .filter(events::Column::SealedToken.is_not_null())
        .exec(db)
        .await
        .db()?;
    Ok(())
}
