//! The credential store: creating accounts (with an invitation), checking and changing
//! passwords in comparable time for every kind of failure, issuing and revoking tokens
//! for a backend, and switching accounts on and off.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use super::history::refuse_reuse;
use crate::domain::model::email::Email;
use crate::domain::model::error::{Error, Result};
use crate::domain::model::event::{Channel, NewEvent, PasswordChangeReason};
use crate::domain::model::imported::{self, ImportLimits};
use crate::domain::model::login::{Phone, Username};
use crate::domain::model::password::{NormalisedPassword, Password, PasswordPolicy};
use crate::domain::model::persistence::{AccountRecord, NewAccount, PasswordChange, TokenWrite};
use crate::domain::model::token::{RawToken, TokenPolicy, TokenPurpose};
use crate::domain::model::{Account, AccountId, ClientInfo, Locale};
use crate::domain::runtime::Runtime;
use crate::domain::runtime::clock;
use crate::domain::runtime::guard::FailureGuard;
use crate::domain::runtime::hasher::{Hasher, Verified};
use crate::domain::runtime::limits::{Limits, Rpc};
use crate::domain::runtime::mint::Minter;

pub struct AccountService {
    runtime: Runtime,
    hasher: Arc<Hasher>,
    minter: Minter,
    settings: AccountSettings,
    limits: Arc<Limits>,
    guard: Arc<FailureGuard>,
}

/// The settings the account operations own.
pub struct AccountSettings {
    pub passwords: PasswordPolicy,
    pub tokens: TokenPolicy,
    pub imports: ImportLimits,
    /// `VerifyPassword` and `ChangePassword`'s check answer no sooner than this after
    /// they arrive; `None`: the hasher's [`Hasher::answer_floor`], from the stored hashes.
    pub verify_answer_floor: Option<Duration>,
}

/// What a new account starts with.
#[derive(Debug)]
pub enum Credential {
    /// No usable password (an invitation may follow).
    None,
    /// A password, checked against the policy and hashed here.
    Password(Password),
    /// A hash made by another system (a migration), kept until its first successful
    /// check rehashes it.
    Imported(String),
}

/// The logins of a new account: its e-mail, and optionally a username and a phone.
#[derive(Debug, Clone)]
pub struct Logins {
    pub email: Email,
    pub username: Option<Username>,
    pub phone: Option<Phone>,
}

/// How an issued token reaches its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// In a `TokenCreated` event, for the notifier.
    Event(Locale),
    /// To the caller, once: no event, no sealed copy.
    Return,
}

/// What `IssueToken` asks for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub account_id: AccountId,
    pub purpose: TokenPurpose,
    /// `None`: the purpose's default lifetime.
    pub ttl: Option<Duration>,
    pub delivery: Delivery,
}

/// What `IssueToken` answers.
#[derive(Debug)]
pub struct IssuedToken {
    /// Only for [`Delivery::Return`].
    pub token: Option<RawToken>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// How `GetAccount` names the account.
#[derive(Debug, Clone)]
pub enum AccountKey {
    Id(AccountId),
    Email(Email),
}

impl AccountService {
    pub fn new(
        runtime: Runtime,
        hasher: Arc<Hasher>,
        minter: Minter,
        settings: AccountSettings,
        limits: Arc<Limits>,
        guard: Arc<FailureGuard>,
    ) -> Self {
        AccountService { runtime, hasher, minter, settings, limits, guard }
    }

