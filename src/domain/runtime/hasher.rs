//! Argon2id hashing on a fixed pool of worker threads behind a bounded queue.
//!
//! Each worker owns one preallocated memory block and reuses it for every hash under the
//! server's parameters; a hash made elsewhere (imported, or under older parameters) is
//! checked on the same workers, in memory of its own freed after the check and bounded
//! by `--import-max-memory-kib`. So peak hashing memory is
//! `workers × (m_cost + the import memory ceiling)` KiB however many calls arrive; a
//! full queue is [`Error::HashingBusy`] at once, never a wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use tokio::time::Instant;

use anyhow::{Context, anyhow};
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, Version};
use rand::TryRng;
use tokio::sync::oneshot;
use tracing::{Span, warn};

use crate::domain::model::error::{Error, Result};
use crate::domain::model::imported::{self, ImportLimits};
use crate::domain::model::password::NormalisedPassword;

const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

#[derive(Debug, Clone)]
pub struct HasherSettings {
    pub params: Params,
    /// Worker threads (default: the number of cores; more gains nothing).
    pub workers: usize,
    /// Jobs waiting for a worker before new ones are refused.
    pub queue_depth: usize,
    /// The work factors accepted in imported hashes (see `imported`).
    pub imports: ImportLimits,
    /// The least time a password check answers in; `None`: [`Hasher::answer_floor`].
    pub verify_answer_floor: Option<Duration>,
}

impl Default for HasherSettings {
    fn default() -> Self {
        let workers = thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            params: Params::DEFAULT,
            workers,
            queue_depth: 64,
            imports: ImportLimits::default(),
            verify_answer_floor: None,
        }
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, and here is a fresh hash under the current parameters.
    YesRehashed(String),
}

enum Job {
    Hash { password: NormalisedPassword, reply: oneshot::Sender<Result<String>> },
    Verify { password: NormalisedPassword, phc: String, reply: oneshot::Sender<Result<Verified>> },
}

pub struct Hasher {
    queue: SyncSender<(Job, Span, Instant)>,
    /// A hash of a random password under the current parameters: verifying against it
    /// costs what a real check costs, for unknown and inactive accounts.
    dummy: String,
    /// What the dummy starts with (`$argon2id$v=19$m=…,t=…,p=…$`): a stored hash that
    /// does not is checked with another algorithm or other parameters.
    native_prefix: String,
    /// Estimated cost of a check under the server's parameters, microseconds.
    native_micros: u64,
    /// The costliest estimate among the other hashes known to be stored (0: none).
    slowest_foreign_micros: AtomicU64,
    /// The longest a check of such a hash has taken on a worker since the last scan of
    /// the store: the estimate is for an idle core, this is what the machine does.
    observed: Arc<AtomicU64>,
}

/// How much longer than its estimate a check of the slowest stored hash may take, in
/// quarters, and the time the rest of a check takes (look-up, attempt count), so that
/// the answer floor covers the whole call.
const FLOOR_QUARTERS: u64 = 5;
const FLOOR_MARGIN: Duration = Duration::from_millis(5);

