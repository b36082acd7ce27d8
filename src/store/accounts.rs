//! Accounts as the domain's [`AccountStore`]: creation, look-ups, the active flag and
//! password-hash upgrades.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr,
};
use tracing::instrument;

use super::append::insert_event;
use super::entity::{accounts, reset_tokens};
use super::history;
use super::revoke::{RevokeScope, notify_revoked, revoke_live_tokens};
use super::row::token_model;
use super::{Classify, Store, classify, from_millis, millis};
use crate::domain::model::email::Email;
use crate::domain::model::event::{NewEvent, Sequence};
use crate::domain::model::login::{Login, Phone, Username};
use crate::domain::model::persistence::{AccountRecord, AccountStore, NewAccount, PasswordChange, TokenWrite};
use crate::domain::model::{Account, AccountId, Error, Result};

#[async_trait]
impl AccountStore for Store {
    #[instrument(skip_all, err, level = "debug")]
    async fn foreign_hashes(
        &self,
        prefix: &str,
        after: Option<uuid::Uuid>,
        limit: u64,
    ) -> Result<(Option<uuid::Uuid>, Vec<String>)> {
        // LIKE's wildcards in the prefix ('_' in none today) would only widen the match.
        let mut query = accounts::Entity::find()
            .select_only()
            .column(accounts::Column::Id)
            .column(accounts::Column::PasswordHash)
            .filter(accounts::Column::PasswordHash.is_not_null())
            .filter(accounts::Column::PasswordHash.not_like(format!("{prefix}%")))
            .order_by_asc(accounts::Column::Id)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(accounts::Column::Id.gt(after));
        }
        let rows: Vec<(uuid::Uuid, Option<String>)> = query.into_tuple().all(&self.db).await.db()?;
        let last = rows.last().map(|(id, _)| *id);
        Ok((last, rows.into_iter().filter_map(|(_, hash)| hash).collect()))
    }

    #[instrument(skip_all, err(level = "debug"), level = "debug")]
    async fn create_account(&self, new: NewAccount, setup: Option<TokenWrite>) -> Result<(Account, Option<Sequence>)> {
        let model = account_model(new);
        let Some(TokenWrite { token, event }) = setup else {
            // A plain account insert locks nothing anyone else holds first.
            let txn = self.begin_write().await?;
            let Some(row) = insert_account(&txn, model).await? else {
                txn.rollback().await?;
                return Err(Error::AccountExists);
            };
            txn.commit().await?;
            return Ok((to_account(&row), None));
        };
        let txn = self.begin_outbox().await?;
        let Some(row) = insert_account(&txn, model).await? else {
            txn.rollback().await?;
            return Err(Error::AccountExists);
        };
        reset_tokens::Entity::insert(token_model(token, None)).exec_without_returning(&*txn).await.db()?;
        let sequence = match event {
            Some(event) => Some(insert_event(&txn, event).await?),
            None => None,
        };
        txn.commit().await?;
        Ok((to_account(&row), sequence))
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn account_by_email(&self, email: &Email) -> Result<Option<AccountRecord>> {
        let row =
            accounts::Entity::find().filter(accounts::Column::Email.eq(email.as_str())).one(&self.db).await.db()?;
        Ok(row.map(to_record))
    }

    #[instrument(skip_all, err, level = "debug", fields(accounts = new.len()))]
    async fn import_accounts(&self, new: &[NewAccount]) -> Result<u64> {
        if new.is_empty() {
            return Ok(0);
        }
        let rows: Vec<_> = new.iter().cloned().map(account_model).collect();
        let txn = self.begin_write().await?;
        let inserted = accounts::Entity::insert_many(rows)
            // Any unique login taken (e-mail, username, phone): skipped, never overwritten.
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .exec_without_returning(&*txn)
            .await
            .db()?;
        txn.commit().await?;
        Ok(inserted)
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn account_by_login(&self, login: &Login) -> Result<Option<AccountRecord>> {
        let filter = match login {
            Login::Email(e) => accounts::Column::Email.eq(e.as_str()),
            // By key (confusable skeleton); a username without one is no login.
            Login::Username(u) => match u.key() {
                Some(key) => accounts::Column::UsernameSkeleton.eq(key),
                None => return Ok(None),
            },
            Login::Phone(p) => accounts::Column::Phone.eq(p.as_str()),
        };
        Ok(accounts::Entity::find().filter(filter).one(&self.db).await.db()?.map(to_record))
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn account_by_id(&self, id: AccountId) -> Result<Option<AccountRecord>> {
        Ok(accounts::Entity::find_by_id(id.uuid()).one(&self.db).await.db()?.map(to_record))
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn set_active(&self, id: AccountId, active: bool, now: DateTime<Utc>) -> Result<Option<Account>> {
        // The lock order (see `txn`): outbox, then the account, then its tokens.
        let txn = self.begin_outbox().await?;
        let updated = accounts::Entity::update_many()
            .col_expr(accounts::Column::Active, Expr::value(active))
            .col_expr(accounts::Column::UpdatedAt, Expr::value(millis(now)))
            .filter(accounts::Column::Id.eq(id.uuid()))
            .exec(&*txn)
            .await
            .db()?;
        if updated.rows_affected == 0 {
            return Ok(None);
        }
        if !active {
            revoke_live_tokens(&txn, &[id], RevokeScope::ALL, now).await?;
            notify_revoked(&txn, id).await?;
        }
        let row = accounts::Entity::find_by_id(id.uuid()).one(&*txn).await.db()?;
        txn.commit().await?;
        Ok(row.as_ref().map(to_account))
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn upgrade_password_hash(
        &self,
        id: AccountId,
        old_hash: &str,
        new_hash: String,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        accounts::Entity::update_many()
            .col_expr(accounts::Column::PasswordHash, Expr::value(new_hash))
            .col_expr(accounts::Column::UpdatedAt, Expr::value(millis(now)))
            .filter(accounts::Column::Id.eq(id.uuid()))
            .filter(accounts::Column::PasswordHash.eq(old_hash))
            .exec(&self.write_db)
            .await
            .db()?;
        Ok(())
    }

    #[instrument(skip_all, err(level = "debug"), level = "debug")]
    async fn change_password(&self, c: PasswordChange, event: NewEvent) -> Result<Sequence> {
        // The lock order (see `txn`): outbox, then the account, then its tokens.
        let txn = self.begin_outbox().await?;
        let set =
            history::set_password(&*txn, c.account_id, c.new_hash, Some(c.old_hash), c.history_keep, c.now).await?;
        if !set {
            txn.rollback().await?;
            return Err(Error::PasswordChangedConcurrently);
        }
        revoke_live_tokens(&txn, &[c.account_id], RevokeScope::ALL, c.now).await?;
        let sequence = insert_event(&txn, event).await?;
        txn.commit().await?;
        Ok(sequence)
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn password_history(&self, id: AccountId, limit: u32) -> Result<Vec<String>> {
        history::previous(&self.db, id, limit).await
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn trim_password_histories(&self, keep: u32) -> Result<u64> {
        let _turn = self.write_turn().await;
        history::trim(&self.write_db, keep).await
    }
}

/// Inserts an account; `None` if one of its logins is taken.
async fn insert_account(txn: &DatabaseTransaction, model: accounts::ActiveModel) -> Result<Option<accounts::Model>> {
    match accounts::Entity::insert(model).exec_with_returning(txn).await {
        Ok(row) => Ok(Some(row)),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(None),
        Err(e) => Err(classify(e)),
    }
}

/// The row of a new account; a password set at creation counts as a change then.
fn account_model(new: NewAccount) -> accounts::ActiveModel {
    let now = millis(new.created_at);
    accounts::ActiveModel {
        id: Set(new.id.uuid()),
        email: Set(new.email.as_str().to_owned()),
        username_skeleton: Set(new.username.as_ref().and_then(|u| u.key()).map(str::to_owned)),
        username: Set(new.username.map(|u| u.as_str().to_owned())),
        phone: Set(new.phone.map(|p| p.as_str().to_owned())),
        password_changed_at: Set(new.password_hash.is_some().then_some(now)),
        password_hash: Set(new.password_hash),
        active: Set(new.active),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

fn to_account(row: &accounts::Model) -> Account {
    Account {
        id: AccountId::from_uuid(row.id),
        email: Email::from_trusted(row.email.clone()),
        active: row.active,
        has_usable_password: row.password_hash.is_some(),
        created_at: from_millis(row.created_at),
        password_changed_at: row.password_changed_at.map(from_millis),
        username: row.username.clone().map(|name| Username::from_trusted(name, row.username_skeleton.clone())),
        phone: row.phone.clone().map(Phone::from_trusted),
    }
}

fn to_record(row: accounts::Model) -> AccountRecord {
    AccountRecord { account: to_account(&row), password_hash: row.password_hash }
}

/// The accounts any of `logins` names, in one query (the token writer's batch).
pub(super) async fn accounts_by_logins<C: ConnectionTrait>(db: &C, logins: &[&Login]) -> Result<Vec<AccountRecord>> {
    if logins.is_empty() {
        return Ok(Vec::new());
    }
    // One statement with all three lists (empty ones included), whatever the batch
    // holds: the same work for every mix of logins.
    let (mut emails, mut usernames, mut phones) = (Vec::new(), Vec::new(), Vec::new());
    for login in logins {
        match login {
            Login::Email(e) => emails.push(e.as_str()),
            Login::Username(u) => usernames.extend(u.key()),
            Login::Phone(p) => phones.push(p.as_str()),
        }
    }
    let rows = accounts::Entity::find()
        .filter(
            Condition::any()
                .add(accounts::Column::Email.is_in(emails))
                .add(accounts::Column::UsernameSkeleton.is_in(usernames))
                .add(accounts::Column::Phone.is_in(phones)),
        )
        .all(db)
        .await
        .db()?;
    Ok(rows.into_iter().map(to_record).collect())
}
