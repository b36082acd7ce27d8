//! Schema migrations for pwreset, applied by `pwreset serve` at start and by
//! `pwreset migrate`. One change per file; never edit a released migration.

pub use sea_orm_migration::prelude::*;

mod m20250101_000001_create_accounts;
mod m20250101_000002_create_reset_tokens;
mod m20250101_000003_create_events;
mod m20250101_000004_index_events_by_account;
mod m20250101_000005_index_events_by_email;
mod m20250101_000006_create_verify_failures;
mod m20250101_000007_add_token_purpose;
mod m20250101_000008_create_password_history;
mod m20250101_000009_add_login_fields;
mod m20250101_000010_index_live_tokens;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_accounts::Migration),
            Box::new(m20250101_000002_create_reset_tokens::Migration),
            Box::new(m20250101_000003_create_events::Migration),
            Box::new(m20250101_000004_index_events_by_account::Migration),
            Box::new(m20250101_000005_index_events_by_email::Migration),
            Box::new(m20250101_000006_create_verify_failures::Migration),
            Box::new(m20250101_000007_add_token_purpose::Migration),
            Box::new(m20250101_000008_create_password_history::Migration),
            Box::new(m20250101_000009_add_login_fields::Migration),
            Box::new(m20250101_000010_index_live_tokens::Migration),
        ]
    }
}
