//! The reset flow: request a token for an e-mail, validate it, exchange it for a new
//! password. What a caller sees never depends on whether the account exists.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::{Span, info};

use super::clock;
use super::error::{Error, Result};
use super::event::{NewEvent, PasswordChangeReason};
use super::guard::FailureGuard;
use super::hasher::Hasher;
use super::history::refuse_reuse;
use super::limits::{Limits, RateLimits, Rpc};
use super::login::Login;
use super::mint::Minter;
use super::password::{Password, PasswordPolicy};
use super::persistence::{Confirmation, PurgeCounts};
use super::token::{RawToken, TokenPolicy, TokenRecord};
use super::writer::{Job, TokenWriter};
use super::{AccountId, ClientInfo, Core, Locale};

pub struct ResetService {
    core: Core,
    hasher: Arc<Hasher>,
    passwords: PasswordPolicy,
    limits: Arc<Limits>,
    /// A completed reset clears the address's failed password checks.
    guard: Arc<FailureGuard>,
    /// How long events stay replayable.
    event_retention: Duration,
    /// Token work, group-committed; requests wait for it.
    writer: mpsc::Sender<Job>,
    /// Bounds the reset requests in flight.
    pending: Arc<Semaphore>,
    max_pending: u32,
    /// How long a request waits for a permit before it is refused.
    queue_wait: Duration,
    /// Failed attempts before an account's live short codes are revoked.
    max_code_attempts: u32,
}

/// The settings the reset flow owns.
pub struct ResetSettings {
    pub tokens: TokenPolicy,
    pub passwords: PasswordPolicy,
    pub limits: RateLimits,
    pub event_retention: Duration,
    pub emit_unknown_account_events: bool,
}

impl ResetService {
    /// The service, with its token writer running (until the service is dropped).
    pub fn start(
        core: Core,
        hasher: Arc<Hasher>,
        limits: Arc<Limits>,
        guard: Arc<FailureGuard>,
        minter: Minter,
        settings: ResetSettings,
    ) -> Self {
        let ResetSettings { tokens, passwords, limits: rates, event_retention, emit_unknown_account_events } = settings;
        let max_code_attempts = tokens.max_code_attempts;
        // The queue holds at most the requests in flight, so sending never finds it full.
        let max_pending = rates.max_pending_resets.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let (writer, jobs) = mpsc::channel(max_pending);
        let token_writer = TokenWriter {
            core: core.clone(),
            minter,
            tokens,
            account_cap: rates.account_tokens,
            emit_unknown_account_events,
            answer_floor: rates.reset_answer_floor,
        };
        tokio::spawn(token_writer.run(jobs));
        ResetService {
            core,
            hasher,
            passwords,
            limits,
            guard,
            event_retention,
            writer,
            pending: Arc::new(Semaphore::new(max_pending)),
            max_pending: u32::try_from(max_pending).unwrap_or(u32::MAX),
            queue_wait: rates.reset_queue_wait,
            max_code_attempts,
        }
    }

