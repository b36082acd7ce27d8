//! Reset tokens as the domain's [`TokenStore`]: look-up by digest (with the account's
//! active flag), discarding, and the Confirm transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QuerySelect, QueryTrait, RelationTrait,
};
use tracing::instrument;
use uuid::Uuid;

use super::append::insert_event;
use super::entity::{accounts, reset_tokens};
use super::history;
use super::revoke::{RevokeScope, destroy_copies, notify_revoked, revoke_live_tokens};
use super::row::{live_at, token_model};
use super::{Classify, Store, from_millis, millis};
use crate::domain::model::event::{NewEvent, Sequence};
use crate::domain::model::persistence::{CodeAttempt, Confirmation, TokenStore, TokenWrite};
use crate::domain::model::token::{TokenDigest, TokenPurpose, TokenRecord};
use crate::domain::model::{AccountId, Error, Result};

#[async_trait]
impl TokenStore for Store {
    #[instrument(skip_all, err, level = "debug")]
    async fn token_by_digests(&self, digests: &[TokenDigest]) -> Result<Option<TokenRecord>> {
        type Row = (Uuid, Uuid, i64, Option<i64>, Option<i64>, i16, bool, bool);
        let row: Option<Row> = reset_tokens::Entity::find()
            .select_only()
            .columns([
                reset_tokens::Column::Id,
                reset_tokens::Column::AccountId,
                reset_tokens::Column::ExpiresAt,
                reset_tokens::Column::UsedAt,
                reset_tokens::Column::RevokedAt,
                reset_tokens::Column::Purpose,
                reset_tokens::Column::Bound,
            ])
            .column(accounts::Column::Active)
            .join(JoinType::InnerJoin, reset_tokens::Relation::Account.def())
            .filter(reset_tokens::Column::Digest.is_in(digests.iter().map(|d| d.0.to_vec())))
            .into_tuple()
            .one(&self.db)
            .await
            .db()?;
        Ok(row.map(|(id, account_id, expires_at, used_at, revoked_at, purpose, bound, account_active)| TokenRecord {
            id,
            account_id: AccountId::from_uuid(account_id),
            expires_at: from_millis(expires_at),
            used_at: used_at.map(from_millis),
            revoked_at: revoked_at.map(from_millis),
            account_active,
            purpose: TokenPurpose::from_code(purpose),
            bound,
        }))
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn discard_token(&self, id: Uuid) -> Result<()> {
        let txn = self.begin_outbox().await?;
        reset_tokens::Entity::delete_by_id(id).exec(&*txn).await.db()?;
        destroy_copies(&txn, &[id]).await?;
        txn.commit().await
    }

    #[instrument(skip_all, err(level = "debug"), level = "debug")]
    async fn confirm(&self, c: Confirmation, event: NewEvent) -> Result<Sequence> {
        let now = millis(c.now);
        // The lock order (see `txn`): outbox, then the account, then its tokens.
        let txn = self.begin_outbox().await?;
        let set = history::set_password(&*txn, c.account_id, c.password_hash, None, c.history_keep, c.now).await?;
        if !set {
            txn.rollback().await?;
            return Err(Error::TokenNotFound);
        }
        let consumed = reset_tokens::Entity::update_many()
            .col_expr(reset_tokens::Column::UsedAt, Expr::value(now))
            .filter(reset_tokens::Column::Id.eq(c.token_id))
            .filter(reset_tokens::Column::AccountId.eq(c.account_id.uuid()))
            .filter(live_at(c.now))
            .exec(&*txn)
            .await
            .db()?;
        if consumed.rows_affected != 1 {
            txn.rollback().await?;
            return Err(Error::TokenNotFound);
        }
        revoke_live_tokens(&txn, &[c.account_id], RevokeScope { keep: Some(c.token_id), purpose: None }, c.now).await?;
        let sequence = insert_event(&txn, event).await?;
        txn.commit().await?;
        Ok(sequence)
    }

    #[instrument(skip_all, err(level = "debug"), level = "debug")]
    async fn issue_token(&self, issue: TokenWrite) -> Result<Option<Sequence>> {
        let TokenWrite { token, event } = issue;
        let account_id = token.account_id;
        // The lock order (see `txn`): outbox, then the account, then its tokens. The
        // account is checked after the lock, so no deactivation or password change can
        // commit between the check and this commit.
        let txn = self.begin_outbox().await?;
        let account = accounts::Entity::find_by_id(account_id.uuid()).one(&*txn).await.db()?;
        let refusal = match account {
            None => Some(Error::AccountNotFound),
            Some(a) if !a.active => Some(Error::AccountInactive),
            Some(a) if token.purpose == TokenPurpose::AccountSetup && a.password_hash.is_some() => {
                Some(Error::PasswordAlreadySet)
            }
            Some(_) => None,
        };
        if let Some(refusal) = refusal {
            txn.rollback().await?;
            return Err(refusal);
        }
        revoke_live_tokens(&txn, &[account_id], RevokeScope::purpose(token.purpose), token.created_at).await?;
        reset_tokens::Entity::insert(token_model(token, None)).exec_without_returning(&*txn).await.db()?;
        let sequence = match event {
            Some(event) => Some(insert_event(&txn, event).await?),
            // No event tells other replicas to drop what they cached of the tokens revoked.
            None => {
                notify_revoked(&txn, account_id).await?;
                None
            }
        };
        txn.commit().await?;
        Ok(sequence)
    }

    /// One statement on both databases, on the token rows alone (no outbox lock: it
    /// waits for no other writer but those of the same rows). Racing attempts each add
    /// one, and none is granted past `max`, however many arrive at once.
    #[instrument(skip_all, err, level = "debug")]
    async fn reserve_code_attempts(&self, id: AccountId, max: u32, now: DateTime<Utc>) -> Result<Vec<CodeAttempt>> {
        let max = i32::try_from(max).unwrap_or(i32::MAX);
        let mut reserve = reset_tokens::Entity::update_many()
            .col_expr(reset_tokens::Column::FailedAttempts, Expr::col(reset_tokens::Column::FailedAttempts).add(1))
            .filter(reset_tokens::Column::AccountId.eq(id.uuid()))
            .filter(reset_tokens::Column::Bound.eq(true))
            .filter(live_at(now))
            .filter(reset_tokens::Column::FailedAttempts.lt(max))
            .into_query();
        reserve.returning(Query::returning().columns([reset_tokens::Column::Id, reset_tokens::Column::FailedAttempts]));
        let _turn = self.write_turn().await;
        let rows = self.write_db.query_all(&reserve).await.db()?;
        rows.iter()
            .map(|row| {
                let token_id = row.try_get::<Uuid>("", "id").db()?;
                let count = row.try_get::<i32>("", "failed_attempts").db()?;
                Ok(CodeAttempt { token_id, count: u32::try_from(count).unwrap_or(0) })
            })
            .collect()
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn release_code_attempts(&self, codes: &[Uuid]) -> Result<()> {
        if codes.is_empty() {
            return Ok(());
        }
        let _turn = self.write_turn().await;
        reset_tokens::Entity::update_many()
            .col_expr(reset_tokens::Column::FailedAttempts, Expr::col(reset_tokens::Column::FailedAttempts).sub(1))
            .filter(reset_tokens::Column::Id.is_in(codes.iter().copied()))
            .filter(reset_tokens::Column::FailedAttempts.gt(0))
            .exec(&self.write_db)
            .await
            .db()?;
        Ok(())
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn revoke_codes(&self, id: AccountId, codes: &[Uuid], now: DateTime<Utc>) -> Result<bool> {
        let at = millis(now);
        // The lock order (see `txn`): outbox, then tokens, then events.
        let txn = self.begin_outbox().await?;
        let revoked = reset_tokens::Entity::update_many()
            .col_expr(reset_tokens::Column::RevokedAt, Expr::value(at))
            .filter(reset_tokens::Column::Id.is_in(codes.iter().copied()))
            .filter(reset_tokens::Column::AccountId.eq(id.uuid()))
            .filter(reset_tokens::Column::UsedAt.is_null())
            .filter(reset_tokens::Column::RevokedAt.is_null())
            .exec(&*txn)
            .await
            .db()?
            .rows_affected;
        if revoked > 0 {
            destroy_copies(&txn, codes).await?;
            notify_revoked(&txn, id).await?;
        }
        txn.commit().await?;
        Ok(revoked > 0)
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn revoke_tokens(
        &self,
        id: AccountId,
        purpose: Option<TokenPurpose>,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        let txn = self.begin_outbox().await?;
        if accounts::Entity::find_by_id(id.uuid()).one(&*txn).await.db()?.is_none() {
            txn.rollback().await?;
            return Ok(None);
        }
        let revoked = revoke_live_tokens(&txn, &[id], RevokeScope { keep: None, purpose }, now).await?;
        notify_revoked(&txn, id).await?;
        txn.commit().await?;
        Ok(Some(revoked))
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::ActiveValue::Set;

    use super::*;

    /// The SQL form of the liveness rule ([`live_at`]) and the Rust one
    /// ([`TokenRecord::refusal`]) agree on every state a token of an active account can
    /// be in, at the expiry's edges.
    #[tokio::test]
    async fn the_sql_liveness_rule_is_the_rust_one() -> anyhow::Result<()> {
        let store = Store::connect("sqlite::memory:", 1).await?;
        store.migrate().await?;
        let account = Uuid::now_v7();
        accounts::Entity::insert(accounts::ActiveModel {
            id: Set(account),
            email: Set("a@example.com".into()),
            password_hash: Set(None),
            active: Set(true),
            created_at: Set(0),
            updated_at: Set(0),
            password_changed_at: Set(None),
            username: Set(None),
            phone: Set(None),
            username_skeleton: Set(None),
        })
        .exec(&store.db)
        .await?;
        let now = from_millis(1_000_000);
        let at = millis(now);
        for used_at in [None, Some(at - 1)] {
            for revoked_at in [None, Some(at - 1)] {
                for expires_at in [at - 1, at, at + 1] {
                    let id = Uuid::now_v7();
                    let row = reset_tokens::ActiveModel {
                        id: Set(id),
                        account_id: Set(account),
                        digest: Set(id.as_bytes().to_vec()),
                        created_at: Set(0),
                        expires_at: Set(expires_at),
                        used_at: Set(used_at),
                        revoked_at: Set(revoked_at),
                        client_ip: Set(String::new()),
                        user_agent: Set(String::new()),
                        purpose: Set(TokenPurpose::PasswordReset.code()),
                        bound: Set(false),
                        failed_attempts: Set(0),
                    };
                    reset_tokens::Entity::insert(row).exec_without_returning(&store.db).await?;
                    let found = reset_tokens::Entity::find_by_id(id).filter(live_at(now)).one(&store.db).await?;
                    let record = TokenRecord {
                        id,
                        account_id: AccountId::from_uuid(account),
                        expires_at: from_millis(expires_at),
                        used_at: used_at.map(from_millis),
                        revoked_at: revoked_at.map(from_millis),
                        account_active: true,
                        purpose: TokenPurpose::PasswordReset,
                        bound: false,
                    };
                    let state = (used_at, revoked_at, expires_at - at);
                    assert_eq!(found.is_some(), record.refusal(now).is_none(), "{state:?}");
                }
            }
        }
        Ok(())
    }
}
