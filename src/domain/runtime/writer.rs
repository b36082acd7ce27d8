//! The token writer: creates the tokens and events that reset requests lead to, with
//! group commit. A request is answered only once its batch has committed, so an OK
//! means the work is durable: a crash after the reply loses nothing.
//!
//! One task per process drains a queue of requests and writes up to [`MAX_BATCH`] of
//! them in one transaction with a fixed number of set-based statements, so a burst
//! costs one commit (one fsync) and a handful of statements rather than several of each
//! per request, and the connection pool stays free for readers. Requests that lead to
//! nothing (an unknown or inactive address) wait on the same commit as the others, so
//! every answer takes as long. Tokens written are put in this replica's [`TokenCache`],
//! so validating them soon after needs no read.

use std::collections::HashMap;
use std::time::Duration;

use pwreset_proto::clock;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tracing::{Span, info};

use super::Runtime;
use super::limits::Rate;
use super::mint::Minter;
use super::retry::retry_transient;
use crate::domain::model::email::Email;
use crate::domain::model::error::{Error, Result};
use crate::domain::model::event::{Channel, NewEvent};
use crate::domain::model::login::Login;
use crate::domain::model::persistence::{AccountRecord, BatchEntry, EntryOutcome, TokenCap, Written};
use crate::domain::model::token::{NewToken, TokenPolicy, TokenPurpose, TokenRecord};
use crate::domain::model::{Account, AccountId, ClientInfo, Locale};

/// Most requests written in one transaction.
pub const MAX_BATCH: usize = 256;
/// Fresh tokens tried for a request whose token collides with a stored digest (only
/// plausible with short numeric codes).
const TOKEN_ATTEMPTS: usize = 5;
/// How long a batch is retried after transient failures (a deadlock, a serialization
/// failure, a lost connection, a database restart) before its callers get UNAVAILABLE.
const RETRY_BUDGET: Duration = Duration::from_secs(5);

/// Whether a batch's entries are written together (one set of statements) or one by
/// one (each in a savepoint, to find the ones whose digest is taken).
#[derive(Clone, Copy)]
enum Entries {
    Together,
    OneByOne,
}

/// What a batch's jobs lead to: each job's decision, in order, and the entries to write.
struct Plan {
    decisions: Vec<Decision>,
    entries: Vec<BatchEntry>,
}

struct Decision {
    work: Work,
    /// The index of the job's entry in [`Plan::entries`], if it writes one.
    entry: Option<usize>,
}

/// What a reset request leads to, once its address is looked up.
enum Work {
    /// A token for the account, to go out by the channel the login asks for.
    Token(Account, Channel),
    UnknownEmail(Email),
    /// Nothing is written (the reason is for the audit line); the caller still waits
    /// for the batch's commit, like everyone else.
    Nothing(&'static str),
}

pub struct Job {
    /// What the reset was asked for by: an e-mail, a username or a phone number.
    pub login: Login,
    pub locale: Locale,
    pub client: ClientInfo,
    /// Held until the job is written, bounding requests in flight.
    pub permit: OwnedSemaphorePermit,
    /// The request's span, for the audit line.
    pub span: Span,
    /// Answered once the batch has committed, or has finally failed.
    pub done: oneshot::Sender<Result<()>>,
    /// When the request arrived: the answer floor counts from here.
    pub received: tokio::time::Instant,
}

/// The audit line and the counters of one answered request.
fn audit(job: &Job, work: &Work, written: Option<EntryOutcome>) {
    let outcome = match (work, written) {
        (Work::Nothing(reason), _) => *reason,
        (Work::Token(..), Some(EntryOutcome::Written)) => "token_created",
        (Work::UnknownEmail(_), Some(EntryOutcome::Written)) => "unknown_email_reported",
        (_, Some(EntryOutcome::Capped)) => "account_capped",
        (_, Some(EntryOutcome::Inactive)) => "inactive",
        (_, Some(EntryOutcome::DigestTaken) | None) => "nothing",
    };
    let account_id = match work {
        Work::Token(account, _) => account.id.to_string(),
        Work::UnknownEmail(_) | Work::Nothing(_) => String::new(),
    };
    metrics::counter!("pwreset_reset_requests_total", "outcome" => outcome).increment(1);
    if outcome == "token_created" {
        metrics::counter!("pwreset_tokens_issued_total").increment(1);
    }
    job.span.in_scope(|| {
        info!(outcome, account_id, client_ip = %job.client.ip_string(), user_agent = %job.client.user_agent, "reset requested");
    });
}

impl Job {
    fn finish(self, result: Result<()>) {
        // The caller may have gone (a cancelled call): the work is written all the same.
        let _ = self.done.send(result);
    }
}

/// Answers every job of a batch that could not be written: `UNAVAILABLE` (the caller
/// may retry; nothing was written), with the cause in each request's span.
fn fail_all(jobs: Vec<Job>, error: &Error) {
    let cause = format!("{error:#}");
    for job in jobs {
        job.span.in_scope(|| tracing::error!(error = cause, "reset request failed; answered UNAVAILABLE"));
        job.finish(Err(Error::Unavailable(anyhow::anyhow!("the token batch could not be written"))));
    }
}

/// Answers a committed batch's callers, each not sooner than `floor` after its request
/// arrived. A lone request for a known address costs its batch a little more than one
/// for an unknown address (a token generated, sealed and written); a floor above that
/// cost gives both the same answer time, as the caller measures it (from sending to the
/// answer). Counting from arrival rather than from the batch's start, a request that
/// waited for the previous batch's commit does not wait a whole floor more: under load
/// the commit is later than the floor and nothing waits. The writer goes on with the
/// next batch meanwhile.
fn answer(jobs: Vec<Job>, floor: Duration) {
    let now = clock::monotonic();
    let (due, mut later): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|job| job.received + floor <= now);
    due.into_iter().for_each(|job| job.finish(Ok(())));
    if later.is_empty() {
        return;
    }
    tokio::spawn(async move {
        later.sort_by_key(|job| job.received);
        for job in later {
            clock::pause_until_precisely(job.received + floor).await;
            job.finish(Ok(()));
        }
    });
}

