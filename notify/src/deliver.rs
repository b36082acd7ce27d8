//! Delivery that no message can hold up. E-mail and texts each have a lane: a worker
//! that makes each message's first attempt in stream order, bounded by its sender's
//! timeout. A message that fails transiently leaves its lane for a background task that
//! retries it with jittered exponential backoff until it is delivered, refused for good,
//! its token expires or `--retry-for` has passed (then it is given up: logged and
//! counted). The lanes do not wait on each other or on retries.
//!
//! Every message's sequence is pending in the [`Ledger`] from when it is read until it
//! is finished; the cursor is stored after each finish, so a restart retries exactly the
//! unfinished ones (see `cursor.rs`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lettre::message::Mailbox;
use pwreset::domain::runtime::clock;
use rand::RngExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cursor::{Cursor, Ledger};
use crate::send::{Envelope, Failure, MailSender, Text, TextSender};

/// What an event asks to send.
pub enum Work {
    Mail(Envelope),
    Text(Text),
}

impl Work {
    pub fn channel(&self) -> &'static str {
        match self {
            Work::Mail(_) => "email",
            Work::Text(_) => "sms",
        }
    }
}

/// A message and how long it is worth retrying.
pub struct Job {
    pub sequence: u64,
    pub work: Work,
    /// Retrying ends here at the latest: when the token it carries expires.
    pub expires_in: Option<Duration>,
    /// Anyone can cause it: a notice to an address with no account (one RequestToken
    /// per notice, for any address). Given up first when too many messages retry.
    pub unsolicited: bool,
}

/// The senders and what every attempt shares.
pub struct Senders {
    pub from: Mailbox,
    pub mail: MailSender,
    pub texts: TextSender,
    /// Test hook: abort after sending this many messages, before storing the cursor.
    pub crash_after: Option<u64>,
    pub sent: AtomicU64,
}

impl Senders {
    async fn attempt(&self, job: &Job) -> Result<(), Failure> {
        let result = match &job.work {
            Work::Mail(envelope) => self.mail.send(&self.from, envelope).await,
            Work::Text(text) => self.texts.send(text).await,
        };
        if result.is_ok() {
            let sent = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
            if self.crash_after == Some(sent) {
                tracing::error!(
                    sequence = job.sequence,
                    "PWRESET_NOTIFY_FAULT: crashing after the send, before the cursor"
                );
                std::process::abort();
            }
        }
        result
    }
}

/// How a message ended.
enum Outcome {
    Sent,
    Refused(anyhow::Error),
    GaveUp(anyhow::Error),
}

pub struct Delivery {
    senders: Senders,
    ledger: tokio::sync::Mutex<Ledger>,
    cursor: Cursor,
    retry_for: Duration,
    max_retrying: usize,
    /// The background retries, by sequence; a task removes itself before it finishes
    /// its message, so whoever removes an entry accounts for it.
    retrying: Mutex<BTreeMap<u64, Retrying>>,
    tasks: TaskTracker,
    /// Lanes stop taking messages and retries stop waiting.
    stop: CancellationToken,
    /// Cancelled when the cursor cannot be stored: this replica must stop.
    shutdown: CancellationToken,
    fatal: Mutex<Option<String>>,
}

/// A message retrying in the background.
struct Retrying {
    task: AbortHandle,
    unsolicited: bool,
    give_up_at: Instant,
}

/// Which retry is given up to make room past `--max-retrying`: an unsolicited notice
/// first (an outsider can make any number of them, so they must never push out an
/// account's mail), the one whose time runs out soonest (it has the least left to gain,
/// and every message keeps its full window unless the cap is reached), the oldest on a
/// tie. Account messages are bounded by the server's per-account cap, so filling the
/// cap with them takes many real accounts. `None` when the newcomer itself should go:
/// it is unsolicited and every retry is an account's message.
fn evictee(retrying: &BTreeMap<u64, Retrying>, newcomer_unsolicited: bool) -> Option<u64> {
    let (sequence, oldest) = retrying.iter().min_by_key(|(sequence, r)| (!r.unsolicited, r.give_up_at, **sequence))?;
    if newcomer_unsolicited && !oldest.unsolicited {
        return None;
    }
    Some(*sequence)
}

/// Lane capacity: how far the stream is read ahead of a slow lane. Past it the reader
/// waits, and so does the other lane.
pub const LANE_DEPTH: usize = 1024;

impl Delivery {
    pub fn new(
        senders: Senders,
        ledger: Ledger,
        cursor: Cursor,
        retry_for: Duration,
        max_retrying: usize,
        shutdown: &CancellationToken,
    ) -> Self {
        Delivery {
            senders,
            ledger: tokio::sync::Mutex::new(ledger),
            cursor,
            retry_for,
            max_retrying: max_retrying.max(1),
            retrying: Mutex::new(BTreeMap::new()),
            tasks: TaskTracker::new(),
            stop: shutdown.child_token(),
            shutdown: shutdown.clone(),
            fatal: Mutex::new(None),
        }
    }

