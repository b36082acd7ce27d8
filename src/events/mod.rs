//! The event stream: the outbox read side, fan-out to subscribers and token sealing.
//! Used by `domain` (to seal and publish) and `grpc` (to serve SubscribeEvents).

pub mod bus;
pub mod seal;
pub mod subscription;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// An event as delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub sequence: u64,
    pub occurred_at: DateTime<Utc>,
    pub payload: Payload,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Payload {
    TokenCreated {
        account_id: Uuid,
        email: String,
        /// The raw token; empty once the token is no longer live.
        token: String,
        expires_at: DateTime<Utc>,
        client_ip: String,
        user_agent: String,
        locale: String,
    },
    PasswordChanged {
        account_id: Uuid,
        email: String,
        client_ip: String,
        user_agent: String,
    },
    ResetRequestedForUnknownEmail {
        email: String,
        client_ip: String,
        user_agent: String,
        locale: String,
    },
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::TokenCreated { account_id, .. } => {
                f.debug_struct("TokenCreated").field("account_id", account_id).finish_non_exhaustive()
            }
            Payload::PasswordChanged { account_id, .. } => {
                f.debug_struct("PasswordChanged").field("account_id", account_id).finish_non_exhaustive()
            }
            Payload::ResetRequestedForUnknownEmail { .. } => {
                f.debug_struct("ResetRequestedForUnknownEmail").finish_non_exhaustive()
            }
        }
    }
}
