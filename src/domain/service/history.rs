//! Password reuse (`--password-history N`, PCI DSS 8.3.7): a new password must differ
//! from the account's last N, the current one included. Each comparison is one argon2
//! (or imported-format) check on the hashing pool, so N is bounded
//! ([`MAX_PASSWORD_HISTORY`](super::password::MAX_PASSWORD_HISTORY)) and the check runs
//! only once every cheaper rule has passed.

use crate::domain::model::AccountId;
use crate::domain::model::error::{Error, Result};
use crate::domain::model::password::Password;
use crate::domain::model::persistence::Db;
use crate::domain::runtime::hasher::{Hasher, Verified};

/// `REUSED` on `field` when `password` matches `current` or one of the account's kept
/// hashes (`depth` in all, `current` counted when given).
pub async fn refuse_reuse(
    hasher: &Hasher,
    store: &Db,
    account: AccountId,
    current: Option<&str>,
    password: &Password,
    depth: u32,
    field: &'static str,
) -> Result<()> {
    if depth == 0 {
        return Ok(());
    }
    let kept = depth - u32::from(current.is_some());
    let mut hashes: Vec<String> = current.map(str::to_owned).into_iter().collect();
    hashes.extend(store.password_history(account, kept).await?);
    for hash in &hashes {
        if hasher.verify(password.normalised_for(field)?, Some(hash)).await? != Verified::No {
            return Err(Error::policy(field, "reused", "must not be one of the account's recent passwords"));
        }
    }
    Ok(())
}