    pub fn ledger(&self) -> &tokio::sync::Mutex<Ledger> {
        &self.ledger
    }

    /// A lane: first attempts in order until its sender is dropped or `stop`.
    pub async fn lane(self: std::sync::Arc<Self>, mut jobs: mpsc::Receiver<Job>) {
        loop {
            let job = tokio::select! {
                biased;
                _ = self.stop.cancelled() => return,
                job = jobs.recv() => job,
            };
            let Some(job) = job else { return };
            let give_up_at = self.give_up_at(&job);
            match self.senders.attempt(&job).await {
                Ok(()) => self.end(&job, Outcome::Sent).await,
                Err(Failure::Permanent(e)) => self.end(&job, Outcome::Refused(e)).await,
                Err(Failure::Transient(e)) if clock::monotonic() >= give_up_at => {
                    self.end(&job, Outcome::GaveUp(e)).await;
                }
                Err(Failure::Transient(e)) => {
                    self.transient(&job, &e);
                    self.retry_later(job, give_up_at).await;
                }
            }
        }
    }

    fn give_up_at(&self, job: &Job) -> Instant {
        clock::monotonic() + retry_window(self.retry_for, job.expires_in)
    }

    fn transient(&self, job: &Job, e: &anyhow::Error) {
        let channel = job.work.channel();
        metrics::counter!("pwreset_notify_retried_total", "channel" => channel).increment(1);
        tracing::warn!(
            sequence = job.sequence,
            channel,
            error = format!("{e:#}"),
            "transient failure; retrying in the background"
        );
    }

    /// Hands `job` to a background task; past `--max-retrying` one message is given up
    /// to make room (see [`evictee`]): a flood of undeliverable messages must not stop
    /// the rest, and an outsider's flood must not cost an account's mail.
    async fn retry_later(self: &std::sync::Arc<Self>, job: Job, give_up_at: Instant) {
        let evicted = {
            let mut retrying = self.retrying.lock().unwrap_or_else(|p| p.into_inner());
            let full = retrying.len() >= self.max_retrying;
            match full.then(|| evictee(&retrying, job.unsolicited)) {
                // Every retry is an account's message: the unsolicited newcomer goes.
                Some(None) => Some(job.sequence),
                evict => {
                    let evicted = evict.flatten().and_then(|s| retrying.remove(&s).map(|r| (s, r)));
                    if let Some((_, r)) = &evicted {
                        r.task.abort();
                    }
                    let (sequence, unsolicited) = (job.sequence, job.unsolicited);
                    // Inserted under the lock the task needs to remove itself: it cannot finish first.
                    let task = self.tasks.spawn(std::sync::Arc::clone(self).retry(job, give_up_at)).abort_handle();
                    retrying.insert(sequence, Retrying { task, unsolicited, give_up_at });
                    evicted.map(|(s, _)| s)
                }
            }
        };
        metrics::gauge!("pwreset_notify_retrying").set(self.retrying_now() as f64);
        if let Some(sequence) = evicted {
            metrics::counter!("pwreset_notify_failed_total", "reason" => "gave_up").increment(1);
            tracing::error!(
                sequence,
                max_retrying = self.max_retrying,
                "too many messages retrying: one was given up (unknown-account notices first, then the one nearest its end)"
            );
            self.finish(sequence).await;
        }
    }

