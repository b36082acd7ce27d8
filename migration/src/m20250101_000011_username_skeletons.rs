//! Lookalike usernames are one login (#21): `accounts.username_skeleton`, the UTS #39
//! confusable skeleton of the username's normal form, unique when set; accounts are
//! found by it. Existing usernames get theirs here, computed by the service's own rule
//! (handed in with [`crate::set_username_key`]).
//!
//! Two existing usernames may share a skeleton (`admin` and `аdmin` with a Cyrillic а
//! were distinct accounts before), and a stored username may fail today's rule (PRECIS
//! refuses it). Neither fails the deployment: the oldest account (by creation, then id)
//! keeps the login, the others keep a NULL skeleton (no username login; their e-mail
//! and phone still work) and each is logged with a warning.

use std::collections::HashSet;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

use crate::username_key;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "idx_accounts_username_skeleton";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let key_of = username_key()?;
        let column = ColumnDef::new(Accounts::UsernameSkeleton).text().null().to_owned();
        manager.alter_table(Table::alter().table(Accounts::Table).add_column(column).to_owned()).await?;
        let db = manager.get_connection();
        let select = Query::select()
            .column(Accounts::Username)
            .from(Accounts::Table)
            .and_where(Expr::col(Accounts::Username).is_not_null())
            .order_by(Accounts::CreatedAt, Order::Asc)
            .order_by(Accounts::Id, Order::Asc)
            .to_owned();
        let mut taken = HashSet::new();
        let (mut keyed, mut left) = (0u64, 0u64);
        for row in db.query_all(&select).await? {
            let username: String = row.try_get("", "username")?;
            let key = match key_of(&username) {
                Some(key) if taken.insert(key.clone()) => key,
                Some(_) => {
                    tracing::warn!(%username, "username looks like an older account's: it is no longer a login (the account's e-mail and phone still are)");
                    left += 1;
                    continue;
                }
                None => {
                    tracing::warn!(%username, "username is refused by today's rule: it is no longer a login (the account's e-mail and phone still are)");
                    left += 1;
                    continue;
                }
            };
            // `username` is unique (idx_accounts_username).
            let update = Query::update()
                .table(Accounts::Table)
                .value(Accounts::UsernameSkeleton, key)
                .and_where(Expr::col(Accounts::Username).eq(username))
                .to_owned();
            db.execute(&update).await?;
            keyed += 1;
        }
        if keyed + left > 0 {
            tracing::info!(keyed, left_without_login = left, "usernames given their confusable skeletons");
        }
        manager
            .create_index(
                Index::create().name(INDEX).table(Accounts::Table).col(Accounts::UsernameSkeleton).unique().to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(Accounts::Table).to_owned()).await?;
        let drop = Table::alter().table(Accounts::Table).drop_column(Accounts::UsernameSkeleton).to_owned();
        manager.alter_table(drop).await
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    CreatedAt,
    Username,
    UsernameSkeleton,
}
