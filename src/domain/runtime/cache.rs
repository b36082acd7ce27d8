//! A replica's cache of live tokens, so that validating a token again (a user who opens
//! the link twice, a form that checks before it submits, a retrying caller) does not
//! read the database each time.
//!
//! Only live tokens are cached, by digest, and an entry is used only while it is fresher
//! than the TTL and the token has not expired. The database stays the authority: Confirm
//! re-checks the token in its own transaction, so a cache can make a validation
//! optimistic, never a password change. Entries are dropped when the token's account
//! changes:
//! - at once, by this replica's own writes (a new token, a password change, a
//!   deactivation), after they commit;
//! - by every replica, on the `TokenCreated` and `PasswordChanged` events the event
//!   fetcher reads (another replica's request or Confirm), and on PostgreSQL on the
//!   NOTIFY a deactivation sends;
//! - at the latest after the TTL, for anything missed in between.
//!
//! A read that raced a change must not put the old state back: every drop advances an
//! epoch, and a record read from the database is cached only if the epoch did not move
//! while it was being read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::clock::SharedClock;
use crate::domain::model::AccountId;
use crate::domain::model::token::TokenDigest;
use crate::domain::model::token::TokenRecord;

/// Entries kept at most; past it, stale entries are swept and new ones skipped.
pub const DEFAULT_CAPACITY: usize = 100_000;

pub struct TokenCache {
    ttl: Duration,
    capacity: usize,
    clock: SharedClock,
    epoch: AtomicU64,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_digest: HashMap<[u8; 32], Cached>,
    by_account: HashMap<AccountId, Vec<[u8; 32]>>,
}

struct Cached {
    record: TokenRecord,
    cached_at: DateTime<Utc>,
}

impl Entries {
    fn remove(&mut self, digest: &[u8; 32]) {
        if let Some(gone) = self.by_digest.remove(digest) {
            let account = gone.record.account_id;
            if let Some(digests) = self.by_account.get_mut(&account) {
                digests.retain(|d| d != digest);
                if digests.is_empty() {
                    self.by_account.remove(&account);
                }
            }
        }
    }
}

