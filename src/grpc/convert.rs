//! Domain ⇄ proto conversions. Request fields are parsed into domain types where the
//! handlers take them apart (`Email::parse`, `RawToken::parse`, …); this file turns
//! domain values back into messages.

use chrono::{DateTime, Utc};

use crate::domain::Account;
use crate::domain::event::{DomainEvent, Event, TokenCopy};
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
        }
    }
}

impl From<Event> for proto::Event {
    fn from(e: Event) -> Self {
        let kind = match e.event {
            DomainEvent::TokenCreated {
                account_id, email, token, expires_at, client_ip, user_agent, locale, ..
            } => proto::event::Kind::TokenCreated(proto::TokenCreated {
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
            }),
            DomainEvent::PasswordChanged { account_id, email, client_ip, user_agent } => {
                proto::event::Kind::PasswordChanged(proto::PasswordChanged {
                    account_id: account_id.to_string(),
                    email,
                    client_ip,
                    user_agent,
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
