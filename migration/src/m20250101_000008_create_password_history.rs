//! Password history (`--password-history N`): an account's previous hashes, newest
//! last, at most N - 1 of them (the current hash in `accounts` is the N-th).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PasswordHistory::Table)
                    .col(ColumnDef::new(PasswordHistory::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(PasswordHistory::AccountId).uuid().not_null())
                    .col(ColumnDef::new(PasswordHistory::PasswordHash).string().not_null())
                    .col(ColumnDef::new(PasswordHistory::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_password_history_account_id")
                    .table(PasswordHistory::Table)
                    .col(PasswordHistory::AccountId)
                    .col(PasswordHistory::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(PasswordHistory::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum PasswordHistory {
    Table,
    Id,
    AccountId,
    PasswordHash,
    CreatedAt,
}
