//! What the domain needs from a database: the traits `store` implements, and the values
//! they exchange. A method that changes state and has an event to publish takes the
//! event and writes both in one transaction (the outbox), so the domain never holds a
//! transaction and a crash leaves both or neither.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::email::Email;
use super::error::Result;
use super::event::{Event, NewEvent, Sequence};
use super::login::{Login, Phone, Username};
use super::token::{NewToken, TokenDigest, TokenPurpose, TokenRecord};
use super::{Account, AccountId};

/// An account with its password hash (PHC string), which only the credential checks read.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub account: Account,
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub id: AccountId,
    pub email: Email,
    pub username: Option<Username>,
    pub phone: Option<Phone>,
    pub password_hash: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// A token made outside the reset flow (`IssueToken`, an invitation at
/// `CreateAccount`), with its `TokenCreated` event when the stream delivers it.
#[derive(Debug, Clone)]
pub struct TokenWrite {
    pub token: NewToken,
    pub event: Option<NewEvent>,
}

/// What `ChangePassword` commits at once: the hash, unless it is no longer `old_hash`.
#[derive(Debug, Clone)]
pub struct PasswordChange {
    pub account_id: AccountId,
    pub old_hash: String,
    pub new_hash: String,
    pub now: DateTime<Utc>,
    /// Previous hashes kept as history (the replaced one becomes the newest).
    pub history_keep: u32,
}

/// What `Confirm` commits at once.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub token_id: Uuid,
    pub account_id: AccountId,
    pub password_hash: String,
    pub now: DateTime<Utc>,
    /// Previous hashes kept as history (the replaced one, if any, becomes the newest).
    pub history_keep: u32,
}

/// One entry of a token batch: an event, with the token it announces.
#[derive(Debug, Clone)]
pub struct BatchEntry {
    pub token: Option<NewToken>,
    pub event: NewEvent,
    /// The account's (or, without a token, the address's) cap on such events.
    pub cap: Option<TokenCap>,
}

/// At most `max` tokens per account (reports per unknown address) created after `since`.
#[derive(Debug, Clone, Copy)]
pub struct TokenCap {
    pub max: u32,
    pub since: DateTime<Utc>,
}

/// What became of one entry of a token batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Stored.
    Written,
    /// The account (or the unknown address) reached its cap: nothing stored.
    Capped,
    /// The transaction did not find the account active: nothing stored.
    Inactive,
    /// Another token has the same digest (plausible only for short numeric codes).
    DigestTaken,
}

/// What a token batch did with each entry, in order.
#[derive(Debug, Clone)]
pub struct Written {
    pub outcomes: Vec<EntryOutcome>,
    /// The highest sequence written, if any entry was.
    pub newest: Option<Sequence>,
}

/// The write transaction of one token batch, holding the outbox lock from its start
/// ([`EventStore::begin_token_batch`]), so nothing its look-up saw can change before
/// it commits. Rolled back if dropped uncommitted.
#[async_trait]
pub trait TokenBatch: Send {
    /// The accounts any of `logins` names, in one query.
    async fn accounts_by_logins(&mut self, logins: &[&Login]) -> Result<Vec<AccountRecord>>;
    /// Writes the entries with a fixed set of set-based statements (the same whatever
    /// they hold; with `caps_on` the cap counts run for every batch). An entry with a
    /// token revokes the account's earlier live tokens, unless the account was not
    /// found active by [`accounts_by_logins`](Self::accounts_by_logins) or reached its
    /// cap: then it changes nothing. The result is the same as writing the entries one
    /// after another. `None` when a digest was taken: the transaction is spoiled, and
    /// the batch is written again with [`write_one_by_one`](Self::write_one_by_one).
    async fn write_together(&mut self, entries: &[BatchEntry], caps_on: bool) -> Result<Option<Written>>;
    /// As [`write_together`](Self::write_together), each entry in a savepoint of its
    /// own, so a taken digest fails its entry alone (`EntryOutcome::DigestTaken`).
    async fn write_one_by_one(&mut self, entries: &[BatchEntry], caps_on: bool) -> Result<Written>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub tokens: u64,
    pub events: u64,
}

/// One attempt counted against a live short code ([`TokenStore::reserve_code_attempts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeAttempt {
    pub token_id: Uuid,
    /// The code's attempts with this one.
    pub count: u32,
}

