//! The reset flow: request a token for an e-mail, validate it, exchange it for a new
//! password. What a caller sees never depends on whether the account exists.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pwreset_proto::clock;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::{Instrument, Span, info};
use uuid::Uuid;

use super::history::refuse_reuse;
use crate::domain::model::error::{Error, Result};
use crate::domain::model::event::{NewEvent, PasswordChangeReason};
use crate::domain::model::login::Login;
use crate::domain::model::password::{Password, PasswordPolicy};
use crate::domain::model::persistence::{AccountStore, Confirmation, EventStore, PurgeCounts};
use crate::domain::model::token::{RawToken, TokenPolicy, TokenRecord};
use crate::domain::model::{AccountId, ClientInfo, Locale};
use crate::domain::runtime::Runtime;
use crate::domain::runtime::guard::FailureGuard;
use crate::domain::runtime::hasher::Hasher;
use crate::domain::runtime::limits::{Limits, RateLimits, Rpc};
use crate::domain::runtime::mint::Minter;
use crate::domain::runtime::writer::{Job, TokenWriter};

pub struct ResetService {
    runtime: Runtime,
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
    /// Bounds the checks of tokens presented with a login in flight (each runs to its
    /// end on a task of its own, whatever becomes of its call), as many as `pending`.
    checks: Arc<Semaphore>,
    max_pending: u32,
    /// How long a request waits for a permit before it is refused.
    queue_wait: Duration,
    /// Failed attempts before an account's live short codes are revoked.
    max_code_attempts: u32,
    /// No token presented with a login is answered sooner than this after the call
    /// began (the same floor as reset requests').
    answer_floor: Duration,
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
        runtime: Runtime,
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
            runtime: runtime.clone(),
            minter,
            tokens,
            account_cap: rates.account_tokens,
            emit_unknown_account_events,
            answer_floor: rates.reset_answer_floor,
        };
        tokio::spawn(token_writer.run(jobs));
        ResetService {
            runtime,
            hasher,
            passwords,
            limits,
            guard,
            event_retention,
            writer,
            pending: Arc::new(Semaphore::new(max_pending)),
            checks: Arc::new(Semaphore::new(max_pending)),
            max_pending: u32::try_from(max_pending).unwrap_or(u32::MAX),
            queue_wait: rates.reset_queue_wait,
            max_code_attempts,
            answer_floor: rates.reset_answer_floor,
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
        let permit = wait_for_permit(&self.pending, self.queue_wait).await?;
        let (done, committed) = oneshot::channel();
        let job = Job { login, locale, client: client.clone(), permit, span: Span::current(), done, received };
        // Never full: the permit bounds the jobs in flight below the queue's capacity.
        self.writer.try_send(job).map_err(|_| Error::ResetBusy)?;
        committed.await.map_err(|_| Error::Unavailable(anyhow::anyhow!("the token writer stopped")))?
    }

    /// Waits until the token work of requests in flight is written and the code checks
    /// in flight are done (at shutdown).
    pub async fn drain(&self) {
        let _ = self.pending.acquire_many(self.max_pending).await;
        let _ = self.checks.acquire_many(self.max_pending).await;
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
        let (account, current_hash) = match self.runtime.store.account_by_id(record.account_id).await? {
            Some(a) if a.account.active => (a.account, a.password_hash),
            _ => return Err(Error::TokenNotFound),
        };
        Span::current().record("account_id", tracing::field::display(account.id));
        let normalised = self.passwords.check(&password, &account.email, "new_password")?;
        let depth = self.passwords.history;
        refuse_reuse(
            &self.hasher,
            &self.runtime.store,
            account.id,
            current_hash.as_deref(),
            &password,
            depth,
            "new_password",
        )
        .await?;
        let password_hash = self.hasher.hash(normalised).await?;
        let now = self.runtime.clock.now();
        let reason = PasswordChangeReason::confirming(record.purpose);
        let event = NewEvent::password_changed(now, self.event_retention, &account, client, reason);
        let history_keep = self.passwords.history.saturating_sub(1);
        let confirmation =
            Confirmation { token_id: record.id, account_id: account.id, password_hash, now, history_keep };
        let result = self.runtime.store.confirm(confirmation, event).await;
        // Whether it won or lost the race, the account's tokens changed.
        self.runtime.cache.forget(account.id, None);
        let outcome = match &result {
            Ok(_) => "password_changed",
            Err(Error::TokenNotFound) => "lost_race",
            Err(_) => "error",
        };
        metrics::counter!("pwreset_confirms_total", "outcome" => outcome).increment(1);
        info!(outcome, account_id = %account.id, client_ip = %client.ip_string(), user_agent = %client.user_agent, "reset confirmed");
        self.runtime.bus.published(result?);
        if let Err(e) = self.guard.clear(&account.email).await {
            tracing::warn!(error = %e, "the password changed but its failed checks stay counted");
        }
        Ok(())
    }

    /// Finds a live token; any other state is the same `TokenNotFound`, with the reason
    /// only in the span.
    ///
    /// Without a login only long tokens can be found. With a `login`, the token must be
    /// that account's, and a short code (digested with its account) can be found too:
    /// that check is a [`CodeCheck`], run on a task of its own so that a dropped call
    /// (a client deadline, a cancellation) cannot stop it between counting the attempt
    /// and looking the code up, and answered no sooner than the answer floor after the
    /// call began, whether or not the login names an account.
    async fn live_token(&self, token: &RawToken, login: Option<&Login>) -> Result<TokenRecord> {
        let Some(login) = login else { return find_live(&self.runtime, token, None).await };
        let began = clock::monotonic();
        // Waiting for room is cancellable: nothing is counted or looked up yet.
        let permit = wait_for_permit(&self.checks, self.queue_wait).await?;
        let check = CodeCheck {
            runtime: self.runtime.clone(),
            max_attempts: self.max_code_attempts,
            token: token.clone(),
            login: login.clone(),
        };
        let span = Span::current();
        let checked = tokio::spawn(
            async move {
                let outcome = check.run().await;
                drop(permit);
                outcome
            }
            .instrument(span),
        );
        let outcome =
            checked.await.unwrap_or_else(|_| Err(Error::Unavailable(anyhow::anyhow!("a code check stopped"))));
        clock::pause_until_precisely(began + self.answer_floor).await;
        outcome
    }

    /// This replica's token cache (dropped from by other replicas' notifications).
    pub fn cache(&self) -> &Arc<crate::domain::runtime::cache::TokenCache> {
        &self.runtime.cache
    }

    /// Deletes expired tokens, events past retention and password history beyond
    /// `--password-history`; returns the counts of the first two.
    pub async fn purge(&self) -> Result<PurgeCounts> {
        purge(&*self.runtime.store, self.runtime.clock.now(), self.passwords.history).await
    }
}

