//! Per-account guard on `VerifyPassword` (NIST SP 800-63B-4 §3.2.2: a cap on
//! consecutive failed attempts). Keyed on the normalised e-mail whether or not an
//! account exists, so the guard itself reveals nothing: every address over the limit
//! gets the same answer.
//!
//! governor counts calls, not consecutive failures that a success clears, so this is a
//! small map of its own; the sweeper forgets entries whose lockout has passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::clock::SharedClock;
use super::email::Email;
use super::error::{Error, Result};

/// Addresses tracked at most; past it new addresses are not tracked (the per-IP limit
/// still applies) rather than letting memory grow without bound.
const MAX_TRACKED: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    /// Consecutive failures allowed before the address is locked.
    pub failures: u32,
    /// How long after the last failure the lock lasts.
    pub lockout: Duration,
}

struct Entry {
    failures: u32,
    last: DateTime<Utc>,
}

pub struct FailureGuard {
    limit: Option<FailureLimit>,
    clock: SharedClock,
    entries: Mutex<HashMap<String, Entry>>,
}

impl FailureGuard {
    pub fn new(limit: Option<FailureLimit>, clock: SharedClock) -> Self {
        Self { limit, clock, entries: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses an address whose consecutive failures reached the limit, until the
    /// lockout after its last failure has passed.
    pub fn check(&self, email: &Email) -> Result<()> {
        let Some(limit) = self.limit else { return Ok(()) };
        let now = self.clock.now();
        let entries = self.lock();
        match entries.get(email.as_str()) {
            Some(e) if e.failures >= limit.failures => {
                let until = e.last + limit.lockout;
                if until > now {
                    let retry_after = (until - now).to_std().unwrap_or(limit.lockout);
                    return Err(Error::RateLimited { retry_after });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub fn record(&self, email: &Email, success: bool) {
        let Some(limit) = self.limit else { return };
        let now = self.clock.now();
        let mut entries = self.lock();
        if success {
            entries.remove(email.as_str());
            return;
        }
        if let Some(entry) = entries.get_mut(email.as_str()) {
            if entry.last + limit.lockout <= now {
                entry.failures = 0;
            }
            entry.failures = entry.failures.saturating_add(1);
            entry.last = now;
        } else if entries.len() < MAX_TRACKED {
            entries.insert(email.as_str().to_owned(), Entry { failures: 1, last: now });
        }
    }

    /// Forgets addresses whose last failure is older than the lockout.
    pub fn evict_idle(&self) {
        let Some(limit) = self.limit else { return };
        let now = self.clock.now();
        let mut entries = self.lock();
        entries.retain(|_, e| e.last + limit.lockout > now);
        entries.shrink_to_fit();
    }

    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::ManualClock;
    use std::sync::Arc;

    fn guard() -> (FailureGuard, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        let limit = FailureLimit { failures: 3, lockout: Duration::from_secs(900) };
        (FailureGuard::new(Some(limit), clock.clone()), clock)
    }

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn locks_after_consecutive_failures_and_unlocks_after_the_lockout() {
        let (g, clock) = guard();
        let a = email("a@example.com");
        for _ in 0..3 {
            assert!(g.check(&a).is_ok());
            g.record(&a, false);
        }
        assert!(matches!(g.check(&a), Err(Error::RateLimited { .. })));
        assert!(g.check(&email("b@example.com")).is_ok(), "other addresses unaffected");
        clock.advance(Duration::from_secs(900));
        assert!(g.check(&a).is_ok());
    }

    #[test]
    fn a_success_clears_the_count() {
        let (g, _) = guard();
        let a = email("a@example.com");
        g.record(&a, false);
        g.record(&a, false);
        g.record(&a, true);
        g.record(&a, false);
        assert!(g.check(&a).is_ok());
    }

    #[test]
    fn idle_entries_are_evicted() {
        let (g, clock) = guard();
        g.record(&email("a@example.com"), false);
        clock.advance(Duration::from_secs(901));
        g.evict_idle();
        assert_eq!(g.tracked(), 0);
    }
}
