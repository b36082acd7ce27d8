//! The rules of the service. Imports neither `tonic` nor `sea_orm`: it reads time
//! through [`clock::Clock`], randomness through the token generator and hasher, and
//! persists through `store`, which owns every transaction.

pub mod accounts;
pub mod cache;
pub mod clock;
pub mod email;
pub mod error;
pub mod guard;
pub mod hasher;
pub mod keys;
pub mod limits;
pub mod password;
pub mod reset;
pub mod token;
pub mod writer;

pub use error::{Error, Result};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use email::Email;

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
    pub id: Uuid,
    pub email: Email,
    pub active: bool,
    pub has_usable_password: bool,
    pub created_at: DateTime<Utc>,
}
