//! The one error type of the service: one variant per outcome a caller can act on.
//! `grpc/status.rs` maps each to a status; nothing else inspects them.

use std::time::Duration;

/// One failed rule of the password policy, reported as its own field violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyViolation {
    pub rule: &'static str,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// `field` is the request field the password came in.
    #[error("{field} does not meet the password policy")]
    WeakPassword { field: &'static str, violations: Vec<PolicyViolation> },
    /// Unknown, expired, used and revoked tokens all end here, so callers cannot tell them apart.
    #[error("token not found")]
    TokenNotFound,
    #[error("account not found")]
    AccountNotFound,
    /// The e-mail, username or phone is taken.
    #[error("an account with this e-mail, username or phone already exists")]
    AccountExists,
    #[error("the account is inactive")]
    AccountInactive,
    /// An account-setup token for an account that already has a usable password.
    #[error("the account already has a password")]
    PasswordAlreadySet,
    /// A password the caller had to prove (`field`) was wrong, or the account has none.
    #[error("{field} is incorrect")]
    IncorrectPassword { field: &'static str },
    /// The password changed between its check and the write: the caller may try again.
    #[error("the password changed concurrently")]
    PasswordChangedConcurrently,
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
    /// The argon2 queue is full: answered at once rather than queued without end.
    #[error("password hashing is at capacity")]
    HashingBusy,
    /// Too many reset requests are being processed; same answer for every address.
    #[error("reset requests are at capacity")]
    ResetBusy,
    #[error("the cursor is older than the retained events")]
    CursorExpired,
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { field, reason: reason.into() }
    }

    /// One failed password rule, `rule` its reason code (lower case).
    pub fn policy(field: &'static str, rule: &'static str, description: impl Into<String>) -> Self {
        Error::WeakPassword { field, violations: vec![PolicyViolation { rule, description: description.into() }] }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