    /// Creates an active account; without a password it has no usable password, and
    /// with `setup` (its locale) it gets its account-setup token and `TokenCreated`
    /// event in the same transaction.
    pub async fn create_account(
        &self,
        logins: Logins,
        credential: Credential,
        setup: Option<Locale>,
        client: &ClientInfo,
    ) -> Result<Account> {
        if setup.is_some() && !matches!(credential, Credential::None) {
            return Err(Error::invalid("send_setup_token", "only for an account created without a password"));
        }
        let Logins { email, username, phone } = logins;
        let password_hash = match credential {
            Credential::Password(password) => {
                let password = self.settings.passwords.check(&password, &email, "password")?;
                Some(self.hasher.hash(password).await?)
            }
            Credential::Imported(hash) => {
                let accepted = imported::accept(&hash, &self.settings.imports, "password_hash")?;
                self.hasher.note_stored(&accepted);
                Some(accepted)
            }
            Credential::None => None,
        };
        let now = self.runtime.clock.now();
        let account = Account {
            id: AccountId::generate(),
            email,
            active: true,
            has_usable_password: password_hash.is_some(),
            created_at: now,
            password_changed_at: None,
            username,
            phone,
        };
        let setup = match setup {
            Some(locale) => {
                let ttl = self.settings.tokens.setup_ttl;
                let purpose = TokenPurpose::AccountSetup;
                let (raw, token) = self.minter.mint(&account, purpose, now, ttl, client, Channel::Email)?;
                let event = self.minter.announce(&account, &token, &raw, &locale, Channel::Email)?;
                Some(TokenWrite { token, event: Some(event) })
            }
            None => None,
        };
        let new = NewAccount {
            id: account.id,
            email: account.email,
            username: account.username,
            phone: account.phone,
            password_hash,
            active: true,
            created_at: now,
        };
        let (account, sequence) = self.runtime.store.create_account(new, setup).await?;
        if let Some(sequence) = sequence {
            self.runtime.bus.published(sequence);
        }
        info!(account_id = %account.id, setup_token = sequence.is_some(), "account created");
        Ok(account)
    }

    /// Sets the automatic answer floor from the hashes in the store (at start-up, then on
    /// every sweep, so it falls as migrated accounts are rehashed and rises after a
    /// `pwreset import` run elsewhere): the costliest one not under the server's
    /// parameters, read a page at a time.
    pub async fn scan_stored_hashes(&self) -> Result<()> {
        const PAGE: u64 = 1000;
        let prefix = self.hasher.native_prefix().to_owned();
        let (mut after, mut slowest) = (None, 0u64);
        loop {
            let (last, hashes) = self.runtime.store.foreign_hashes(&prefix, after, PAGE).await?;
            slowest = hashes.iter().map(|h| self.hasher.cost_micros(h)).fold(slowest, u64::max);
            match last {
                Some(_) if (hashes.len() as u64) < PAGE => break,
                Some(last) => after = Some(last),
                None => break,
            }
        }
        self.hasher.set_slowest_stored(slowest);
        Ok(())
    }

    /// No answer to a password check comes sooner than the floor after the call arrived:
    /// an imported hash costs what its own algorithm costs, and without the floor a
    /// migrated account would answer later than a native or unknown one. The wait
    /// sleeps; the CPU does the same work.
    async fn answer_floor(&self, arrived: tokio::time::Instant) {
        let floor = self.settings.verify_answer_floor.unwrap_or_else(|| self.hasher.answer_floor());
        if !floor.is_zero() {
            clock::pause_until_precisely(arrived + floor).await;
        }
    }

    /// `Some(account_id)` for the right password of an active account; `None` for a
    /// wrong password, an unknown e-mail or an inactive account, after the same argon2
    /// work and the same answer floor. A hash made under older parameters is upgraded on
    /// success.
    pub async fn verify_password(
        &self,
        email: Email,
        password: Password,
        client: &ClientInfo,
    ) -> Result<Option<AccountId>> {
        let arrived = clock::monotonic();
        self.limits.check(Rpc::VerifyPassword, client)?;
        let password = password.normalised()?;
        let record = self.runtime.store.account_by_email(&email).await?;
        let valid = self.check_under_lockout(&email, record, password).await;
        self.answer_floor(arrived).await;
        let valid = valid?;
        info!(outcome = if valid.is_some() { "valid" } else { "invalid" }, client_ip = %client.ip_string(), "password verified");
        Ok(valid.map(|(id, _)| id))
    }