    fn retrying_now(&self) -> usize {
        self.retrying.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Claims the entry of `sequence`: `false` if it was given up meanwhile.
    fn claim(&self, sequence: u64) -> bool {
        let claimed = self.retrying.lock().unwrap_or_else(|p| p.into_inner()).remove(&sequence).is_some();
        metrics::gauge!("pwreset_notify_retrying").set(self.retrying_now() as f64);
        claimed
    }

    async fn retry(self: std::sync::Arc<Self>, job: Job, give_up_at: Instant) {
        let mut delay = Duration::from_millis(500);
        loop {
            let wait = jittered(&mut delay);
            let resume = clock::monotonic() + wait;
            if resume >= give_up_at {
                tokio::select! {
                    _ = clock::pause_until(give_up_at) => {}
                    _ = self.stop.cancelled() => {
                        self.claim(job.sequence);
                        return;
                    }
                }
                if self.claim(job.sequence) {
                    let e = anyhow::anyhow!("still failing when its time ran out");
                    self.end(&job, Outcome::GaveUp(e)).await;
                }
                return;
            }
            tokio::select! {
                _ = clock::pause_until(resume) => {}
                // Left pending: the next run retries it.
                _ = self.stop.cancelled() => {
                    self.claim(job.sequence);
                    return;
                }
            }
            let outcome = match self.senders.attempt(&job).await {
                Ok(()) => Outcome::Sent,
                Err(Failure::Permanent(e)) => Outcome::Refused(e),
                Err(Failure::Transient(e)) => {
                    self.transient(&job, &e);
                    continue;
                }
            };
            if self.claim(job.sequence) {
                self.end(&job, outcome).await;
            }
            return;
        }
    }

    /// Counts and logs how `job` ended, then finishes it.
    async fn end(&self, job: &Job, outcome: Outcome) {
        let (sequence, channel) = (job.sequence, job.work.channel());
        match outcome {
            Outcome::Sent => {
                metrics::counter!("pwreset_notify_sent_total", "channel" => channel).increment(1);
                tracing::info!(sequence, channel, "sent");
            }
            Outcome::Refused(e) => {
                metrics::counter!("pwreset_notify_failed_total", "reason" => "permanent").increment(1);
                tracing::error!(sequence, channel, error = format!("{e:#}"), "permanent failure; skipped");
            }
            Outcome::GaveUp(e) => {
                metrics::counter!("pwreset_notify_failed_total", "reason" => "gave_up").increment(1);
                tracing::error!(
                    sequence,
                    channel,
                    error = format!("{e:#}"),
                    "transient failures until its time ran out; given up"
                );
            }
        }
        self.finish(sequence).await;
    }

    /// Marks `sequence` finished and stores the cursor. A cursor that cannot be stored
    /// stops the notifier (on PostgreSQL the lock may be lost with the connection).
    pub async fn finish(&self, sequence: u64) {
        let mut ledger = self.ledger.lock().await;
        ledger.finish(sequence);
        self.store(&ledger).await;
    }

    pub async fn store(&self, ledger: &Ledger) {
        let Some(position) = ledger.position() else { return };
        if let Err(e) = self.cursor.store(&position).await {
            let message = format!("storing the cursor: {e:#}");
            tracing::error!(error = message, "stopping");
            *self.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
            self.shutdown.cancel();
        }
    }

    /// After the lanes ended: stops the retries (their messages stay pending for the next
    /// run), waits for them, stores the cursor a last time; an error if storing failed.
    pub async fn close(&self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.store(&*self.ledger.lock().await).await;
        match self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(message) => Err(anyhow::anyhow!(message)),
            None => Ok(()),
        }
    }
}

/// How long a message may be retried from its first attempt: `--retry-for`, or less if
/// its token expires sooner (a dead link or code is not worth sending).
fn retry_window(retry_for: Duration, expires_in: Option<Duration>) -> Duration {
    expires_in.map_or(retry_for, |left| left.min(retry_for))
}

/// `delay` with up to 50 % jitter; doubles `delay` up to a minute.
pub fn jittered(delay: &mut Duration) -> Duration {
    let jitter = rand::rng().random_range(0..=delay.as_millis() as u64 / 2);
    let wait = *delay + Duration::from_millis(jitter);
    *delay = (*delay * 2).min(Duration::from_secs(60));
    wait
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrying_ends_at_the_bound_or_when_the_token_expires_whichever_is_first() {
        let hour = Duration::from_secs(3600);
        assert_eq!(retry_window(hour, None), hour, "a notice without a token");
        assert_eq!(retry_window(hour, Some(Duration::from_secs(900))), Duration::from_secs(900));
        assert_eq!(retry_window(hour, Some(24 * hour)), hour, "an invitation that lives for days");
        assert_eq!(retry_window(hour, Some(Duration::ZERO)), Duration::ZERO, "expired: no retry");
    }

    #[tokio::test]
    async fn unknown_account_notices_are_given_up_first_then_the_one_nearest_its_end() {
        let now = clock::monotonic();
        let task = tokio::spawn(async {}).abort_handle();
        let entry = |unsolicited, secs| Retrying {
            task: task.clone(),
            unsolicited,
            give_up_at: now + Duration::from_secs(secs),
        };
        let mut retrying =
            BTreeMap::from([(1, entry(false, 10)), (2, entry(false, 5)), (3, entry(true, 60)), (4, entry(true, 60))]);
        assert_eq!(evictee(&retrying, false), Some(3), "the oldest unknown-account notice");
        assert_eq!(evictee(&retrying, true), Some(3));
        retrying.retain(|_, r| !r.unsolicited);
        assert_eq!(evictee(&retrying, false), Some(2), "the account message nearest its end");
        assert_eq!(evictee(&retrying, true), None, "an unknown-account notice never pushes out an account's mail");
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_minute() {
        let mut delay = Duration::from_millis(500);
        let first = jittered(&mut delay);
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(750), "{first:?}");
        for _ in 0..20 {
            jittered(&mut delay);
        }
        assert_eq!(delay, Duration::from_secs(60));
        assert!(jittered(&mut delay) <= Duration::from_secs(90));
    }
}