impl TokenCache {
    /// A TTL of zero turns the cache off.
    pub fn new(ttl: Duration, capacity: usize, clock: SharedClock) -> Self {
        Self { ttl, capacity, clock, epoch: AtomicU64::new(0), entries: Mutex::new(Entries::default()) }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn usable(&self, cached: &Cached, now: DateTime<Utc>) -> bool {
        cached.record.refusal(now).is_none() && now < cached.cached_at + self.ttl
    }

    /// The live token with this digest, if cached and fresh.
    pub fn get(&self, digest: &TokenDigest) -> Option<TokenRecord> {
        if !self.enabled() {
            return None;
        }
        let now = self.clock.now();
        let entries = self.lock();
        entries.by_digest.get(&digest.0).filter(|c| self.usable(c, now)).map(|c| c.record.clone())
    }

    /// To pass to [`insert_read`](Self::insert_read): taken before reading the database.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches a live token read from the database, unless some account changed since
    /// `epoch` was taken (the read may have seen the state before the change).
    pub fn insert_read(&self, epoch: u64, digest: &TokenDigest, record: &TokenRecord) {
        self.insert(Some(epoch), digest, record);
    }

    /// Caches a token as if just created (tests of the cache itself).
    #[cfg(test)]
    fn insert_created(&self, digest: &TokenDigest, record: &TokenRecord) {
        self.insert(None, digest, record);
    }

    /// After a write that created tokens (each account's newest) and revoked the
    /// accounts' others: drops what the cache held for those accounts and caches the
    /// new tokens, unless some account changed since `epoch` was taken before the write
    /// (a deactivation that committed meanwhile may have revoked them already).
    pub fn replace_created(&self, epoch: u64, created: &[(&TokenDigest, TokenRecord)]) {
        let now = self.clock.now();
        let mut entries = self.lock();
        let unchanged = self.epoch.fetch_add(1, Ordering::SeqCst) == epoch;
        for (_, record) in created {
            for digest in entries.by_account.remove(&record.account_id).unwrap_or_default() {
                entries.by_digest.remove(&digest);
            }
        }
        if unchanged && self.enabled() {
            for (digest, record) in created {
                self.insert_locked(&mut entries, digest, record, now);
            }
        }
    }

    fn insert(&self, epoch: Option<u64>, digest: &TokenDigest, record: &TokenRecord) {
        let now = self.clock.now();
        if !self.enabled() {
            return;
        }
        let mut entries = self.lock();
        // Checked under the lock that `forget` advances the epoch under.
        if epoch.is_some_and(|e| e != self.epoch()) {
            return;
        }
        self.insert_locked(&mut entries, digest, record, now);
    }

    fn insert_locked(&self, entries: &mut Entries, digest: &TokenDigest, record: &TokenRecord, now: DateTime<Utc>) {
        if record.refusal(now).is_some() {
            return;
        }
        if entries.by_digest.len() >= self.capacity && !entries.by_digest.contains_key(&digest.0) {
            let stale: Vec<[u8; 32]> =
                entries.by_digest.iter().filter(|(_, c)| !self.usable(c, now)).map(|(d, _)| *d).collect();
            for d in &stale {
                entries.remove(d);
            }
            if entries.by_digest.len() >= self.capacity {
                return;
            }
        }
        entries.remove(&digest.0);
        entries.by_account.entry(record.account_id).or_default().push(digest.0);
        entries.by_digest.insert(digest.0, Cached { record: record.clone(), cached_at: now });
    }

    /// Drops the account's cached tokens, all but `keep`: its tokens changed.
    pub fn forget(&self, account_id: AccountId, keep: Option<Uuid>) {
        let mut entries = self.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let Some(digests) = entries.by_account.remove(&account_id) else { return };
        let (kept, dropped): (Vec<_>, Vec<_>) =
            digests.into_iter().partition(|d| keep.is_some() && entries.by_digest.get(d).map(|c| c.record.id) == keep);
        for digest in &dropped {
            entries.by_digest.remove(digest);
        }
        if !kept.is_empty() {
            entries.by_account.insert(account_id, kept);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::runtime::clock::{Clock, ManualClock};

    fn cache(ttl_secs: u64, capacity: usize) -> (TokenCache, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (TokenCache::new(Duration::from_secs(ttl_secs), capacity, clock.clone()), clock)
    }

    fn record(account_id: AccountId, now: DateTime<Utc>) -> TokenRecord {
        TokenRecord {
            id: Uuid::now_v7(),
            account_id,
            expires_at: now + Duration::from_secs(3600),
            used_at: None,
            revoked_at: None,
            account_active: true,
            purpose: crate::domain::model::token::TokenPurpose::PasswordReset,
            bound: false,
        }
    }

    fn digest(n: u8) -> TokenDigest {
        TokenDigest([n; 32])
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_cached() {
        let (cache, clock) = cache(60, 10);
        let account = AccountId::generate();
        let epoch = cache.epoch();
        cache.forget(account, None);
        cache.insert_read(epoch, &digest(1), &record(account, clock.now()));
        assert!(cache.get(&digest(1)).is_none());
        cache.insert_read(cache.epoch(), &digest(1), &record(account, clock.now()));
        assert!(cache.get(&digest(1)).is_some());
    }

    #[test]
    fn forget_drops_the_account_but_what_it_keeps() {
        let (cache, clock) = cache(60, 10);
        let (a, b) = (AccountId::generate(), AccountId::generate());
        let kept = record(a, clock.now());
        cache.insert_created(&digest(1), &record(a, clock.now()));
        cache.insert_created(&digest(2), &kept);
        cache.insert_created(&digest(3), &record(b, clock.now()));
        cache.forget(a, Some(kept.id));
        assert!(cache.get(&digest(1)).is_none());
        assert_eq!(cache.get(&digest(2)).map(|r| r.id), Some(kept.id));
        assert!(cache.get(&digest(3)).is_some());
        cache.forget(a, None);
        assert!(cache.get(&digest(2)).is_none());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn entries_go_stale_after_the_ttl_or_at_expiry() {
        let (cache, clock) = cache(10, 10);
        let account = AccountId::generate();
        let mut short = record(account, clock.now());
        short.expires_at = clock.now() + Duration::from_secs(5);
        cache.insert_created(&digest(1), &short);
        cache.insert_created(&digest(2), &record(account, clock.now()));
        clock.advance(Duration::from_secs(5));
        assert!(cache.get(&digest(1)).is_none(), "expired");
        assert!(cache.get(&digest(2)).is_some());
        clock.advance(Duration::from_secs(5));
        assert!(cache.get(&digest(2)).is_none(), "older than the TTL");
    }

    #[test]
    fn a_full_cache_sweeps_stale_entries_then_skips() {
        let (cache, clock) = cache(10, 2);
        cache.insert_created(&digest(1), &record(AccountId::generate(), clock.now()));
        clock.advance(Duration::from_secs(10));
        cache.insert_created(&digest(2), &record(AccountId::generate(), clock.now()));
        cache.insert_created(&digest(3), &record(AccountId::generate(), clock.now()));
        assert_eq!(cache.len(), 2, "the stale entry made room");
        cache.insert_created(&digest(4), &record(AccountId::generate(), clock.now()));
        assert!(cache.get(&digest(4)).is_none());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_zero_ttl_turns_it_off() {
        let (cache, clock) = cache(0, 10);
        cache.insert_created(&digest(1), &record(AccountId::generate(), clock.now()));
        assert!(cache.get(&digest(1)).is_none());
        assert!(cache.is_empty());
    }
}
