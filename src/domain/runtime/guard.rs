//! Per-account guard on `VerifyPassword` (NIST SP 800-63B-4 §3.2.2: a cap on
//! consecutive failed attempts). Keyed on the normalised e-mail whether or not an
//! account exists, so the guard itself reveals nothing: every address over the limit
//! gets the same answer.
//!
//! The count lives in the database (as a keyed digest of the address), so it holds
//! across replicas, and each attempt is reserved there atomically *before* the hash is
//! checked: of N concurrent guesses at most the limit are evaluated. A success (the
//! right password, or a completed reset) clears the count.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::clock::SharedClock;
use crate::domain::model::email::Email;
use crate::domain::model::error::{Error, Result};
use crate::domain::model::persistence::{Db, Reservation};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    /// Consecutive failures allowed before the address is locked.
    pub failures: u32,
    /// How long after the last failure the lock lasts.
    pub lockout: Duration,
}

pub struct FailureGuard {
    limit: Option<FailureLimit>,
    clock: SharedClock,
    store: Db,
    key: [u8; 32],
}

/// One reserved attempt: settle it with its outcome, or give it back.
#[must_use = "an attempt is settled with its outcome or released"]
pub struct Attempt {
    digest: Option<[u8; 32]>,
}

impl FailureGuard {
    pub fn new(limit: Option<FailureLimit>, clock: SharedClock, store: Db, key: [u8; 32]) -> Self {
        Self { limit, clock, store, key }
    }

    fn digest(&self, email: &Email) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail for a 32-byte key.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(email.as_str().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Counts an attempt for the address before it is evaluated, or refuses it while
    /// the address is locked (its consecutive failures reached the limit, until the
    /// lockout after the last one has passed).
    pub async fn reserve(&self, email: &Email) -> Result<Attempt> {
        let Some(limit) = self.limit else { return Ok(Attempt { digest: None }) };
        let digest = self.digest(email);
        let now = self.clock.now();
        match self.store.reserve_attempt(&digest, limit.failures, now - limit.lockout, now).await? {
            Reservation::Granted => Ok(Attempt { digest: Some(digest) }),
            Reservation::Locked { last_attempt_at } => {
                let until = last_attempt_at + limit.lockout;
                let retry_after = (until - now).to_std().unwrap_or(limit.lockout);
                Err(Error::RateLimited { retry_after })
            }
        }
    }

    /// A failure stays counted (it was counted when reserved); a success clears it.
    pub async fn settle(&self, attempt: Attempt, success: bool) -> Result<()> {
        match attempt.digest {
            Some(digest) if success => self.store.clear_attempts(&digest).await,
            _ => Ok(()),
        }
    }

    /// Gives back an attempt that was never evaluated.
    pub async fn release(&self, attempt: Attempt) {
        if let Some(digest) = attempt.digest
            && let Err(e) = self.store.release_attempt(&digest).await
        {
            tracing::warn!(error = %e, "an unevaluated attempt stays counted");
        }
    }

    /// Clears the address's failures: its owner proved control another way (a reset).
    pub async fn clear(&self, email: &Email) -> Result<()> {
        if self.limit.is_none() {
            return Ok(());
        }
        self.store.clear_attempts(&self.digest(email)).await
    }

    /// Forgets addresses whose last attempt is older than the lockout.
    pub async fn evict_idle(&self) -> Result<u64> {
        let Some(limit) = self.limit else { return Ok(0) };
        self.store.forget_attempts(self.clock.now() - limit.lockout).await
    }
}
