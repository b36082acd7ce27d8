//! Token purposes: a token is for a password reset (1) or an account's first
//! password (2), and a password change records why it happened (1 reset, 2 account
//! setup, 3 change). Rows written before this migration are resets. One column per
//! statement: SQLite alters one column at a time.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let add = |table: DynIden, column: DynIden| {
            Table::alter()
                .table(table)
                .add_column(ColumnDef::new(column).small_integer().not_null().default(1))
                .to_owned()
        };
        manager.alter_table(add(ResetTokens::Table.into_iden(), ResetTokens::Purpose.into_iden())).await?;
        manager.alter_table(add(Events::Table.into_iden(), Events::Purpose.into_iden())).await?;
        manager.alter_table(add(Events::Table.into_iden(), Events::Reason.into_iden())).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let drop = |table: DynIden, column: DynIden| Table::alter().table(table).drop_column(column).to_owned();
        manager.alter_table(drop(Events::Table.into_iden(), Events::Reason.into_iden())).await?;
        manager.alter_table(drop(Events::Table.into_iden(), Events::Purpose.into_iden())).await?;
        manager.alter_table(drop(ResetTokens::Table.into_iden(), ResetTokens::Purpose.into_iden())).await
    }
}

#[derive(DeriveIden)]
enum ResetTokens {
    Table,
    Purpose,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Purpose,
    Reason,
}
