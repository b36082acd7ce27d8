//! Lookalike usernames are one login: `accounts.username_skeleton`, the UTS #39
//! confusable skeleton of the username's normal form, unique when set; accounts are
//! found by it. Existing usernames get theirs here, computed by the service's own rule
//! (handed in with [`crate::set_username_key`]).
//!
//! Two existing usernames may share a skeleton (`admin` and `аdmin` with a Cyrillic а
//! were distinct accounts before), and a stored username may fail today's rule (PRECIS
//! refuses it). Neither fails the deployment: the oldest account (by creation, then name)
//! keeps the login, the others keep a NULL skeleton (no username login; their e-mail
//! and phone still work) and each is logged with a warning.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

use crate::username_key;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "idx_accounts_username_skeleton";
/// Usernames read per query.
const PAGE: u64 = 1000;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on SQLite too: all usernames keyed or none (a run cut short starts
    /// again cleanly), and one commit rather than one per username.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let key_of = username_key()?;
        let column = ColumnDef::new(Accounts::UsernameSkeleton).text().null().to_owned();
        manager.alter_table(Table::alter().table(Accounts::Table).add_column(column).to_owned()).await?;
        // The index first (every skeleton is NULL yet): it then answers "is this
        // skeleton taken?" below, so memory stays flat however many accounts there are.
        manager
            .create_index(
                Index::create().name(INDEX).table(Accounts::Table).col(Accounts::UsernameSkeleton).unique().to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let (mut keyed, mut left) = (0u64, 0u64);
        // Oldest first, a page at a time (keyset on creation time, then the unique name).
        let mut after: Option<(i64, String)> = None;
        loop {
            let mut page = Query::select()
                .columns([Accounts::CreatedAt, Accounts::Username])
                .from(Accounts::Table)
                .and_where(Expr::col(Accounts::Username).is_not_null())
                .order_by(Accounts::CreatedAt, Order::Asc)
                .order_by(Accounts::Username, Order::Asc)
                .limit(PAGE)
                .to_owned();
            if let Some((created, name)) = &after {
                page.cond_where(
                    Cond::any().add(Expr::col(Accounts::CreatedAt).gt(*created)).add(
                        Cond::all()
                            .add(Expr::col(Accounts::CreatedAt).eq(*created))
                            .add(Expr::col(Accounts::Username).gt(name.clone())),
                    ),
                );
            }
            let rows = db.query_all(&page).await?;
            let Some(last) = rows.last() else { break };
            after = Some((last.try_get("", "created_at")?, last.try_get("", "username")?));
            for row in rows {
                let username: String = row.try_get("", "username")?;
                let Some(key) = key_of(&username) else {
                    tracing::warn!(%username, "username is refused by today's rule: it is no longer a login (the account's e-mail and phone still are)");
                    left += 1;
                    continue;
                };
                // Only if no older account holds the skeleton (`username` is unique).
                let holder = Query::select()
                    .expr(Expr::val(1))
                    .from(Accounts::Table)
                    .and_where(Expr::col(Accounts::UsernameSkeleton).eq(key.clone()))
                    .to_owned();
                let update = Query::update()
                    .table(Accounts::Table)
                    .value(Accounts::UsernameSkeleton, key)
                    .and_where(Expr::col(Accounts::Username).eq(username.clone()))
                    .and_where(Expr::exists(holder).not())
                    .to_owned();
                if db.execute(&update).await?.rows_affected() == 1 {
                    keyed += 1;
                } else {
                    tracing::warn!(%username, "username looks like an older account's: it is no longer a login (the account's e-mail and phone still are)");
                    left += 1;
                }
            }
        }
        if keyed + left > 0 {
            tracing::info!(keyed, left_without_login = left, "usernames given their confusable skeletons");
        }
        Ok(())
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
    CreatedAt,
    Username,
    UsernameSkeleton,
}