/// The sweep, as the server runs it and `pwreset purge` does once: previous hashes
/// beyond the `password_history` that new passwords are compared with (the current
/// hash is one of them), expired tokens with their sealed copies, and events past
/// retention.
pub async fn purge<S>(store: &S, now: DateTime<Utc>, password_history: u32) -> Result<PurgeCounts>
where
    S: AccountStore + EventStore + ?Sized,
{
    store.trim_password_histories(password_history.saturating_sub(1)).await?;
    store.purge(now).await
}

/// An account id no token has: a login that names no account is checked against it, so
/// that it runs the same statements as one that does (the time taken must not tell
/// which logins exist).
const NO_ACCOUNT: Uuid = Uuid::nil();

/// A token presented with a login: counted against the account's live short codes
/// *before* it is looked up, so that a guess that was looked up is a guess that counted
/// (however the call ends), and of N racing guesses at most `max_attempts` are ever
/// evaluated against one code. The right token gives its attempt back; the failure that
/// used a code's last attempt revokes it.
struct CodeCheck {
    runtime: Runtime,
    max_attempts: u32,
    token: RawToken,
    login: Login,
}

impl CodeCheck {
    async fn run(self) -> Result<TokenRecord> {
        let store = &self.runtime.store;
        let account = store.account_by_login(&self.login).await?.map(|r| r.account.id);
        let subject = account.unwrap_or(AccountId::from_uuid(NO_ACCOUNT));
        let reserved = store.reserve_code_attempts(subject, self.max_attempts, self.runtime.clock.now()).await?;
        let ids: Vec<Uuid> = reserved.iter().map(|a| a.token_id).collect();
        let owner = Owner { account, subject, reserved: &ids };
        let found = find_live(&self.runtime, &self.token, Some(owner)).await;
        match &found {
            Err(Error::TokenNotFound) => {
                let spent: Vec<Uuid> =
                    reserved.iter().filter(|a| a.count >= self.max_attempts).map(|a| a.token_id).collect();
                if !spent.is_empty() {
                    self.revoke(subject, &spent).await;
                }
            }
            // The right token, or nothing evaluated (the look-up failed): not a failure.
            Ok(_) | Err(_) => {
                if let Err(e) = store.release_code_attempts(&ids).await {
                    tracing::warn!(error = %e, "an attempt that was not a failure stays counted");
                }
            }
        }
        found
    }

