//! Accounts: creation, look-ups, the active flag and password-hash upgrades.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, SqlErr, TransactionTrait};
use tracing::instrument;
use uuid::Uuid;

use super::entity::accounts;
use super::outbox::{notify_revoked, outbox_lock};
use super::tokens::revoke_live_tokens;
use super::{Classify, Store, classify, from_millis, millis};
use crate::domain::email::Email;
use crate::domain::{Account, Error, Result};

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

impl Store {
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
        let _turn = self.write_turn().await;
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

    /// The accounts of any of `emails`, in one query (the token writer's batch).
    #[instrument(skip_all, err, level = "debug", fields(emails = emails.len()))]
    pub async fn accounts_by_emails(&self, emails: &[&Email]) -> Result<Vec<AccountRecord>> {
        if emails.is_empty() {
            return Ok(Vec::new());
        }
        let rows = accounts::Entity::find()
            .filter(accounts::Column::Email.is_in(emails.iter().map(|e| e.as_str())))
            .all(&self.db)
            .await
            .db()?;
        Ok(rows.into_iter().map(to_record).collect())
    }

    #[instrument(skip_all, err, level = "debug")]
    pub async fn account_by_id(&self, id: Uuid) -> Result<Option<AccountRecord>> {
        Ok(accounts::Entity::find_by_id(id).one(&self.db).await.db()?.map(to_record))
    }

    /// Sets the active flag; deactivating also revokes every live token of the account
    /// and destroys their sealed copies, in the same transaction.
    #[instrument(skip_all, err, level = "debug")]
    pub async fn set_active(&self, id: Uuid, active: bool, now: DateTime<Utc>) -> Result<Option<Account>> {
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await.db()?;
        // The lock order (see `store`): outbox, then the account, then its tokens.
        outbox_lock(&txn).await?;
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
            revoke_live_tokens(&txn, &[id], None, now).await?;
            notify_revoked(&txn, id).await?;
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
        let _turn = self.write_turn().await;
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