impl Hasher {
    pub fn start(settings: &HasherSettings) -> anyhow::Result<Self> {
        let (queue, jobs) = mpsc::sync_channel(settings.queue_depth.max(1));
        let jobs = Arc::new(Mutex::new(jobs));
        let mut dummy_worker = Worker::new(settings.params.clone(), settings.imports);
        let mut random = [0u8; 32];
        rand::rngs::SysRng.try_fill_bytes(&mut random).map_err(|e| anyhow!("OS RNG: {e}"))?;
        let dummy = dummy_worker.hash(&random).context("hashing the dummy password")?;
        // A hash of this server's own, under older parameters up to today's, is never
        // over the import ceilings.
        let native = imported::cost_of(&dummy).unwrap_or_default();
        let limits = ImportLimits {
            max_cost_micros: settings.imports.max_cost_micros.max(native.micros),
            max_memory_kib: settings.imports.max_memory_kib.max(native.memory_kib),
            ..settings.imports
        };
        let observed = Arc::new(AtomicU64::new(0));
        for n in 0..settings.workers.max(1) {
            let jobs = Arc::clone(&jobs);
            let mut worker = Worker::new(settings.params.clone(), limits);
            worker.observed = Some(Arc::clone(&observed));
            thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || worker.run(&jobs))
                .context("spawning a hashing worker")?;
        }
        let native_prefix = dummy.rsplitn(3, '$').nth(2).map(|p| format!("{p}$")).unwrap_or_default();
        Ok(Self {
            queue,
            dummy,
            native_prefix,
            native_micros: native.micros,
            slowest_foreign_micros: AtomicU64::new(0),
            observed,
        })
    }

    /// Notes a hash known to be stored (imported, found at a check, or by a scan of the
    /// store): one not under the server's parameters raises the answer floor to its cost.
    pub fn note_stored(&self, stored: &str) {
        if stored.starts_with(&self.native_prefix) {
            return;
        }
        let micros = imported::cost_of(stored).map_or(0, |c| c.micros);
        self.slowest_foreign_micros.fetch_max(micros.max(1), Ordering::Relaxed);
    }

    /// Replaces what was noted with a fresh scan of the store (the costliest estimate
    /// among its hashes not under the server's parameters, 0 for none).
    pub fn set_slowest_stored(&self, slowest_micros: u64) {
        self.slowest_foreign_micros.store(slowest_micros, Ordering::Relaxed);
        self.observed.store(0, Ordering::Relaxed);
    }

    /// What a hash under the server's parameters starts with.
    pub fn native_prefix(&self) -> &str {
        &self.native_prefix
    }

    /// The estimated cost of checking `stored`, microseconds of one core.
    pub fn cost_micros(&self, stored: &str) -> u64 {
        if stored.starts_with(&self.native_prefix) {
            return self.native_micros;
        }
        imported::cost_of(stored).map_or(self.native_micros, |c| c.micros.max(self.native_micros))
    }

    /// How long a password check should take at least so that every stored hash known
    /// answers in the same time as an unknown address: zero while every stored hash is
    /// under the server's parameters, else 1.25 × the slowest one's estimate (at least the
    /// server's own) or the longest such a check has taken since the last scan (capped at
    /// twice that), + 5 ms.
    pub fn answer_floor(&self) -> Duration {
        let slowest = self.slowest_foreign_micros.load(Ordering::Relaxed);
        if slowest == 0 {
            return Duration::ZERO;
        }
        let estimated = slowest.max(self.native_micros).saturating_mul(FLOOR_QUARTERS) / 4;
        // Already what the machine took, contention included: no margin on top; but at
        // most twice the estimate, so one check slowed by a busy moment does not set
        // every login's time until the next scan.
        let observed = self.observed.load(Ordering::Relaxed).min(estimated.saturating_mul(2));
        Duration::from_micros(estimated.max(observed)) + FLOOR_MARGIN
    }

    pub async fn hash(&self, password: NormalisedPassword) -> Result<String> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        answer.await.map_err(|_| Error::Internal(anyhow!("hashing worker stopped")))?
    }

    /// Checks `password` against `phc`, or against the dummy hash when `phc` is `None`
    /// (in which case the answer is always `No`, after the same amount of work).
    pub async fn verify(&self, password: NormalisedPassword, phc: Option<&str>) -> Result<Verified> {
        let (reply, answer) = oneshot::channel();
        if let Some(stored) = phc {
            self.note_stored(stored);
        }
        let phc_text = phc.unwrap_or(&self.dummy).to_owned();
        self.submit(Job::Verify { password, phc: phc_text, reply })?;
        let verified = answer.await.map_err(|_| Error::Internal(anyhow!("hashing worker stopped")))??;
        Ok(if phc.is_some() { verified } else { Verified::No })
    }

    fn submit(&self, job: Job) -> Result<()> {
        match self.queue.try_send((job, Span::current(), super::clock::monotonic())) {
            Ok(()) => {
                metrics::gauge!("pwreset_hash_queue_depth").increment(1);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                metrics::counter!("pwreset_hash_rejected_total").increment(1);
                Err(Error::HashingBusy)
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::Internal(anyhow!("hashing pool stopped"))),
        }
    }
}

struct Worker {
    params: Params,
    memory: Vec<Block>,
    imports: ImportLimits,
    /// Where the longest check of a foreign hash is recorded (see `Hasher::observed`).
    observed: Option<Arc<AtomicU64>>,
}

impl Worker {
    fn new(params: Params, imports: ImportLimits) -> Self {
        let memory = vec![Block::new(); params.block_count()];
        Self { params, memory, imports, observed: None }
    }

    fn run(mut self, jobs: &Mutex<Receiver<(Job, Span, Instant)>>) {
        loop {
            let next = match jobs.lock() {
                Ok(receiver) => receiver.recv(),
                Err(_) => return,
            };
            let Ok((job, span, queued_at)) = next else { return };
            metrics::gauge!("pwreset_hash_queue_depth").decrement(1);
            metrics::histogram!("pwreset_hash_wait_seconds").record(queued_at.elapsed().as_secs_f64());
            let _entered = span.enter();
            match job {
                Job::Hash { password, reply } => {
                    let _ = reply.send(self.hash(password.as_bytes()).map_err(Error::Internal));
                }
                Job::Verify { password, phc, reply } => {
                    let _ = reply.send(self.verify(password.as_bytes(), &phc).map_err(Error::Internal));
                }
            }
        }
    }