    /// Counts the attempt against the address's lockout, then checks `password` against
    /// `record` (the argon2 work is the same whatever is missing); the account and the
    /// hash that matched, if it did.
    async fn check_under_lockout(
        &self,
        email: &Email,
        record: Option<AccountRecord>,
        password: NormalisedPassword,
    ) -> Result<Option<(AccountId, String)>> {
        let attempt = self.guard.reserve(email).await?;
        let valid = match self.check_password(record, password).await {
            Ok(valid) => valid,
            Err(e) => {
                self.guard.release(attempt).await;
                return Err(e);
            }
        };
        self.guard.settle(attempt, valid.is_some()).await?;
        Ok(valid)
    }

    /// The check behind `verify_password` and `change_password`, once its attempt is
    /// counted: the account and its (possibly upgraded) hash when the password is right.
    async fn check_password(
        &self,
        record: Option<AccountRecord>,
        password: NormalisedPassword,
    ) -> Result<Option<(AccountId, String)>> {
        let candidate = record.and_then(|r| match (r.account.active, r.password_hash) {
            (true, Some(hash)) => Some((r.account.id, hash)),
            _ => None,
        });
        let verified = self.hasher.verify(password, candidate.as_ref().map(|(_, h)| h.as_str())).await?;
        Ok(match (verified, candidate) {
            (Verified::No, _) | (_, None) => None,
            (Verified::Yes, Some(found)) => Some(found),
            (Verified::YesRehashed(new_hash), Some((id, old_hash))) => {
                self.runtime
                    .store
                    .upgrade_password_hash(id, &old_hash, new_hash.clone(), self.runtime.clock.now())
                    .await?;
                info!(account_id = %id, "password hash upgraded to current parameters");
                Some((id, new_hash))
            }
        })
    }

    /// A signed-in user's password change: the current password is checked like
    /// `VerifyPassword` (same limits, same lockout, the same argon2 work for an unknown
    /// or inactive account, or one without a password), then the new one against the
    /// policy. Revokes every live token of the account.
    pub async fn change_password(
        &self,
        id: AccountId,
        current: Password,
        new: Password,
        client: &ClientInfo,
    ) -> Result<()> {
        let arrived = clock::monotonic();
        self.limits.check(Rpc::VerifyPassword, client)?;
        let current_normalised = current.normalised_for("current_password")?;
        let record = self.runtime.store.account_by_id(id).await?;
        let found = record.as_ref().map(|r| r.account.clone());
        let checked = match &found {
            Some(account) => self.check_under_lockout(&account.email, record, current_normalised).await,
            // Unknown: no address to lock, but the same argon2 work.
            None => self.check_password(None, current_normalised).await,
        };
        // Whichever hash was checked, the answer (wrong password included) comes no
        // sooner than the floor.
        self.answer_floor(arrived).await;
        let checked = checked?;
        let (account, old_hash) = match (found, checked) {
            (None, _) => return Err(Error::AccountNotFound),
            (Some(account), _) if !account.active => return Err(Error::AccountInactive),
            (Some(_), None) => return Err(Error::IncorrectPassword { field: "current_password" }),
            (Some(account), Some((_, hash))) => (account, hash),
        };
        let new_normalised = self.settings.passwords.check(&new, &account.email, "new_password")?;
        if new_normalised.same_as(&current.normalised_for("current_password")?) {
            return Err(Error::policy("new_password", "same_as_current", "must differ from the current password"));
        }
        // The current password is the one just compared; the rest of the history is kept.
        let depth = self.settings.passwords.history.saturating_sub(1);
        refuse_reuse(&self.hasher, &self.runtime.store, id, None, &new, depth, "new_password").await?;
        let new_hash = self.hasher.hash(new_normalised).await?;
        let now = self.runtime.clock.now();
        let reason = PasswordChangeReason::Change;
        let event = NewEvent::password_changed(now, self.minter.event_retention(), &account, client, reason);
        let history_keep = self.settings.passwords.history.saturating_sub(1);
        let change = PasswordChange { account_id: id, old_hash, new_hash, now, history_keep };
        let result = self.runtime.store.change_password(change, event).await;
        self.runtime.cache.forget(id, None);
        self.runtime.bus.published(result?);
        info!(account_id = %id, client_ip = %client.ip_string(), "password changed by its owner");
        Ok(())
    }