/// The answer to [`AttemptStore::reserve_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The attempt is counted; it may be evaluated.
    Granted,
    /// The address is locked since its last attempt at this time.
    Locked { last_attempt_at: DateTime<Utc> },
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// `AccountExists` if the e-mail, username or phone is taken. With `setup`, the account's setup token
    /// and its event are written in the same transaction; the event's sequence is returned.
    async fn create_account(&self, new: NewAccount, setup: Option<TokenWrite>) -> Result<(Account, Option<Sequence>)>;
    async fn account_by_email(&self, email: &Email) -> Result<Option<AccountRecord>>;
    /// Inserts the accounts whose e-mail is not taken, in one transaction, never
    /// overwriting one; how many were inserted.
    async fn import_accounts(&self, accounts: &[NewAccount]) -> Result<u64>;
    async fn account_by_login(&self, login: &Login) -> Result<Option<AccountRecord>>;
    async fn account_by_id(&self, id: AccountId) -> Result<Option<AccountRecord>>;
    /// Sets the active flag; deactivating also revokes every live token of the account
    /// and destroys their sealed copies, in the same transaction. `None`: no such account.
    async fn set_active(&self, id: AccountId, active: bool, now: DateTime<Utc>) -> Result<Option<Account>>;
    /// Stores a rehash made under current parameters, unless the hash changed meanwhile.
    async fn upgrade_password_hash(&self, id: AccountId, old: &str, new: String, now: DateTime<Utc>) -> Result<()>;
    /// Sets the new hash of an active account whose hash is still `old_hash`, revokes
    /// every live token of the account and records the event, all or nothing.
    /// `PasswordChangedConcurrently` when the hash changed (or the account went inactive)
    /// since it was verified.
    async fn change_password(&self, change: PasswordChange, event: NewEvent) -> Result<Sequence>;
    /// The account's previous hashes, newest first, at most `limit`.
    async fn password_history(&self, id: AccountId, limit: u32) -> Result<Vec<String>>;
    /// Deletes every account's previous hashes beyond its `keep` newest; how many.
    async fn trim_password_histories(&self, keep: u32) -> Result<u64>;
    /// The stored hashes that do not start with `prefix` (made elsewhere or under other
    /// parameters), a page of at most `limit` in id order after `after`: (last id, hashes).
    async fn foreign_hashes(
        &self,
        prefix: &str,
        after: Option<uuid::Uuid>,
        limit: u64,
    ) -> Result<(Option<uuid::Uuid>, Vec<String>)>;
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The token with any of `digests` (one per server key still accepted).
    async fn token_by_digests(&self, digests: &[TokenDigest]) -> Result<Option<TokenRecord>>;
    /// Deletes a token that is no longer live and destroys its sealed copy.
    async fn discard_token(&self, id: Uuid) -> Result<()>;
    /// Consumes the token, sets the password, revokes the account's other live tokens,
    /// destroys their sealed copies and records the event, all or nothing. Of two racing
    /// calls with one token exactly one succeeds; the other gets `TokenNotFound`.
    async fn confirm(&self, confirmation: Confirmation, event: NewEvent) -> Result<Sequence>;
    /// Stores an issued token and its event (if any), revoking the account's earlier
    /// live tokens of the same purpose, all or nothing. Checked inside the transaction:
    /// `AccountNotFound`, `AccountInactive`, and for a setup token `PasswordAlreadySet`.
    async fn issue_token(&self, issue: TokenWrite) -> Result<Option<Sequence>>;
    /// Counts one attempt against each of the account's live short codes that has had
    /// fewer than `max`, in one atomic statement, *before* the attempt is evaluated:
    /// those codes, with their counts. A code not returned may not be evaluated.
    async fn reserve_code_attempts(&self, id: AccountId, max: u32, now: DateTime<Utc>) -> Result<Vec<CodeAttempt>>;
    /// Gives back attempts that were not failures (the right token was presented, or
    /// nothing was evaluated).
    async fn release_code_attempts(&self, codes: &[Uuid]) -> Result<()>;
    /// Revokes these short codes of the account, if still live, and destroys their
    /// sealed copies. Whether any was.
    async fn revoke_codes(&self, id: AccountId, codes: &[Uuid], now: DateTime<Utc>) -> Result<bool>;
    /// Revokes the account's live tokens of `purpose` (of every purpose with `None`) and
    /// destroys their sealed copies; how many. `None`: no such account.
    async fn revoke_tokens(
        &self,
        id: AccountId,
        purpose: Option<TokenPurpose>,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>>;
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Opens the write transaction of a token batch (group commit: one fsync for the
    /// batch).
    async fn begin_token_batch(&self) -> Result<Box<dyn TokenBatch>>;
    /// Up to `limit` retained events after `after`, oldest first.
    async fn events_after(&self, after: Sequence, limit: u64) -> Result<Vec<Event>>;
    /// The highest committed sequence (zero when there is none).
    async fn last_sequence(&self) -> Result<Sequence>;
    /// The highest sequence ever purged: a cursor below it may have missed events.
    async fn purged_through(&self) -> Result<Sequence>;
    /// Deletes expired tokens and events past retention; destroys sealed copies of
    /// expired tokens.
    async fn purge(&self, now: DateTime<Utc>) -> Result<PurgeCounts>;
}

#[async_trait]
pub trait AttemptStore: Send + Sync {
    /// Counts one attempt for the address unless `max` are already counted after
    /// `window_start` (a count older than the window starts again), atomically.
    async fn reserve_attempt(
        &self,
        digest: &[u8; 32],
        max: u32,
        window_start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Reservation>;
    /// Gives back an attempt that was never evaluated.
    async fn release_attempt(&self, digest: &[u8; 32]) -> Result<()>;
    /// Forgets the address's failures.
    async fn clear_attempts(&self, digest: &[u8; 32]) -> Result<()>;
    /// Deletes counts whose last attempt is at or before `window_start`; how many.
    async fn forget_attempts(&self, window_start: DateTime<Utc>) -> Result<u64>;
}

/// Everything the domain persists.
pub trait Persistence: AccountStore + TokenStore + EventStore + AttemptStore {}

impl<T: AccountStore + TokenStore + EventStore + AttemptStore> Persistence for T {}

/// The database as the domain holds it.
pub type Db = Arc<dyn Persistence>;
