//! The credential store: creating accounts, checking passwords in comparable time for
//! every kind of failure, and switching accounts on and off.

use std::sync::Arc;

use tracing::info;

use super::email::Email;
use super::error::{Error, Result};
use super::guard::FailureGuard;
use super::hasher::{Hasher, Verified};
use super::limits::{Limits, Rpc};
use super::password::{NormalisedPassword, Password, PasswordPolicy};
use super::persistence::NewAccount;
use super::{Account, AccountId, ClientInfo, Core};

pub struct AccountService {
    core: Core,
    hasher: Arc<Hasher>,
    passwords: PasswordPolicy,
    limits: Arc<Limits>,
    guard: Arc<FailureGuard>,
}

impl AccountService {
    pub fn new(
        core: Core,
        hasher: Arc<Hasher>,
        passwords: PasswordPolicy,
        limits: Arc<Limits>,
        guard: Arc<FailureGuard>,
    ) -> Self {
        AccountService { core, hasher, passwords, limits, guard }
    }

    /// Creates an active account; without a password it has no usable password.
    pub async fn create_account(&self, email: Email, password: Option<Password>) -> Result<Account> {
        let password_hash = match password {
            Some(password) => {
                let password = self.passwords.check(&password, &email, "password")?;
                Some(self.hasher.hash(password).await?)
            }
            None => None,
        };
        let new = NewAccount { id: AccountId::generate(), email, password_hash, created_at: self.core.clock.now() };
        let account = self.core.store.create_account(new).await?;
        info!(account_id = %account.id, "account created");
        Ok(account)
    }

    /// `Some(account_id)` for the right password of an active account; `None` for a
    /// wrong password, an unknown e-mail or an inactive account, after the same argon2
    /// work. A hash made under older parameters is upgraded on success.
    pub async fn verify_password(
        &self,
        email: Email,
        password: Password,
        client: &ClientInfo,
    ) -> Result<Option<AccountId>> {
        self.limits.check(Rpc::VerifyPassword, client)?;
        let password = password.normalised()?;
        let attempt = self.guard.reserve(&email).await?;
        let valid = match self.check_password(&email, password).await {
            Ok(valid) => valid,
            Err(e) => {
                self.guard.release(attempt).await;
                return Err(e);
            }
        };
        self.guard.settle(attempt, valid.is_some()).await?;
        info!(outcome = if valid.is_some() { "valid" } else { "invalid" }, client_ip = %client.ip_string(), "password verified");
        Ok(valid)
    }

    /// The check behind `verify_password`, once its attempt is counted.
    async fn check_password(&self, email: &Email, password: NormalisedPassword) -> Result<Option<AccountId>> {
        let record = self.core.store.account_by_email(email).await?;
        let candidate = record.and_then(|r| match (r.account.active, r.password_hash) {
            (true, Some(hash)) => Some((r.account.id, hash)),
            _ => None,
        });
        let verified = self.hasher.verify(password, candidate.as_ref().map(|(_, h)| h.as_str())).await?;
        Ok(match (verified, candidate) {
            (Verified::No, _) | (_, None) => None,
            (Verified::Yes, Some((id, _))) => Some(id),
            (Verified::YesRehashed(new_hash), Some((id, old_hash))) => {
                self.core.store.upgrade_password_hash(id, &old_hash, new_hash, self.core.clock.now()).await?;
                info!(account_id = %id, "password hash upgraded to current parameters");
                Some(id)
            }
        })
    }

    /// Deactivating revokes every live token of the account; reactivating does not
    /// bring them back.
    pub async fn set_active(&self, id: AccountId, active: bool) -> Result<Account> {
        let account =
            self.core.store.set_active(id, active, self.core.clock.now()).await?.ok_or(Error::AccountNotFound)?;
        if !active {
            self.core.cache.forget(id, None);
        }
        info!(account_id = %id, active, "account activity set");
        Ok(account)
    }
}