    fn hash(&mut self, password: &[u8]) -> anyhow::Result<String> {
        let mut salt = [0u8; SALT_LEN];
        rand::rngs::SysRng.try_fill_bytes(&mut salt).map_err(|e| anyhow!("OS RNG: {e}"))?;
        let params = self.params.clone();
        let output = self.compute(password, &salt, &params)?;
        let phc = PasswordHash {
            algorithm: ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|e| anyhow!("argon2 params: {e}"))?,
            salt: Some(Salt::new(&salt).map_err(|e| anyhow!("salt: {e}"))?),
            hash: Some(Output::new(&output).map_err(|e| anyhow!("output: {e}"))?),
        };
        Ok(phc.to_string())
    }

    /// A stored hash that cannot be checked (malformed, or over an import ceiling lowered
    /// since it was stored) is a mismatch after the same work as a real check, logged:
    /// never an error the caller could tell from a wrong password.
    fn verify(&mut self, password: &[u8], stored: &str) -> anyhow::Result<Verified> {
        let matched = match self.current(stored) {
            Some((salt, expected)) => self.compute(password, &salt, &self.params.clone()).map(|out| {
                // `Output`'s equality is constant-time.
                Output::new(&out).is_ok_and(|out| out == expected)
            }),
            // Imported from another system, or made under older parameters: its own
            // algorithm, then the server's argon2id.
            None => {
                let started = super::clock::monotonic();
                let matched = imported::verify(password, stored, &self.imports);
                let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                if let Some(observed) = &self.observed {
                    observed.fetch_max(took, Ordering::Relaxed);
                }
                matched
            }
        };
        match matched {
            Ok(true) if self.current(stored).is_some() => Ok(Verified::Yes),
            Ok(true) => Ok(Verified::YesRehashed(self.hash(password)?)),
            Ok(false) => Ok(Verified::No),
            Err(e) => {
                warn!(reason = %format!("{e:#}"), "a stored password hash could not be checked; answered as a mismatch");
                metrics::counter!("pwreset_hash_unverifiable_total").increment(1);
                let _ = self.compute(password, &[0u8; SALT_LEN], &self.params.clone());
                Ok(Verified::No)
            }
        }
    }

    /// The salt and output of a hash made under the server's current parameters.
    fn current(&self, stored: &str) -> Option<(Vec<u8>, Output)> {
        if !stored.starts_with("$argon2id$v=19$") {
            return None;
        }
        let parsed = PasswordHash::new(stored).ok()?;
        let params = Params::try_from(&parsed).ok()?;
        let current = &self.params;
        let same = parsed.algorithm == ARGON2ID_IDENT
            && params.m_cost() == current.m_cost()
            && params.t_cost() == current.t_cost()
            && params.p_cost() == current.p_cost();
        match (same, parsed.salt, parsed.hash) {
            (true, Some(salt), Some(hash)) if hash.len() == OUTPUT_LEN => Some((salt.as_ref().to_vec(), hash)),
            _ => None,
        }
    }

    fn compute(&mut self, password: &[u8], salt: &[u8], params: &Params) -> anyhow::Result<[u8; OUTPUT_LEN]> {
        let mut out = [0u8; OUTPUT_LEN];
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        argon
            .hash_password_into_with_memory(password, salt, &mut out, &mut self.memory)
            .map_err(|e| anyhow!("argon2: {e}"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::password::Password;

    fn cheap() -> HasherSettings {
        HasherSettings {
            params: Params::new(64, 1, 1, None).unwrap_or_default(),
            workers: 1,
            queue_depth: 4,
            imports: ImportLimits::default(),
            verify_answer_floor: None,
        }
    }

    fn pw(s: &str) -> NormalisedPassword {
        Password::new(s.into()).normalised().unwrap_or_else(|_| unreachable!())
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() -> anyhow::Result<()> {
        let hasher = Hasher::start(&cheap())?;
        let phc = hasher.hash(pw("a long enough passphrase")).await?;
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(hasher.verify(pw("a long enough passphrase"), Some(&phc)).await?, Verified::Yes);
        assert_eq!(hasher.verify(pw("another passphrase"), Some(&phc)).await?, Verified::No);
        assert_eq!(hasher.verify(pw("anything"), None).await?, Verified::No);
        Ok(())
    }

    #[tokio::test]
    async fn hashes_under_older_parameters_are_upgraded() -> anyhow::Result<()> {
        let old =
            Hasher::start(&HasherSettings { params: Params::new(32, 1, 1, None).unwrap_or_default(), ..cheap() })?;
        let phc = old.hash(pw("a long enough passphrase")).await?;
        let current = Hasher::start(&cheap())?;
        let Verified::YesRehashed(new) = current.verify(pw("a long enough passphrase"), Some(&phc)).await? else {
            panic!("expected a rehash");
        };
        assert!(new.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        Ok(())
    }
}
