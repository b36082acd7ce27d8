//! Domain ⇄ proto conversions. Request fields are parsed into domain types where the
//! handlers take them apart (`Email::parse`, `RawToken::parse`, …); this file turns
//! domain values back into messages.

use chrono::{DateTime, Utc};

use crate::domain::model::event::{Channel, DomainEvent, Event, PasswordChangeReason, TokenCopy, TokenCreated};
use crate::domain::model::token::TokenPurpose;
use crate::domain::model::{Account, Error, Result};
use crate::proto;

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0) }
}

impl From<Account> for proto::Account {
    fn from(a: Account) -> Self {
        proto::Account {
            account_id: a.id.to_string(),
            email: a.email.as_str().to_owned(),
            active: a.active,
            has_usable_password: a.has_usable_password,
            created_at: Some(timestamp(a.created_at)),
            password_changed_at: a.password_changed_at.map(timestamp),
            username: a.username.map(|u| u.as_str().to_owned()).unwrap_or_default(),
            phone: a.phone.map(|p| p.as_str().to_owned()).unwrap_or_default(),
        }
    }
}

impl From<TokenPurpose> for proto::TokenPurpose {
    fn from(p: TokenPurpose) -> Self {
        match p {
            TokenPurpose::PasswordReset => proto::TokenPurpose::PasswordReset,
            TokenPurpose::AccountSetup => proto::TokenPurpose::AccountSetup,
        }
    }
}

impl From<PasswordChangeReason> for proto::PasswordChangeReason {
    fn from(r: PasswordChangeReason) -> Self {
        match r {
            PasswordChangeReason::Reset => proto::PasswordChangeReason::Reset,
            PasswordChangeReason::AccountSetup => proto::PasswordChangeReason::AccountSetup,
            PasswordChangeReason::Change => proto::PasswordChangeReason::Change,
        }
    }
}

/// A request's `purpose`: `None` for UNSPECIFIED (what that means is the RPC's choice).
pub fn purpose(field: &'static str, value: i32) -> Result<Option<TokenPurpose>> {
    match proto::TokenPurpose::try_from(value) {
        Ok(proto::TokenPurpose::Unspecified) => Ok(None),
        Ok(proto::TokenPurpose::PasswordReset) => Ok(Some(TokenPurpose::PasswordReset)),
        Ok(proto::TokenPurpose::AccountSetup) => Ok(Some(TokenPurpose::AccountSetup)),
        Err(_) => Err(Error::invalid(field, "is not a known TokenPurpose")),
    }
}

/// A request's `google.protobuf.Duration`, which must be non-negative.
pub fn duration(field: &'static str, value: prost_types::Duration) -> Result<std::time::Duration> {
    match (u64::try_from(value.seconds), u32::try_from(value.nanos)) {
        (Ok(seconds), Ok(nanos)) if nanos < 1_000_000_000 => Ok(std::time::Duration::new(seconds, nanos)),
        _ => Err(Error::invalid(field, "must be a non-negative duration")),
    }
}

impl From<Event> for proto::Event {
    fn from(e: Event) -> Self {
        let kind = match e.event {
            DomainEvent::TokenCreated(TokenCreated {
                account_id,
                email,
                token,
                expires_at,
                client_ip,
                user_agent,
                locale,
                purpose,
                channel,
                phone,
                username,
                ..
            }) => proto::event::Kind::TokenCreated(proto::TokenCreated {
                account_id: account_id.to_string(),
                email,
                // Empty once the token is no longer live (its copy destroyed).
                token: match token {
                    TokenCopy::Raw(raw) => raw,
                    TokenCopy::Sealed(_) | TokenCopy::Gone => String::new(),
                },
                expires_at: Some(timestamp(expires_at)),
                client_ip,
                user_agent,
                locale,
                purpose: proto::TokenPurpose::from(purpose).into(),
                channel: match channel {
                    Channel::Email => proto::Channel::Email,
                    Channel::Sms => proto::Channel::Sms,
                }
                .into(),
                phone,
                username,
            }),
            DomainEvent::PasswordChanged { account_id, email, client_ip, user_agent, reason } => {
                proto::event::Kind::PasswordChanged(proto::PasswordChanged {
                    account_id: account_id.to_string(),
                    email,
                    client_ip,
                    user_agent,
                    reason: proto::PasswordChangeReason::from(reason).into(),
                })
            }
            DomainEvent::ResetRequestedForUnknownEmail { email, client_ip, user_agent, locale } => {
                proto::event::Kind::ResetRequestedForUnknownEmail(proto::ResetRequestedForUnknownEmail {
                    email,
                    client_ip,
                    user_agent,
                    locale,
                })
            }
        };
        proto::Event { sequence: e.sequence.wire(), occurred_at: Some(timestamp(e.occurred_at)), kind: Some(kind) }
    }
}
