//! Making tokens, for every way one is created (a reset request, an admin's
//! `IssueToken`, an invitation at `CreateAccount`): the raw value, the record stored
//! (its digest only) and, for delivery through the event stream, the `TokenCreated`
//! event carrying its sealed copy.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::error::Result;
use super::event::{EventKind, NewEvent};
use super::seal::{Sealer, seal_context};
use super::token::{NewToken, RawToken, TokenDigester, TokenGenerator, TokenPurpose};
use super::{Account, ClientInfo, Locale};

#[derive(Clone)]
pub struct Minter {
    generator: TokenGenerator,
    digester: TokenDigester,
    sealer: Sealer,
    /// How long events stay replayable.
    event_retention: Duration,
}

impl Minter {
    pub fn new(generator: TokenGenerator, digester: TokenDigester, sealer: Sealer, event_retention: Duration) -> Self {
        Minter { generator, digester, sealer, event_retention }
    }

    /// A fresh token for `account`, live for `ttl` from `now`, and the record to store.
    pub fn mint(
        &self,
        account: &Account,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
        ttl: Duration,
        client: &ClientInfo,
    ) -> Result<(RawToken, NewToken)> {
        let raw = self.generator.generate()?;
        // As the database keeps it (to the millisecond), so an answer and its event agree.
        let expires_at = now + ttl;
        let expires_at = DateTime::from_timestamp_millis(expires_at.timestamp_millis()).unwrap_or(expires_at);
        let token = NewToken {
            id: Uuid::now_v7(),
            account_id: account.id,
            digest: self.digester.digest(&raw),
            created_at: now,
            expires_at,
            client_ip: client.ip_string(),
            user_agent: client.user_agent.clone(),
            purpose,
        };
        Ok((raw, token))
    }

    /// The `TokenCreated` event that delivers `raw` to `account`'s owner, sealed to the
    /// event (see [`seal_context`]).
    pub fn announce(&self, account: &Account, token: &NewToken, raw: &RawToken, locale: &Locale) -> Result<NewEvent> {
        let context =
            seal_context(EventKind::TokenCreated, token.id, account.id, account.email.as_str(), token.purpose);
        let sealed = self.sealer.seal(raw.expose(), &context)?;
        Ok(NewEvent::token_created(self.event_retention, account, token, sealed, locale.as_str()))
    }

    pub fn event_retention(&self) -> Duration {
        self.event_retention
    }
}
