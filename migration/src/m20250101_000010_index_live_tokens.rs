//! A partial index on the tokens still live (neither used nor revoked), by account.
//! Every new token, Confirm, password change and deactivation revokes an account's
//! live tokens; through the plain account index that update visited every token the
//! account ever had that was not yet purged, so it slowed as history grew. Expired
//! tokens may still be in it until the purge removes them; they are few.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const NAME: &str = "idx_reset_tokens_live";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(ResetTokens::Table)
                    .col(ResetTokens::AccountId)
                    .and_where(Expr::col(ResetTokens::UsedAt).is_null())
                    .and_where(Expr::col(ResetTokens::RevokedAt).is_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(NAME).table(ResetTokens::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ResetTokens {
    Table,
    AccountId,
    UsedAt,
    RevokedAt,
}
