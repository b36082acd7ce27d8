//! Accounts: the credential the reset flow changes. Times are Unix milliseconds.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Accounts::Id).uuid().not_null().primary_key())
                    // Normalised (trimmed, case-folded) before it gets here.
                    .col(ColumnDef::new(Accounts::Email).string_len(320).not_null().unique_key())
                    // PHC string; NULL means no usable password.
                    .col(ColumnDef::new(Accounts::PasswordHash).string_len(512).null())
                    .col(ColumnDef::new(Accounts::Active).boolean().not_null())
                    .col(ColumnDef::new(Accounts::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Accounts::UpdatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Accounts::PasswordChangedAt).big_integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Accounts::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub enum Accounts {
    Table,
    Id,
    Email,
    PasswordHash,
    Active,
    CreatedAt,
    UpdatedAt,
    PasswordChangedAt,
}
