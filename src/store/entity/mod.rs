//! SeaORM entities, one per table. Times are Unix milliseconds.

pub mod accounts;
pub mod event_retention;
pub mod events;
pub mod password_history;
pub mod reset_tokens;
pub mod verify_failures;
