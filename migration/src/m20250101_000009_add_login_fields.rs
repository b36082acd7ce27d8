//! Username and phone logins with short codes bound to them: optional unique
//! `username` (NFKC, lower case) and `phone` (E.164) on accounts; on tokens, whether the
//! token is a short code bound to its account (`bound`) and its failed attempts; on
//! events, the channel (1 e-mail, 2 SMS) and the phone and username a notifier needs.
//! One column per statement: SQLite alters one column at a time.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let add = |table: DynIden, column: ColumnDef| Table::alter().table(table).add_column(column).to_owned();
        let accounts = || Accounts::Table.into_iden();
        let tokens = || ResetTokens::Table.into_iden();
        let events = || Events::Table.into_iden();
        manager.alter_table(add(accounts(), ColumnDef::new(Accounts::Username).string().null().to_owned())).await?;
        manager.alter_table(add(accounts(), ColumnDef::new(Accounts::Phone).string().null().to_owned())).await?;
        for (name, column) in [("idx_accounts_username", Accounts::Username), ("idx_accounts_phone", Accounts::Phone)] {
            manager
                .create_index(Index::create().name(name).table(Accounts::Table).col(column).unique().to_owned())
                .await?;
        }
        let flag = ColumnDef::new(ResetTokens::Bound).boolean().not_null().default(false).to_owned();
        manager.alter_table(add(tokens(), flag)).await?;
        let attempts = ColumnDef::new(ResetTokens::FailedAttempts).integer().not_null().default(0).to_owned();
        manager.alter_table(add(tokens(), attempts)).await?;
        let channel = ColumnDef::new(Events::Channel).small_integer().not_null().default(1).to_owned();
        manager.alter_table(add(events(), channel)).await?;
        let phone = ColumnDef::new(Events::Phone).string().not_null().default("").to_owned();
        manager.alter_table(add(events(), phone)).await?;
        let username = ColumnDef::new(Events::Username).string().not_null().default("").to_owned();
        manager.alter_table(add(events(), username)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let drop = |table: DynIden, column: DynIden| Table::alter().table(table).drop_column(column).to_owned();
        for column in [Events::Username, Events::Phone, Events::Channel] {
            manager.alter_table(drop(Events::Table.into_iden(), column.into_iden())).await?;
        }
        for column in [ResetTokens::FailedAttempts, ResetTokens::Bound] {
            manager.alter_table(drop(ResetTokens::Table.into_iden(), column.into_iden())).await?;
        }
        for name in ["idx_accounts_username", "idx_accounts_phone"] {
            manager.drop_index(Index::drop().name(name).table(Accounts::Table).to_owned()).await?;
        }
        for column in [Accounts::Phone, Accounts::Username] {
            manager.alter_table(drop(Accounts::Table.into_iden(), column.into_iden())).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Accounts {
    Table,
    Username,
    Phone,
}

#[derive(DeriveIden, Clone, Copy)]
enum ResetTokens {
    Table,
    Bound,
    FailedAttempts,
}

#[derive(DeriveIden, Clone, Copy)]
enum Events {
    Table,
    Channel,
    Phone,
    Username,
}
