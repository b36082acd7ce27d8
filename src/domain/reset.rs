//! The reset flow: request a token for an e-mail, validate it, exchange it for a new
//! password. What a caller sees never depends on whether the account exists.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, info};
use uuid::Uuid;

use super::clock::SharedClock;
use super::email::Email;
use super::error::{Error, Result};
use super::hasher::Hasher;
use super::limits::{Limits, Rate, Rpc};
use super::password::{Password, PasswordPolicy};
use super::token::{RawToken, TokenDigester, TokenPolicy};
use super::{Account, ClientInfo};
use crate::events::bus::EventBus;
use crate::events::seal::Sealer;
use crate::store::{Confirmation, EventKind, Inserted, NewToken, Store, StoredEvent, TokenCap, TokenRecord};

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
    /// At most this many tokens per account per period (silently).
    pub(crate) account_cap: Option<Rate>,
    /// Token work runs here after the reply; waited for at shutdown.
    pub(crate) tracker: TaskTracker,
    /// Bounds the reset requests in flight, including their background work.
    pub(crate) background: Arc<Semaphore>,
}

/// What a reset request leads to once the caller has its answer.
enum Work {
    Token(Account),
    UnknownEmail(Email),
    Nothing(&'static str),
}

fn parse_locale(locale: String) -> Result<String> {
    let ok =
        locale.len() <= MAX_LOCALE_BYTES && locale.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(locale) } else { Err(Error::invalid("locale", "must be a BCP 47 tag such as en-GB")) }
}

impl ResetService {
    /// Creates a token and its `TokenCreated` event if `email` names an active account
    /// that may reset; otherwise does nothing. Either way the answer is the same, and so
    /// is the time it takes: both paths do one account lookup, and the token work runs
    /// after the reply, on a bounded number of background tasks.
    pub async fn request_token(self: &Arc<Self>, email: &str, locale: String, client: &ClientInfo) -> Result<()> {
        self.limits.check(Rpc::RequestToken, client)?;
        let email = Email::parse(email)?;
        let locale = parse_locale(locale)?;
        // Taken for every address, so a full queue answers the same for all of them.
        let permit = Arc::clone(&self.background).try_acquire_owned().map_err(|_| Error::ResetBusy)?;
        let record = self.store.account_by_email(&email).await?;
        let work = match record {
            None if self.emit_unknown_account_events => Work::UnknownEmail(email),
            None => Work::Nothing("no_account"),
            Some(r) if !r.account.active => Work::Nothing("inactive"),
            Some(r) if !r.account.has_usable_password && !self.tokens.allow_without_usable_password => {
                Work::Nothing("no_usable_password")
            }
            Some(r) => Work::Token(r.account),
        };
        if let Work::Nothing(outcome) = work {
            info!(outcome, client_ip = %client.ip_string(), user_agent = %client.user_agent, "reset requested");
            return Ok(());
        }
        let this = Arc::clone(self);
        let client = client.clone();
        let span = Span::current();
        self.tracker.spawn(
            async move {
                let _permit = permit;
                let result = match work {
                    Work::Token(account) => this.create_token(account, locale, &client).await,
                    Work::UnknownEmail(email) => this.record_unknown_email(&email, locale, &client).await,
                    Work::Nothing(_) => Ok(()),
                };
                if let Err(e) = result {
                    tracing::error!(error = format!("{e:#}"), "reset request failed after the reply");
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    async fn create_token(&self, account: Account, locale: String, client: &ClientInfo) -> Result<()> {
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
            let cap = self.account_cap.map(|rate| TokenCap { max: rate.count.get(), since: now - rate.period });
            let outcome = match self.store.insert_token(new_token, event, cap).await? {
                Inserted::Created(sequence) => {
                    self.bus.published(sequence);
                    "token_created"
                }
                Inserted::Capped => "account_capped",
                Inserted::DigestTaken => continue,
            };
            info!(outcome, account_id = %account.id, client_ip = %client.ip_string(), user_agent = %client.user_agent, "reset requested");
            return Ok(());
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
        info!(outcome = "unknown_email_reported", client_ip = %client.ip_string(), user_agent = %client.user_agent, "reset requested");
        Ok(())
    }

    /// Waits for token work still running after replies (at shutdown).
    pub async fn drain(&self) {
        self.tracker.close();
        self.tracker.wait().await;
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
