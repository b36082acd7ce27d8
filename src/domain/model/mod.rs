//! The model: the types and rules of accounts, logins, passwords, tokens and events,
//! and the persistence traits `store` implements. Imports nothing else of the crate
//! (not even the rest of `domain`), and neither `tonic` nor `sea_orm`.

pub mod breached;
pub mod email;
pub mod error;
pub mod event;
pub mod imported;
pub mod keys;
pub mod login;
pub mod password;
pub mod persistence;
pub mod seal;
pub mod textfile;
pub mod token;

pub use error::{Error, Result};

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use email::Email;

/// An account's id (a UUID v7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(Uuid);

impl AccountId {
    /// A fresh id (time-ordered).
    pub fn generate() -> Self {
        AccountId(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        AccountId(id)
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }

    /// From a request's `account_id`.
    pub fn parse(raw: &str) -> Result<Self> {
        if raw.len() > 64 {
            return Err(Error::invalid("account_id", "must be a UUID"));
        }
        Uuid::parse_str(raw).map(AccountId).map_err(|_| Error::invalid("account_id", "must be a UUID"))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A BCP 47 language tag for the notifier's message (may be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locale(String);

impl Locale {
    /// BCP 47 tags are short; anything longer is refused.
    pub const MAX_BYTES: usize = 35;

    pub fn parse(locale: String) -> Result<Self> {
        let ok = locale.len() <= Self::MAX_BYTES
            && locale.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok { Ok(Locale(locale)) } else { Err(Error::invalid("locale", "must be a BCP 47 tag such as en-GB")) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The end user a backend caller acts for, as far as the request tells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: String,
}

impl ClientInfo {
    pub fn ip_string(&self) -> String {
        self.ip.map(|ip| ip.to_string()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub email: Email,
    pub active: bool,
    pub has_usable_password: bool,
    pub created_at: DateTime<Utc>,
    /// When a password was last set (at creation, a reset, a setup or a change).
    pub password_changed_at: Option<DateTime<Utc>>,
    pub username: Option<login::Username>,
    pub phone: Option<login::Phone>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_must_be_a_short_tag() {
        assert!(Locale::parse(String::new()).is_ok());
        assert!(Locale::parse("en-GB".into()).is_ok());
        assert!(Locale::parse("en GB".into()).is_err());
        assert!(Locale::parse("x".repeat(36)).is_err());
    }

    #[test]
    fn account_ids_are_uuids() {
        assert!(AccountId::parse("not-a-uuid").is_err());
        assert!(AccountId::parse(&"0".repeat(65)).is_err());
        let id = AccountId::generate();
        assert_eq!(AccountId::parse(&id.to_string()).ok(), Some(id));
    }
}