pub struct TokenWriter {
    pub(crate) runtime: Runtime,
    pub(crate) minter: Minter,
    pub(crate) tokens: TokenPolicy,
    pub(crate) account_cap: Option<Rate>,
    /// Record `ResetRequestedForUnknownEmail` for addresses with no account.
    pub(crate) emit_unknown_account_events: bool,
    /// No request is answered sooner than this after it arrived (see `answer`).
    pub(crate) answer_floor: Duration,
}

impl TokenWriter {
    /// Runs until every sender is gone.
    pub async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let mut pending = std::mem::take(&mut batch);
            for _ in 0..TOKEN_ATTEMPTS {
                if pending.is_empty() {
                    break;
                }
                pending = self.write(pending).await;
            }
            for job in pending {
                job.span.in_scope(|| tracing::error!("no unique token in {TOKEN_ATTEMPTS} attempts"));
                job.finish(Err(Error::Internal(anyhow::anyhow!("no unique token"))));
            }
        }
    }

    /// Writes one batch, retrying transient failures, and answers its callers; returns
    /// the jobs to retry with a fresh token.
    async fn write(&self, jobs: Vec<Job>) -> Vec<Job> {
        let started = clock::monotonic();
        metrics::histogram!("pwreset_writer_batch_size").record(jobs.len() as f64);
        let epoch = self.runtime.cache.epoch();
        let written = match self.with_retries(|| self.write_once(&jobs, Entries::Together)).await {
            Ok(None) => self.with_retries(|| self.write_once(&jobs, Entries::OneByOne)).await,
            other => other,
        };
        // Only a write together ends without a result (a taken digest).
        let written = written.and_then(|w| w.ok_or_else(|| Error::Internal(anyhow::anyhow!("no batch result"))));
        let (plan, written) = match written {
            Ok(done) => done,
            Err(e) => {
                fail_all(jobs, &e);
                return Vec::new();
            }
        };
        metrics::histogram!("pwreset_writer_batch_seconds").record(started.elapsed().as_secs_f64());
        self.cache_created(epoch, &plan.entries, &written.outcomes);
        if let Some(sequence) = written.newest {
            self.runtime.bus.published(sequence);
        }
        let mut retry = Vec::new();
        let mut answered = Vec::with_capacity(jobs.len());
        for (job, decision) in jobs.into_iter().zip(plan.decisions) {
            let outcome = decision.entry.and_then(|i| written.outcomes.get(i).copied());
            if outcome == Some(EntryOutcome::DigestTaken) {
                retry.push(job);
                continue;
            }
            audit(&job, &decision.work, outcome);
            answered.push(job);
        }
        answer(answered, self.answer_floor);
        retry
    }

    /// One transaction for the batch, top to bottom: look up its logins (under the
    /// outbox lock, so nothing seen can change before the commit), decide what each job
    /// leads to, write, commit. `None` when written together and a digest was taken
    /// (everything rolled back).
    async fn write_once(&self, jobs: &[Job], entries: Entries) -> Result<Option<(Plan, Written)>> {
        let logins: Vec<&Login> = jobs.iter().map(|j| &j.login).collect();
        let caps_on = self.account_cap.is_some();
        let mut batch = self.runtime.store.begin_token_batch().await?;
        let accounts = batch.accounts_by_logins(&logins).await?;
        let plan = self.plan(jobs, &accounts)?;
        let written = match entries {
            Entries::Together => match batch.write_together(&plan.entries, caps_on).await? {
                Some(written) => written,
                None => return Ok(None),
            },
            Entries::OneByOne => batch.write_one_by_one(&plan.entries, caps_on).await?,
        };
        batch.commit().await?;
        Ok(Some((plan, written)))
    }

    /// What each job leads to, given the accounts its batch's logins name, and the
    /// entries to write for them. Tokens are made here, fresh for every attempt.
    fn plan(&self, jobs: &[Job], accounts: &[AccountRecord]) -> Result<Plan> {
        let mut by_login: HashMap<Login, &AccountRecord> = HashMap::new();
        for r in accounts {
            let a = &r.account;
            by_login.insert(Login::Email(a.email.clone()), r);
            // Found by its key; a username without one is no login.
            if let Some(username) = a.username.as_ref().filter(|u| u.key().is_some()) {
                by_login.insert(Login::Username(username.clone()), r);
            }
            if let Some(phone) = &a.phone {
                by_login.insert(Login::Phone(phone.clone()), r);
            }
        }
        let mut plan = Plan { decisions: Vec::with_capacity(jobs.len()), entries: Vec::with_capacity(jobs.len()) };
        for job in jobs {
            let work = match (by_login.get(&job.login), &job.login) {
                // Only an e-mail can be told "there is no account here".
                (None, Login::Email(email)) if self.emit_unknown_account_events => Work::UnknownEmail(email.clone()),
                (None, _) => Work::Nothing("no_account"),
                (Some(r), login) => self.work_for(r, login),
            };
            let entry = self.entry_for(job, &work)?.map(|entry| {
                plan.entries.push(entry);
                plan.entries.len() - 1
            });
            plan.decisions.push(Decision { work, entry });
        }
        Ok(plan)
    }

    /// The one place that decides how a token goes out: by text to a phone login,
    /// by e-mail otherwise.
    fn work_for(&self, r: &AccountRecord, login: &Login) -> Work {
        let channel = if matches!(login, Login::Phone(_)) { Channel::Sms } else { Channel::Email };
        match r {
            r if !r.account.active => Work::Nothing("inactive"),
            r if !r.account.has_usable_password && !self.tokens.allow_without_usable_password => {
                Work::Nothing("no_usable_password")
            }
            r => Work::Token(r.account.clone(), channel),
        }
    }

    /// Runs `attempt`, retrying transient failures for up to [`RETRY_BUDGET`]. Each
    /// attempt is one transaction or one read, so a retry never doubles anything.
    async fn with_retries<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let counted = || metrics::counter!("pwreset_writer_retries_total").increment(1);
        retry_transient("token batch", RETRY_BUDGET, counted, attempt).await
    }

    /// Puts each account's newest token written into the cache, after dropping what the
    /// cache held for the account (the write revoked it).
    fn cache_created(&self, epoch: u64, entries: &[BatchEntry], outcomes: &[EntryOutcome]) {
        let mut newest: HashMap<AccountId, &NewToken> = HashMap::new();
        for (entry, _) in entries.iter().zip(outcomes).filter(|(_, o)| **o == EntryOutcome::Written) {
            if let Some(token) = &entry.token {
                newest.insert(token.account_id, token);
            }
        }
        let created: Vec<_> = newest.into_values().map(|t| (&t.digest, TokenRecord::from(t))).collect();
        self.runtime.cache.replace_created(epoch, &created);
    }

    /// The entry a job's work writes: a token and its event, or the report of an
    /// unknown address; none for nothing.
    fn entry_for(&self, job: &Job, work: &Work) -> Result<Option<BatchEntry>> {
        let now = self.runtime.clock.now();
        let client = &job.client;
        // Reports for an unknown address share the account cap's rate: otherwise anyone
        // could have the notifier mail an address without end.
        let cap = self.account_cap.map(|rate| TokenCap { max: rate.count.get(), since: now - rate.period });
        match work {
            Work::Token(account, channel) => {
                let (purpose, ttl) = (TokenPurpose::PasswordReset, self.tokens.ttl);
                let (raw, token) = self.minter.mint(account, purpose, now, ttl, client, *channel)?;
                let event = self.minter.announce(account, &token, &raw, &job.locale, *channel)?;
                Ok(Some(BatchEntry { token: Some(token), event, cap }))
            }
            Work::UnknownEmail(email) => {
                let retention = self.minter.event_retention();
                let event = NewEvent::unknown_email(now, retention, email, client, job.locale.as_str());
                Ok(Some(BatchEntry { token: None, event, cap }))
            }
            Work::Nothing(_) => Ok(None),
        }
    }
}
