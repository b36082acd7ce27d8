//! Schema migrations for pwreset, applied by `pwreset serve` at start and by
//! `pwreset migrate`. One change per file; never edit a released migration.

use std::sync::OnceLock;

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
mod m20250101_000011_username_skeletons;

/// The service's username rule, for migrations that key existing usernames: the key
/// (confusable skeleton) of a stored username, `None` if today's rule refuses it.
pub type UsernameKey = fn(&str) -> Option<String>;

static USERNAME_KEY: OnceLock<UsernameKey> = OnceLock::new();

/// Hands the service's username rule to the migrations (the rule lives in the service,
/// once); call before migrating. Later calls are ignored.
pub fn set_username_key(rule: UsernameKey) {
    let _ = USERNAME_KEY.set(rule);
}

fn username_key() -> Result<UsernameKey, DbErr> {
    USERNAME_KEY
        .get()
        .copied()
        .ok_or_else(|| DbErr::Migration("the username rule was not handed in (migrate with `pwreset migrate`)".into()))
}

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
            Box::new(m20250101_000011_username_skeletons::Migration),
        ]
    }
}
