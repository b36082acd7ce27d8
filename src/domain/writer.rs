//! The token writer: creates the tokens and events that reset requests lead to, after
//! their callers have had their answer, with group commit.
//!
//! One task per process drains a queue of requests and writes up to [`MAX_BATCH`] of
//! them in one transaction with a fixed number of set-based statements, so a burst
//! costs one commit (one fsync) and a handful of statements rather than several of each
//! per request, and the connection pool stays free for readers. Tokens written are put
//! in this replica's [`TokenCache`], so validating them soon after needs no read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::{Span, info};
use uuid::Uuid;

use super::cache::TokenCache;
use super::clock::SharedClock;
use super::email::Email;
use super::error::Result;
use super::limits::Rate;
use super::token::{TokenDigester, TokenPolicy};
use super::{Account, ClientInfo};
use crate::events::bus::EventBus;
use crate::events::seal::Sealer;
use crate::store::{EventKind, Inserted, NewToken, OutboxWrite, Store, StoredEvent, TokenCap, TokenRecord};

/// Most requests written in one transaction.
pub const MAX_BATCH: usize = 256;
/// Fresh tokens tried for a request whose token collides with a stored digest (only
/// plausible with short numeric codes).
const TOKEN_ATTEMPTS: usize = 5;

/// What a reset request leads to once its caller has the answer.
pub enum Work {
    Token(Account),
    UnknownEmail(Email),
}

pub struct Job {
    pub work: Work,
    pub locale: String,
    pub client: ClientInfo,
    /// Held until the job is written, bounding requests in flight.
    pub permit: OwnedSemaphorePermit,
    /// The request's span, for the audit line written after the reply.
    pub span: Span,
}

/// How long an event stays replayable: the retention window, and a `TokenCreated` at
/// least until its token expires.
pub fn retain_until(now: DateTime<Utc>, retention: Duration, expires_at: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let window = now + retention;
    expires_at.map_or(window, |e| e.max(window))
}

pub struct TokenWriter {
    pub(crate) store: Store,
    pub(crate) digester: TokenDigester,
    pub(crate) cache: Arc<TokenCache>,
    pub(crate) sealer: Sealer,
    pub(crate) tokens: TokenPolicy,
    pub(crate) clock: SharedClock,
    pub(crate) bus: EventBus,
    pub(crate) account_cap: Option<Rate>,
    pub(crate) event_retention: Duration,
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
                pending = match self.write(pending).await {
                    Ok(retry) => retry,
                    Err((e, lost)) => {
                        for job in &lost {
                            job.span.in_scope(|| {
                                tracing::error!(error = format!("{e:#}"), "reset request lost after the reply");
                            });
                        }
                        Vec::new()
                    }
                };
            }
            for job in &pending {
                job.span.in_scope(|| tracing::error!("no unique token in {TOKEN_ATTEMPTS} attempts"));
            }
        }
    }

    /// Writes one batch; returns the jobs to retry with a fresh token.
    async fn write(&self, jobs: Vec<Job>) -> std::result::Result<Vec<Job>, (super::Error, Vec<Job>)> {
        let writes = match jobs.iter().map(|job| self.prepare(job)).collect::<Result<Vec<_>>>() {
            Ok(writes) => writes,
            Err(e) => return Err((e, jobs)),
        };
        let started = std::time::Instant::now();
        metrics::histogram!("pwreset_writer_batch_size").record(writes.len() as f64);
        let written = match self.store.write_outbox(&writes).await {
            Ok(written) => written,
            Err(e) => return Err((e, jobs)),
        };
        metrics::histogram!("pwreset_writer_batch_seconds").record(started.elapsed().as_secs_f64());
        self.cache_created(&writes, &written.outcomes);
        let mut retry = Vec::new();
        for (job, outcome) in jobs.into_iter().zip(written.outcomes) {
            let outcome = match (&job.work, outcome) {
                (_, Inserted::DigestTaken) => {
                    retry.push(job);
                    continue;
                }
                (Work::Token(_), Inserted::Created) => "token_created",
                (Work::UnknownEmail(_), Inserted::Created) => "unknown_email_reported",
                (_, Inserted::Capped) => "account_capped",
            };
            let account_id = match &job.work {
                Work::Token(account) => account.id.to_string(),
                Work::UnknownEmail(_) => String::new(),
            };
            metrics::counter!("pwreset_reset_requests_total", "outcome" => outcome).increment(1);
            if outcome == "token_created" {
                metrics::counter!("pwreset_tokens_issued_total").increment(1);
            }
            job.span.in_scope(|| {
                info!(outcome, account_id, client_ip = %job.client.ip_string(), user_agent = %job.client.user_agent, "reset requested");
            });
        }
        if let Some(sequence) = written.newest {
            self.bus.published(sequence);
        }
        Ok(retry)
    }

    /// Puts each account's newest token written into the cache, after dropping what the
    /// cache held for the account (the write revoked it).
    fn cache_created(&self, writes: &[OutboxWrite], outcomes: &[Inserted]) {
        let mut newest: HashMap<Uuid, &NewToken> = HashMap::new();
        for (write, _) in writes.iter().zip(outcomes).filter(|(_, o)| **o == Inserted::Created) {
            if let Some(token) = &write.token {
                newest.insert(token.account_id, token);
            }
        }
        for (account_id, token) in newest {
            self.cache.forget(account_id, None);
            self.cache.insert_created(&token.digest, &TokenRecord::from(token));
        }
    }

    fn prepare(&self, job: &Job) -> Result<OutboxWrite> {
        let now = self.clock.now();
        let client = &job.client;
        match &job.work {
            Work::Token(account) => {
                let token = self.tokens.generator.generate()?;
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
                    locale: job.locale.clone(),
                    retain_until: retain_until(now, self.event_retention, Some(expires_at)),
                };
                let cap = self.account_cap.map(|rate| TokenCap { max: rate.count.get(), since: now - rate.period });
                Ok(OutboxWrite { token: Some(new_token), event, cap })
            }
            Work::UnknownEmail(email) => {
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
                    locale: job.locale.clone(),
                    retain_until: retain_until(now, self.event_retention, None),
                };
                Ok(OutboxWrite { token: None, event, cap: None })
            }
        }
    }
}
