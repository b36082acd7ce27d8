//! Argon2id hashing on a fixed pool of worker threads behind a bounded queue.
//!
//! Each worker owns one preallocated memory block and reuses it for every hash, so
//! peak memory is `workers × m_cost` KiB however many calls arrive; a full queue is
//! [`Error::HashingBusy`] at once, never a wait.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use tokio::time::Instant;

use anyhow::{Context, anyhow};
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, Version};
use rand::TryRng;
use tokio::sync::oneshot;
use tracing::Span;

use super::error::{Error, Result};
use super::imported::{self, ImportLimits};
use super::password::NormalisedPassword;

const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;
/// A stored hash asking for more memory than this (KiB) is refused rather than run.
const MAX_VERIFY_M_COST: u32 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct HasherSettings {
    pub params: Params,
    /// Worker threads (default: the number of cores; more gains nothing).
    pub workers: usize,
    /// Jobs waiting for a worker before new ones are refused.
    pub queue_depth: usize,
    /// The work factors accepted in imported hashes (see `imported`).
    pub imports: ImportLimits,
}

impl Default for HasherSettings {
    fn default() -> Self {
        let workers = thread::available_parallelism().map_or(2, |n| n.get());
        Self { params: Params::DEFAULT, workers, queue_depth: 64, imports: ImportLimits::default() }
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
}

impl Hasher {
    pub fn start(settings: &HasherSettings) -> anyhow::Result<Self> {
        let (queue, jobs) = mpsc::sync_channel(settings.queue_depth.max(1));
        let jobs = Arc::new(Mutex::new(jobs));
        let mut dummy_worker = Worker::new(settings.params.clone(), settings.imports);
        let mut random = [0u8; 32];
        rand::rngs::SysRng.try_fill_bytes(&mut random).map_err(|e| anyhow!("OS RNG: {e}"))?;
        let dummy = dummy_worker.hash(&random).context("hashing the dummy password")?;
        for n in 0..settings.workers.max(1) {
            let jobs = Arc::clone(&jobs);
            let worker = Worker::new(settings.params.clone(), settings.imports);
            thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || worker.run(&jobs))
                .context("spawning a hashing worker")?;
        }
        Ok(Self { queue, dummy })
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
}

impl Worker {
    fn new(params: Params, imports: ImportLimits) -> Self {
        let memory = vec![Block::new(); params.block_count()];
        Self { params, memory, imports }
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

    fn verify(&mut self, password: &[u8], phc: &str) -> anyhow::Result<Verified> {
        if !phc.starts_with("$argon2id$") {
            // Imported from another system: its own algorithm, then the server's argon2id.
            return Ok(if imported::verify(password, phc, &self.imports)? {
                Verified::YesRehashed(self.hash(password)?)
            } else {
                Verified::No
            });
        }
        let parsed = PasswordHash::new(phc).map_err(|e| anyhow!("stored hash is not a PHC string: {e}"))?;
        if parsed.algorithm != ARGON2ID_IDENT {
            return Err(anyhow!("stored hash is not argon2id"));
        }
        let params = Params::try_from(&parsed).map_err(|e| anyhow!("stored hash parameters: {e}"))?;
        if params.m_cost() > MAX_VERIFY_M_COST {
            return Err(anyhow!("stored hash asks for {} KiB", params.m_cost()));
        }
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(anyhow!("stored hash has no salt or output"));
        };
        let computed = self.compute(password, salt.as_ref(), &params)?;
        // `Output`'s equality is constant-time.
        if Output::new(&computed).map_err(|e| anyhow!("output: {e}"))? != expected {
            return Ok(Verified::No);
        }
        let current = &self.params;
        let outdated = params.m_cost() != current.m_cost()
            || params.t_cost() != current.t_cost()
            || params.p_cost() != current.p_cost()
            || parsed.version != Some(Version::V0x13.into());
        Ok(if outdated { Verified::YesRehashed(self.hash(password)?) } else { Verified::Yes })
    }

    fn compute(&mut self, password: &[u8], salt: &[u8], params: &Params) -> anyhow::Result<[u8; OUTPUT_LEN]> {
        let blocks = params.block_count();
        if self.memory.len() < blocks {
            // Only for hashes made under larger, older parameters; shrunk again below.
            self.memory.resize(blocks, Block::new());
        }
        let mut out = [0u8; OUTPUT_LEN];
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let memory = self.memory.get_mut(..blocks).ok_or_else(|| anyhow!("argon2 memory"))?;
        let result = argon.hash_password_into_with_memory(password, salt, &mut out, memory);
        let own = self.params.block_count();
        if self.memory.len() > own {
            self.memory.truncate(own);
            self.memory.shrink_to_fit();
        }
        result.map_err(|e| anyhow!("argon2: {e}"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::password::Password;

    fn cheap() -> HasherSettings {
        HasherSettings {
            params: Params::new(64, 1, 1, None).unwrap_or_default(),
            workers: 1,
            queue_depth: 4,
            imports: ImportLimits::default(),
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
