//! Consecutive failed password checks per address, shared by every replica. The
//! address is kept only as a keyed digest (HMAC under the server key), never in clear,
//! so the table does not list who was guessed at.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(VerifyFailures::Table)
                    .col(ColumnDef::new(VerifyFailures::EmailDigest).binary().not_null().primary_key())
                    .col(ColumnDef::new(VerifyFailures::Failures).integer().not_null())
                    .col(ColumnDef::new(VerifyFailures::LastAttemptAt).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(VerifyFailures::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum VerifyFailures {
    Table,
    EmailDigest,
    Failures,
    LastAttemptAt,
}
