//! The reset flow: request a token for an e-mail, validate it, exchange it for a new
//! password. What a caller sees never depends on whether the account exists.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{Span, info};
use uuid::Uuid;

use super::ClientInfo;
use super::clock::SharedClock;
use super::email::Email;
use super::error::{Error, Result};
use super::hasher::Hasher;
use super::limits::{Limits, Rpc};
use super::password::{Password, PasswordPolicy};
use super::token::{RawToken, TokenDigester, TokenPolicy};
use crate::events::bus::EventBus;
use crate::events::seal::Sealer;
use crate::store::{Confirmation, EventKind, NewToken, Store, StoredEvent, TokenRecord};

/// BCP 47 tags are short; anything longer is refused.
pub const MAX_LOCALE_BYTES: usize = 35;
/// Attempts at a fresh token when a generated one collides with a stored digest
/// (only plausible with short numeric codes).
const TOKEN_ATTEMPTS: usize = 5;

pub struct ResetService {
    pub(crate) store: Store,
    pub(crate) hasher: Arc<Hasher>,
    pub(crate) digester: TokenDigester,
    pub(crate) sealer: Sealer,
    pub(crate) tokens: TokenPolicy,
    pub(crate) passwords: PasswordPolicy,
    pub(crate) clock: SharedClock,
    pub(crate) bus: EventBus,
    pub(crate) limits: Arc<Limits>,
    /// How long events stay replayable.
    pub(crate) event_retention: Duration,
    /// Record `ResetRequestedForUnknownEmail` for addresses with no account.
    pub(crate) emit_unknown_account_events: bool,
}

fn parse_locale(locale: String) -> Result<String> {
    let ok =
        locale.len() <= MAX_LOCALE_BYTES && locale.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(locale) } else { Err(Error::invalid("locale", "must be a BCP 47 tag such as en-GB")) }
}

impl ResetService {
    /// Creates a token and its `TokenCreated` event if `email` names an active account
    /// that may reset; otherwise does nothing. Either way the answer is the same.
    pub async fn request_token(&self, email: &str, locale: String, client: &ClientInfo) -> Result<()> {
        self.limits.check(Rpc::RequestToken, client)?;
        let email = Email::parse(email)?;
        let locale = parse_locale(locale)?;
        let record = self.store.account_by_email(&email).await?;
        if record.is_none() && self.emit_unknown_account_events {
            self.record_unknown_email(&email, locale.clone(), client).await?;
        }
        let eligible = record.filter(|r| {
            r.account.active && (r.account.has_usable_password || self.tokens.allow_without_usable_password)
        });
        let Some(record) = eligible else {
            info!(outcome = "no_eligible_account", client_ip = %client.ip_string(), user_agent = %client.user_agent, "reset requested");
            return Ok(());
        };
        let account = record.account;
        for _ in 0..TOKEN_ATTEMPTS {
            let token = self.tokens.generator.generate()?;
            let now = self.clock.now();
            let expires_at = now + self.tokens.ttl;
            let id = Uuid::now_v7();
            let new_token = NewToken {
                id,
                account_id: account.id,
                digest: self.digester.digest(&token),
                created_at: now,
                expires_at,
                client_ip: client.ip_string(),
                user_agent: client.user_agent.clone(),
            };
            let event = StoredEvent {
                sequence: 0,
                occurred_at: now,
                kind: EventKind::TokenCreated,
                account_id: account.id,
                email: account.email.as_str().to_owned(),
                token_id: Some(id),
                sealed_token: Some(self.sealer.seal(token.expose(), id.as_bytes())?),
                expires_at: Some(expires_at),
                client_ip: client.ip_string(),
                user_agent: client.user_agent.clone(),
                locale: locale.clone(),
                retain_until: self.retain_until(now, Some(expires_at)),
            };
            match self.store.insert_token(new_token, event).await? {
                Some(sequence) => {
                    self.bus.published(sequence);
                    info!(outcome = "token_created", account_id = %account.id, client_ip = %client.ip_string(), user_agent = %client.user_agent, "reset requested");
                    return Ok(());
                }
                None => continue,
            }
        }
        Err(Error::Internal(anyhow::anyhow!("could not generate a unique token in {TOKEN_ATTEMPTS} attempts")))
    }