    /// Issues a token for an account (`IssueToken`). `caller` names who asked, for the
    /// audit line (never the token).
    pub async fn issue_token(&self, request: TokenRequest, client: &ClientInfo, caller: &str) -> Result<IssuedToken> {
        let TokenRequest { account_id, purpose, ttl, delivery } = request;
        let ttl = self.settings.tokens.issued_ttl(purpose, ttl)?;
        let account = match self.runtime.store.account_by_id(account_id).await? {
            None => return Err(Error::AccountNotFound),
            Some(r) if !r.account.active => return Err(Error::AccountInactive),
            Some(r) if purpose == TokenPurpose::AccountSetup && r.account.has_usable_password => {
                return Err(Error::PasswordAlreadySet);
            }
            Some(r) => r.account,
        };
        let now = self.runtime.clock.now();
        let (raw, token) = self.minter.mint(&account, purpose, now, ttl, client, Channel::Email)?;
        let expires_at = token.expires_at;
        let event = match &delivery {
            Delivery::Event(locale) => Some(self.minter.announce(&account, &token, &raw, locale, Channel::Email)?),
            Delivery::Return => None,
        };
        let result = self.runtime.store.issue_token(TokenWrite { token, event }).await;
        // The earlier tokens of the purpose are revoked.
        self.runtime.cache.forget(account_id, None);
        if let Some(sequence) = result? {
            self.runtime.bus.published(sequence);
        }
        let delivery_name = match delivery {
            Delivery::Event(_) => "event",
            Delivery::Return => "return",
        };
        info!(account_id = %account_id, purpose = purpose.name(), delivery = delivery_name, caller, client_ip = %client.ip_string(), "token issued");
        metrics::counter!("pwreset_tokens_issued_total").increment(1);
        Ok(IssuedToken { token: (delivery == Delivery::Return).then_some(raw), expires_at })
    }

    /// The account, by id or e-mail.
    pub async fn get_account(&self, key: AccountKey) -> Result<Account> {
        let record = match key {
            AccountKey::Id(id) => self.runtime.store.account_by_id(id).await?,
            AccountKey::Email(email) => self.runtime.store.account_by_email(&email).await?,
        };
        record.map(|r| r.account).ok_or(Error::AccountNotFound)
    }

    /// Revokes the account's live tokens of `purpose` (every purpose with `None`); how many.
    pub async fn revoke_tokens(&self, id: AccountId, purpose: Option<TokenPurpose>, caller: &str) -> Result<u64> {
        let revoked = self
            .runtime
            .store
            .revoke_tokens(id, purpose, self.runtime.clock.now())
            .await?
            .ok_or(Error::AccountNotFound)?;
        self.runtime.cache.forget(id, None);
        let purpose = purpose.map_or("all", TokenPurpose::name);
        info!(account_id = %id, purpose, revoked, caller, "tokens revoked");
        Ok(revoked)
    }

    /// Deactivating revokes every live token of the account; reactivating does not
    /// bring them back.
    pub async fn set_active(&self, id: AccountId, active: bool) -> Result<Account> {
        let account =
            self.runtime.store.set_active(id, active, self.runtime.clock.now()).await?.ok_or(Error::AccountNotFound)?;
        if !active {
            self.runtime.cache.forget(id, None);
        }
        info!(account_id = %id, active, "account activity set");
        Ok(account)
    }
}
