//! Password history (`--password-history N`): the previous hashes a password change
//! keeps, inside the change's own transaction, and the trim that deletes older ones.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entity::{accounts, password_history};
use super::{Classify, millis};
use crate::domain::model::{AccountId, Result};

/// Inside a password change, before the new hash is written: keeps the account's
/// current hash as history (when `keep` > 0) and deletes all but its `keep` newest
/// entries (all of them with `keep` = 0).
pub(super) async fn keep_previous<C: ConnectionTrait>(
    db: &C,
    account: AccountId,
    keep: u32,
    now: DateTime<Utc>,
) -> Result<()> {
    if keep > 0 {
        let current: Option<Option<String>> = accounts::Entity::find_by_id(account.uuid())
            .select_only()
            .column(accounts::Column::PasswordHash)
            .into_tuple()
            .one(db)
            .await
            .db()?;
        if let Some(Some(hash)) = current {
            let row = password_history::ActiveModel {
                id: NotSet,
                account_id: Set(account.uuid()),
                password_hash: Set(hash),
                created_at: Set(millis(now)),
            };
            password_history::Entity::insert(row).exec_without_returning(db).await.db()?;
        }
    }
    let newest = Query::select()
        .column(password_history::Column::Id)
        .from(password_history::Entity)
        .and_where(password_history::Column::AccountId.eq(account.uuid()))
        .order_by(password_history::Column::Id, sea_orm::Order::Desc)
        .limit(u64::from(keep))
        .to_owned();
    password_history::Entity::delete_many()
        .filter(password_history::Column::AccountId.eq(account.uuid()))
        .filter(password_history::Column::Id.not_in_subquery(newest))
        .exec(db)
        .await
        .db()?;
    Ok(())
}

/// Inside a password change, after the outbox lock: keeps the replaced hash as history
/// (see [`keep_previous`]) and sets `new_hash` on the account if it is active (and its
/// hash is still `expected`, when given). Whether it was set.
pub(super) async fn set_password<C: ConnectionTrait>(
    db: &C,
    account: AccountId,
    new_hash: String,
    expected: Option<String>,
    keep: u32,
    now: DateTime<Utc>,
) -> Result<bool> {
    keep_previous(db, account, keep, now).await?;
    let at = millis(now);
    let mut update = accounts::Entity::update_many()
        .col_expr(accounts::Column::PasswordHash, Expr::value(new_hash))
        .col_expr(accounts::Column::PasswordChangedAt, Expr::value(at))
        .col_expr(accounts::Column::UpdatedAt, Expr::value(at))
        .filter(accounts::Column::Id.eq(account.uuid()))
        .filter(accounts::Column::Active.eq(true));
    if let Some(expected) = expected {
        update = update.filter(accounts::Column::PasswordHash.eq(expected));
    }
    Ok(update.exec(db).await.db()?.rows_affected == 1)
}

/// The account's kept hashes, newest first, at most `limit`.
pub(super) async fn previous<C: ConnectionTrait>(db: &C, account: AccountId, limit: u32) -> Result<Vec<String>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    password_history::Entity::find()
        .select_only()
        .column(password_history::Column::PasswordHash)
        .filter(password_history::Column::AccountId.eq(account.uuid()))
        .order_by_desc(password_history::Column::Id)
        .limit(u64::from(limit))
        .into_tuple()
        .all(db)
        .await
        .db()
}

/// Deletes every account's entries beyond its `keep` newest (after `--password-history`
/// was lowered); how many.
pub(super) async fn trim<C: ConnectionTrait>(db: &C, keep: u32) -> Result<u64> {
    let sql = format!(
        "DELETE FROM password_history WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER \
         (PARTITION BY account_id ORDER BY id DESC) AS newer FROM password_history) AS ranked WHERE newer > {keep})"
    );
    Ok(db.execute_unprepared(&sql).await.db()?.rows_affected())
}