    async fn record_unknown_email(&self, email: &Email, locale: String, client: &ClientInfo) -> Result<()> {
        let now = self.clock.now();
        let event = StoredEvent {
            sequence: 0,
            occurred_at: now,
            kind: EventKind::ResetRequestedForUnknownEmail,
            account_id: Uuid::nil(),
            email: email.as_str().to_owned(),
            token_id: None,
            sealed_token: None,
            expires_at: None,
            client_ip: client.ip_string(),
            user_agent: client.user_agent.clone(),
            locale,
            retain_until: self.retain_until(now, None),
        };
        self.bus.published(self.store.record_event(event).await?);
        Ok(())
    }

    /// The expiry of a live token.
    pub async fn validate_token(&self, token: RawToken, client: &ClientInfo) -> Result<DateTime<Utc>> {
        self.limits.check(Rpc::ValidateToken, client)?;
        let record = self.live_token(&token).await?;
        Ok(record.expires_at)
    }

    /// Sets a new password with a live token. A password that fails the policy leaves
    /// the token usable.
    pub async fn confirm(&self, token: RawToken, password: Password, client: &ClientInfo) -> Result<()> {
        self.limits.check(Rpc::Confirm, client)?;
        let record = self.live_token(&token).await?;
        let account = match self.store.account_by_id(record.account_id).await? {
            Some(a) if a.account.active => a.account,
            _ => return Err(Error::TokenNotFound),
        };
        Span::current().record("account_id", tracing::field::display(account.id));
        let password = self.passwords.check(&password, &account.email, "new_password")?;
        let password_hash = self.hasher.hash(password).await?;
        let now = self.clock.now();
        let event = StoredEvent {
            sequence: 0,
            occurred_at: now,
            kind: EventKind::PasswordChanged,
            account_id: account.id,
            email: account.email.as_str().to_owned(),
            token_id: None,
            sealed_token: None,
            expires_at: None,
            client_ip: client.ip_string(),
            user_agent: client.user_agent.clone(),
            locale: String::new(),
            retain_until: self.retain_until(now, None),
        };
        let confirmation = Confirmation { token_id: record.id, account_id: account.id, password_hash, now };
        let result = self.store.confirm(confirmation, event).await;
        let outcome = match &result {
            Ok(_) => "password_changed",
            Err(Error::TokenNotFound) => "lost_race",
            Err(_) => "error",
        };
        info!(outcome, account_id = %account.id, client_ip = %client.ip_string(), user_agent = %client.user_agent, "reset confirmed");
        self.bus.published(result?);
        Ok(())
    }

    /// Finds a live token; any other state is the same `TokenNotFound`, with the reason
    /// only in the span. An expired token presented is deleted.
    async fn live_token(&self, token: &RawToken) -> Result<TokenRecord> {
        let Some(record) = self.store.token_by_digests(&self.digester.candidates(token)).await? else {
            Span::current().record("token_state", "unknown");
            return Err(Error::TokenNotFound);
        };
        match record.refusal(self.clock.now()) {
            None => Ok(record),
            Some(reason) => {
                Span::current().record("token_state", reason);
                if reason == "expired" {
                    self.store.discard_token(record.id).await?;
                }
                Err(Error::TokenNotFound)
            }
        }
    }

    fn retain_until(&self, now: DateTime<Utc>, expires_at: Option<DateTime<Utc>>) -> DateTime<Utc> {
        let window = now + self.event_retention;
        expires_at.map_or(window, |e| e.max(window))
    }

    /// Deletes expired tokens and events past retention; returns the counts.
    pub async fn purge(&self) -> Result<crate::store::PurgeCounts> {
        self.store.purge(self.clock.now()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_must_be_a_short_tag() {
        assert!(parse_locale(String::new()).is_ok());
        assert!(parse_locale("en-GB".into()).is_ok());
        assert!(parse_locale("en GB".into()).is_err());
        assert!(parse_locale("x".repeat(36)).is_err());
    }
}