    /// Creates a token and its `TokenCreated` event if `email` names an active account
    /// that may reset; otherwise does nothing. Either way the answer is the same, and so
    /// is the time it takes: every request goes to the
    /// [`TokenWriter`](super::writer::TokenWriter), which looks up a whole batch's
    /// addresses in one query and commits the batch at once. An OK is given only once
    /// the work is committed.
    pub async fn request_token(&self, login: Login, locale: Locale, client: &ClientInfo) -> Result<()> {
        let received = clock::monotonic();
        self.limits.check(Rpc::RequestToken, client)?;
        // Every request by phone, known number or not, counts against the global SMS
        // rate (texts cost money): the answer is the same for all of them.
        if matches!(login, Login::Phone(_)) {
            self.limits.check_sms()?;
        }
        // Taken for every address, so a full queue answers the same for all of them.
        let permit = self.permit().await?;
        let (done, committed) = oneshot::channel();
        let job = Job { login, locale, client: client.clone(), permit, span: Span::current(), done, received };
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

    /// A live token's record (its expiry and purpose). A short code needs its `login`.
    pub async fn validate_token(
        &self,
        token: RawToken,
        login: Option<Login>,
        client: &ClientInfo,
    ) -> Result<TokenRecord> {
        self.limits.check(Rpc::ValidateToken, client)?;
        self.live_token(&token, login.as_ref()).await
    }

    /// Sets a new password with a live token. A password that fails the policy leaves
    /// the token usable.
    pub async fn confirm(
        &self,
        token: RawToken,
        login: Option<Login>,
        password: Password,
        client: &ClientInfo,
    ) -> Result<()> {
        self.limits.check(Rpc::Confirm, client)?;
        let record = self.live_token(&token, login.as_ref()).await?;
        let (account, current_hash) = match self.core.store.account_by_id(record.account_id).await? {
            Some(a) if a.account.active => (a.account, a.password_hash),
            _ => return Err(Error::TokenNotFound),
        };
        Span::current().record("account_id", tracing::field::display(account.id));
        let normalised = self.passwords.check(&password, &account.email, "new_password")?;
        let depth = self.passwords.history;
        refuse_reuse(
            &self.hasher,
            &self.core.store,
            account.id,
            current_hash.as_deref(),
            &password,
            depth,
            "new_password",
        )
        .await?;
        let password_hash = self.hasher.hash(normalised).await?;
        let now = self.core.clock.now();
        let reason = PasswordChangeReason::confirming(record.purpose);
        let event = NewEvent::password_changed(now, self.event_retention, &account, client, reason);
        let history_keep = self.passwords.history.saturating_sub(1);
        let confirmation =
            Confirmation { token_id: record.id, account_id: account.id, password_hash, now, history_keep };
        let result = self.core.store.confirm(confirmation, event).await;
        // Whether it won or lost the race, the account's tokens changed.
        self.core.cache.forget(account.id, None);
        let outcome = match &result {
            Ok(_) => "password_changed",
            Err(Error::TokenNotFound) => "lost_race",
            Err(_) => "error",
        };
        metrics::counter!("pwreset_confirms_total", "outcome" => outcome).increment(1);
        info!(outcome, account_id = %account.id, client_ip = %client.ip_string(), user_agent = %client.user_agent, "reset confirmed");
        self.core.bus.published(result?);
        if let Err(e) = self.guard.clear(&account.email).await {
            tracing::warn!(error = %e, "the password changed but its failed checks stay counted");
        }
        Ok(())
    }

    /// Finds a live token, in this replica's cache or else in the database; any other
    /// state is the same `TokenNotFound`, with the reason only in the span. An expired
    /// token presented is deleted.
    ///
    /// With a `login`, the token must be that account's, and a short code (digested with
    /// its account) can be found at all; a failed attempt then counts against the
    /// account's live short codes, which are revoked after `max_code_attempts`.
    async fn live_token(&self, token: &RawToken, login: Option<&Login>) -> Result<TokenRecord> {
        let account = match login {
            Some(login) => self.core.store.account_by_login(login).await?.map(|r| r.account.id),
            None => None,
        };
        let found = self.find_live(token, login.is_some(), account).await;
        if matches!(found, Err(Error::TokenNotFound))
            && let Some(account) = account
        {
            self.count_failed_code_attempt(account).await?;
        }
        found
    }

    async fn find_live(&self, token: &RawToken, with_login: bool, account: Option<AccountId>) -> Result<TokenRecord> {
        let digester = &self.core.digester;
        let plain = digester.digest(token);
        let bound = account.map(|id| digester.digest_bound(id, token));
        // The token must belong to the account the login names, when one is given.
        let belongs = |record: &TokenRecord| !with_login || Some(record.account_id) == account;
        for digest in std::iter::once(&plain).chain(bound.as_ref()) {
            if let Some(record) = self.core.cache.get(digest) {
                metrics::counter!("pwreset_token_cache_total", "result" => "hit").increment(1);
                if !belongs(&record) {
                    Span::current().record("token_state", "other_login");
                    return Err(Error::TokenNotFound);
                }
                return Ok(record);
            }
        }
        metrics::counter!("pwreset_token_cache_total", "result" => "miss").increment(1);
        let epoch = self.core.cache.epoch();
        let mut candidates = digester.candidates(plain.clone(), token);
        if let Some(id) = account {
            candidates.extend(digester.candidates_bound(id, token));
        }
        let Some(record) = self.core.store.token_by_digests(&candidates).await? else {
            Span::current().record("token_state", "unknown");
            return Err(Error::TokenNotFound);
        };
        if !belongs(&record) {
            Span::current().record("token_state", "other_login");
            return Err(Error::TokenNotFound);
        }
        match record.refusal(self.core.clock.now()) {
            None => {
                let key = match (&bound, record.bound) {
                    (Some(bound), true) => bound,
                    _ => &plain,
                };
                self.core.cache.insert_read(epoch, key, &record);
                Ok(record)
            }
            Some(reason) => {
                Span::current().record("token_state", reason);
                if reason == "expired" {
                    self.core.store.discard_token(record.id).await?;
                }
                Err(Error::TokenNotFound)
            }
        }
    }

    /// Counts a failed attempt against the account's live short codes, revoking them
    /// at the cap (in the database: the count holds across replicas).
    async fn count_failed_code_attempt(&self, account: AccountId) -> Result<()> {
        let max = self.max_code_attempts;
        if self.core.store.count_code_failure(account, max, self.core.clock.now()).await? {
            self.core.cache.forget(account, None);
            metrics::counter!("pwreset_codes_revoked_total").increment(1);
            tracing::warn!(account_id = %account, max, "a short code was revoked after its failed attempts");
        }
        Ok(())
    }

    /// This replica's token cache (dropped from by other replicas' notifications).
    pub fn cache(&self) -> &Arc<super::cache::TokenCache> {
        &self.core.cache
    }

    /// Deletes expired tokens, events past retention and password history beyond
    /// `--password-history`; returns the counts of the first two.
    pub async fn purge(&self) -> Result<PurgeCounts> {
        self.core.store.trim_password_histories(self.passwords.history.saturating_sub(1)).await?;
        self.core.store.purge(self.core.clock.now()).await
    }
}