    /// Revokes the codes whose last attempt just failed. They are dead already (no
    /// attempt past the cap is granted), so a failure here changes no answer; this
    /// ends them for good, with their sealed copies and other replicas' caches.
    async fn revoke(&self, account: AccountId, codes: &[Uuid]) {
        let max = self.max_attempts;
        match self.runtime.store.revoke_codes(account, codes, self.runtime.clock.now()).await {
            Ok(true) => {
                self.runtime.cache.forget(account, None);
                metrics::counter!("pwreset_codes_revoked_total").increment(1);
                tracing::warn!(account_id = %account, max, "a short code was revoked after its failed attempts");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, account_id = %account, "a spent short code stays unrevoked"),
        }
    }
}

/// Whose token a look-up with a login may find.
#[derive(Clone, Copy)]
struct Owner<'a> {
    /// The account the login names, if any: the token must be its.
    account: Option<AccountId>,
    /// The account short codes are digested with (a placeholder when there is none).
    subject: AccountId,
    /// The short codes an attempt was counted against: no other may be found.
    reserved: &'a [Uuid],
}

/// Finds a live token, in this replica's cache or else in the database; any other state
/// is the same `TokenNotFound`, with the reason only in the span. An expired token
/// presented is deleted.
async fn find_live(runtime: &Runtime, token: &RawToken, owner: Option<Owner<'_>>) -> Result<TokenRecord> {
    let digester = &runtime.digester;
    let plain = digester.digest(token);
    let bound = owner.map(|o| digester.digest_bound(o.subject, token));
    // The token must belong to the account the login names, when one is given, and a
    // short code is found only under an attempt counted against it.
    let refusal = |record: &TokenRecord| match owner {
        Some(o) if o.account != Some(record.account_id) => Some("other_login"),
        _ if record.bound && !owner.is_some_and(|o| o.reserved.contains(&record.id)) => Some("no_attempt_left"),
        _ => None,
    };
    for digest in std::iter::once(&plain).chain(bound.as_ref()) {
        if let Some(record) = runtime.cache.get(digest) {
            metrics::counter!("pwreset_token_cache_total", "result" => "hit").increment(1);
            if let Some(reason) = refusal(&record) {
                Span::current().record("token_state", reason);
                return Err(Error::TokenNotFound);
            }
            return Ok(record);
        }
    }
    metrics::counter!("pwreset_token_cache_total", "result" => "miss").increment(1);
    let epoch = runtime.cache.epoch();
    let mut candidates = digester.candidates(plain.clone(), token);
    if let Some(o) = owner {
        candidates.extend(digester.candidates_bound(o.subject, token));
    }
    let Some(record) = runtime.store.token_by_digests(&candidates).await? else {
        Span::current().record("token_state", "unknown");
        return Err(Error::TokenNotFound);
    };
    if let Some(reason) = refusal(&record) {
        Span::current().record("token_state", reason);
        return Err(Error::TokenNotFound);
    }
    match record.refusal(runtime.clock.now()) {
        None => {
            let key = match (&bound, record.bound) {
                (Some(bound), true) => bound,
                _ => &plain,
            };
            runtime.cache.insert_read(epoch, key, &record);
            Ok(record)
        }
        Some(reason) => {
            Span::current().record("token_state", reason);
            if reason == "expired" {
                runtime.store.discard_token(record.id).await?;
            }
            Err(Error::TokenNotFound)
        }
    }
}

/// Room for one more among `slots`, waiting up to `wait` for it: a burst is slowed
/// down to the pace of the work (callers wait rather than spin on refusals); beyond
/// that it is refused.
async fn wait_for_permit(slots: &Arc<Semaphore>, wait: Duration) -> Result<OwnedSemaphorePermit> {
    if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
        return Ok(permit);
    }
    match tokio::time::timeout(wait, Arc::clone(slots).acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) | Err(_) => Err(Error::ResetBusy),
    }
}
