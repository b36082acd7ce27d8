//! Reset tokens: only an HMAC-SHA-256 digest of each token is stored, never the token.

use sea_orm_migration::prelude::*;

use super::m20250101_000001_create_accounts::Accounts;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ResetTokens::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ResetTokens::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ResetTokens::AccountId).uuid().not_null())
                    .col(ColumnDef::new(ResetTokens::Digest).binary().not_null().unique_key())
                    .col(ColumnDef::new(ResetTokens::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(ResetTokens::ExpiresAt).big_integer().not_null())
                    .col(ColumnDef::new(ResetTokens::UsedAt).big_integer().null())
                    .col(ColumnDef::new(ResetTokens::RevokedAt).big_integer().null())
                    .col(ColumnDef::new(ResetTokens::ClientIp).string_len(64).not_null())
                    .col(ColumnDef::new(ResetTokens::UserAgent).string_len(512).not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(ResetTokens::Table, ResetTokens::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_reset_tokens_account_id")
                    .table(ResetTokens::Table)
                    .col(ResetTokens::AccountId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_reset_tokens_expires_at")
                    .table(ResetTokens::Table)
                    .col(ResetTokens::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ResetTokens::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ResetTokens {
    Table,
    Id,
    AccountId,
    Digest,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    RevokedAt,
    ClientIp,
    UserAgent,
}
