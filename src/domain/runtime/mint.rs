//! Making tokens, for every way one is created (a reset request, an admin's
//! `IssueToken`, an invitation at `CreateAccount`): the raw value, the record stored
//! (its digest only) and, for delivery through the event stream, the `TokenCreated`
//! event carrying its sealed copy.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::model::error::Result;
use crate::domain::model::event::{Channel, NewEvent, TokenCopy, TokenCreated};
use crate::domain::model::seal::{SealContext, Sealer};
use crate::domain::model::token::{NewToken, RawToken, TokenDigester, TokenGenerator, TokenPurpose};
use crate::domain::model::{Account, ClientInfo, Locale};

#[derive(Clone)]
pub struct Minter {
    generator: TokenGenerator,
    /// Codes texted by SMS (always a numeric range).
    sms_codes: TokenGenerator,
    digester: TokenDigester,
    sealer: Sealer,
    /// How long events stay replayable.
    event_retention: Duration,
}

impl Minter {
    pub fn new(
        generator: TokenGenerator,
        sms_codes: TokenGenerator,
        digester: TokenDigester,
        sealer: Sealer,
        event_retention: Duration,
    ) -> Self {
        Minter { generator, sms_codes, digester, sealer, event_retention }
    }

    /// A fresh token for `account`, live for `ttl` from `now`, to go out by `channel`,
    /// and the record to store. A short code (every SMS code, and the `numeric`
    /// generator's) is digested with its account: it is found only with its login.
    pub fn mint(
        &self,
        account: &Account,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
        ttl: Duration,
        client: &ClientInfo,
        channel: Channel,
    ) -> Result<(RawToken, NewToken)> {
        let generator = match channel {
            Channel::Email => &self.generator,
            Channel::Sms => &self.sms_codes,
        };
        let raw = generator.generate()?;
        let bound = generator.is_numeric();
        let digest = if bound { self.digester.digest_bound(account.id, &raw) } else { self.digester.digest(&raw) };
        // As the database keeps it (to the millisecond), so an answer and its event agree.
        let expires_at = now + ttl;
        let expires_at = DateTime::from_timestamp_millis(expires_at.timestamp_millis()).unwrap_or(expires_at);
        let token = NewToken {
            id: Uuid::now_v7(),
            account_id: account.id,
            digest,
            created_at: now,
            expires_at,
            client_ip: client.ip_string(),
            user_agent: client.user_agent.clone(),
            purpose,
            bound,
        };
        Ok((raw, token))
    }

    /// The `TokenCreated` event that delivers `raw` to `account`'s owner by `channel`,
    /// its copy sealed to the event (see [`SealContext::of`]).
    pub fn announce(
        &self,
        account: &Account,
        token: &NewToken,
        raw: &RawToken,
        locale: &Locale,
        channel: Channel,
    ) -> Result<NewEvent> {
        let mut created = TokenCreated::new(account, token, locale.as_str(), channel);
        created.token = TokenCopy::Sealed(self.sealer.seal_event(raw.expose(), &SealContext::of(&created))?);
        Ok(NewEvent::token_created(self.event_retention, token.created_at, created))
    }

    pub fn event_retention(&self) -> Duration {
        self.event_retention
    }
}
