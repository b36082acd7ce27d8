//! The transactional outbox behind SubscribeEvents, and the retention watermark.
//!
//! `sequence` is assigned in commit order (writers serialise on an advisory lock on
//! PostgreSQL; SQLite has one writer) and never reused (AUTOINCREMENT / a sequence).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Events::Sequence).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(Events::OccurredAt).big_integer().not_null())
                    .col(ColumnDef::new(Events::Kind).small_integer().not_null())
                    .col(ColumnDef::new(Events::AccountId).uuid().not_null())
                    .col(ColumnDef::new(Events::Email).string_len(320).not_null())
                    .col(ColumnDef::new(Events::TokenId).uuid().null())
                    // AEAD-sealed raw token; NULL once the token stops being live.
                    .col(ColumnDef::new(Events::SealedToken).binary().null())
                    .col(ColumnDef::new(Events::KeyId).big_integer().null())
                    .col(ColumnDef::new(Events::ExpiresAt).big_integer().null())
                    .col(ColumnDef::new(Events::ClientIp).string_len(64).not_null())
                    .col(ColumnDef::new(Events::UserAgent).string_len(512).not_null())
                    .col(ColumnDef::new(Events::Locale).string_len(64).not_null())
                    .col(ColumnDef::new(Events::RetainUntil).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_events_token_id").table(Events::Table).col(Events::TokenId).to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_retain_until")
                    .table(Events::Table)
                    .col(Events::RetainUntil)
                    .to_owned(),
            )
            .await?;
        // One row: the highest sequence ever purged. A cursor below it may have missed
        // events, so SubscribeEvents answers OUT_OF_RANGE for it.
        manager
            .create_table(
                Table::create()
                    .table(EventRetention::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(EventRetention::Id).integer().not_null().primary_key())
                    .col(ColumnDef::new(EventRetention::PurgedThrough).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(EventRetention::Table)
                    .columns([EventRetention::Id, EventRetention::PurgedThrough])
                    .values_panic([1.into(), 0.into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(EventRetention::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Events::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Sequence,
    OccurredAt,
    Kind,
    AccountId,
    Email,
    TokenId,
    SealedToken,
    KeyId,
    ExpiresAt,
    ClientIp,
    UserAgent,
    Locale,
    RetainUntil,
}

#[derive(DeriveIden)]
enum EventRetention {
    Table,
    Id,
    PurgedThrough,
}
