//! The machinery the services run on: the token writer (group commit), token minting,
//! the argon2 pool, this replica's token cache, the commit signal, per-IP limits, the
//! `VerifyPassword` guard, transient-failure retries and the clock.

pub mod bus;
pub mod cache;
pub mod clock;
pub mod guard;
pub mod hasher;
pub mod limits;
pub mod mint;
pub mod retry;
pub mod writer;

use std::sync::Arc;

use super::model::persistence;
use super::model::token::TokenDigester;

/// What every service runs on, built once and cloned into each: the database, the
/// clock, the commit signal, this replica's token cache and the token digester.
#[derive(Clone)]
pub struct Runtime {
    pub store: persistence::Db,
    pub clock: clock::SharedClock,
    pub bus: bus::EventBus,
    pub cache: Arc<cache::TokenCache>,
    pub digester: TokenDigester,
}
