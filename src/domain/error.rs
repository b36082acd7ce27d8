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
    #[error("an account with this email already exists")]
    AccountExists,
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
