//! The reset flow: request a token for an e-mail, validate it, exchange it for a new
//! password. What a caller sees never depends on whether the account exists.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::{Span, info};

use super::ClientInfo;
use super::cache::TokenCache;
use super::clock::SharedClock;
use super::email::Email;
use super::error::{Error, Result};
use super::guard::FailureGuard;
use super::hasher::Hasher;
use super::limits::{Limits, Rpc};
use super::password::{Password, PasswordPolicy};
use super::token::{RawToken, TokenDigester};
use super::writer::{Job, retain_until};
use crate::events::bus::EventBus;
use crate::store::{Confirmation, EventKind, Store, StoredEvent, TokenRecord};

/// BCP 47 tags are short; anything longer is refused.
pub const MAX_LOCALE_BYTES: usize = 35;

pub struct ResetService {
    pub(crate) store: Store,
    pub(crate) hasher: Arc<Hasher>,
    pub(crate) digester: TokenDigester,
    pub(crate) cache: Arc<TokenCache>,
    pub(crate) passwords: PasswordPolicy,
    pub(crate) clock: SharedClock,
    pub(crate) bus: EventBus,
    pub(crate) limits: Arc<Limits>,
    /// How long events stay replayable.
    pub(crate) event_retention: Duration,
    /// Token work, group-committed; requests wait for it.
    pub(crate) writer: mpsc::Sender<Job>,
    /// Bounds the reset requests in flight.
    pub(crate) pending: Arc<Semaphore>,
    pub(crate) max_pending: u32,
    /// How long a request waits for a permit before it is refused.
    pub(crate) queue_wait: Duration,
    /// A completed reset clears the address's failed password checks.
    pub(crate) guard: Arc<FailureGuard>,
}

fn parse_locale(locale: String) -> Result<String> {
    let ok =
        locale.len() <= MAX_LOCALE_BYTES && locale.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(locale) } else { Err(Error::invalid("locale", "must be a BCP 47 tag such as en-GB")) }
}

impl ResetService {
    /// Creates a token and its `TokenCreated` event if `email` names an active account
    /// that may reset; otherwise does nothing. Either way the answer is the same, and so
    /// is the time it takes: every request goes to the
    /// [`TokenWriter`](super::writer::TokenWriter), which looks up a whole batch's
    /// addresses in one query and commits the batch at once. An OK is given only once
    /// the work is committed.
    pub async fn request_token(&self, email: &str, locale: String, client: &ClientInfo) -> Result<()> {
        self.limits.check(Rpc::RequestToken, client)?;
        let email = Email::parse(email)?;
        let locale = parse_locale(locale)?;
        // Taken for every address, so a full queue answers the same for all of them.
        let permit = self.permit().await?;
        let (done, committed) = oneshot::channel();
        let job = Job { email, locale, client: client.clone(), permit, span: Span::current(), done };
        // Never full: the permit bounds the jobs in flight below the queue's capacity.
        self.writer.try_send(job).map_err(|_| Error::ResetBusy)?;
        committed.await.map_err(|_| Error::Unavailable(anyhow::anyhow!("the token writer stopped")))?
    }

    /// Room for one more request in flight, waiting up to `queue_wait` for it: a burst
    /// that outruns the writer is slowed down to its pace (callers wait rather than
    /// spin on refusals); beyond that it is refused.
    async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.pending).try_acquire_owned() {
            return Ok(permit);
        }
        match tokio::time::timeout(self.queue_wait, Arc::clone(&self.pending).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(Error::ResetBusy),
        }
    }

    /// Waits until the token work of requests in flight is written (at shutdown).
    pub async fn drain(&self) {
        let _ = self.pending.acquire_many(self.max_pending).await;
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
            retain_until: retain_until(now, self.event_retention, None),
        };
        let confirmation = Confirmation { token_id: record.id, account_id: account.id, password_hash, now };
        let result = self.store.confirm(confirmation, event).await;
        // Whether it won or lost the race, the account's tokens changed.
        self.cache.forget(account.id, None);
        let outcome = match &result {
            Ok(_) => "password_changed",
            Err(Error::TokenNotFound) => "lost_race",
            Err(_) => "error",
        };
        metrics::counter!("pwreset_confirms_total", "outcome" => outcome).increment(1);
        info!(outcome, account_id = %account.id, client_ip = %client.ip_string(), user_agent = %client.user_agent, "reset confirmed");
        self.bus.published(result?);
        if let Err(e) = self.guard.clear(&account.email).await {
            tracing::warn!(error = %e, "the password changed but its failed checks stay counted");
        }
        Ok(())
    }

    /// Finds a live token, in this replica's cache or else in the database; any other
    /// state is the same `TokenNotFound`, with the reason only in the span. An expired
    /// token presented is deleted.
    async fn live_token(&self, token: &RawToken) -> Result<TokenRecord> {
        let digest = self.digester.digest(token);
        if let Some(record) = self.cache.get(&digest) {
            metrics::counter!("pwreset_token_cache_total", "result" => "hit").increment(1);
            return Ok(record);
        }
        metrics::counter!("pwreset_token_cache_total", "result" => "miss").increment(1);
        let epoch = self.cache.epoch();
        let Some(record) = self.store.token_by_digests(&self.digester.candidates(digest.clone(), token)).await? else {
            Span::current().record("token_state", "unknown");
            return Err(Error::TokenNotFound);
        };
        match record.refusal(self.clock.now()) {
            None => {
                self.cache.insert_read(epoch, &digest, &record);
                Ok(record)
            }
            Some(reason) => {
                Span::current().record("token_state", reason);
                if reason == "expired" {
                    self.store.discard_token(record.id).await?;
                }
                Err(Error::TokenNotFound)
            }
        }
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
