//! Rows ⇄ domain values for the events table: the one place that knows how each
//! [`DomainEvent`] is laid out in columns.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use super::entity::{events, reset_tokens};
use super::{from_millis, millis};
use crate::domain::model::AccountId;
use crate::domain::model::event::{
    Channel, DomainEvent, Event, EventKind, NewEvent, PasswordChangeReason, Sequence, TokenCopy, TokenCreated,
};
use crate::domain::model::seal::SealedToken;
use crate::domain::model::token::{NewToken, TokenPurpose};

/// The row of a new event. An event without an account (an unknown address) is stored
/// under the nil account id.
pub(super) fn event_model(new: NewEvent) -> events::ActiveModel {
    let kind = new.event.kind().code();
    let mut row = events::ActiveModel {
        sequence: NotSet,
        occurred_at: Set(millis(new.occurred_at)),
        kind: Set(kind),
        account_id: Set(Uuid::nil()),
        email: NotSet,
        token_id: Set(None),
        sealed_token: Set(None),
        key_id: Set(None),
        expires_at: Set(None),
        client_ip: NotSet,
        user_agent: NotSet,
        locale: Set(String::new()),
        retain_until: Set(millis(new.retain_until)),
        purpose: Set(TokenPurpose::PasswordReset.code()),
        reason: Set(PasswordChangeReason::Reset.code()),
        channel: Set(Channel::Email.code()),
        phone: Set(String::new()),
        username: Set(String::new()),
    };
    match new.event {
        DomainEvent::TokenCreated(TokenCreated {
            account_id,
            email,
            token_id,
            token,
            expires_at,
            client_ip,
            user_agent,
            locale,
            purpose,
            channel,
            phone,
            username,
        }) => {
            if let TokenCopy::Sealed(sealed) = token {
                row.sealed_token = Set(Some(sealed.bytes));
                row.key_id = Set(Some(sealed.key_id));
            }
            row.account_id = Set(account_id.uuid());
            row.email = Set(email);
            row.token_id = Set(Some(token_id));
            row.expires_at = Set(Some(millis(expires_at)));
            row.client_ip = Set(client_ip);
            row.user_agent = Set(user_agent);
            row.locale = Set(locale);
            row.purpose = Set(purpose.code());
            row.channel = Set(channel.code());
            row.phone = Set(phone);
            row.username = Set(username);
        }
        DomainEvent::PasswordChanged { account_id, email, client_ip, user_agent, reason } => {
            row.account_id = Set(account_id.uuid());
            row.email = Set(email);
            row.client_ip = Set(client_ip);
            row.user_agent = Set(user_agent);
            row.reason = Set(reason.code());
        }
        DomainEvent::ResetRequestedForUnknownEmail { email, client_ip, user_agent, locale } => {
            row.email = Set(email);
            row.client_ip = Set(client_ip);
            row.user_agent = Set(user_agent);
            row.locale = Set(locale);
        }
    }
    row
}

/// The event a row holds; `None` for a kind this version does not know.
pub(super) fn to_event(row: events::Model) -> Option<Event> {
    let event = match EventKind::from_code(row.kind)? {
        EventKind::TokenCreated => DomainEvent::TokenCreated(TokenCreated {
            account_id: AccountId::from_uuid(row.account_id),
            email: row.email,
            token_id: row.token_id.unwrap_or_default(),
            token: match (row.sealed_token, row.key_id) {
                (Some(bytes), Some(key_id)) => TokenCopy::Sealed(SealedToken { key_id, bytes }),
                _ => TokenCopy::Gone,
            },
            expires_at: from_millis(row.expires_at.unwrap_or(row.occurred_at)),
            client_ip: row.client_ip,
            user_agent: row.user_agent,
            locale: row.locale,
            purpose: TokenPurpose::from_code(row.purpose),
            channel: Channel::from_code(row.channel),
            phone: row.phone,
            username: row.username,
        }),
        EventKind::PasswordChanged => DomainEvent::PasswordChanged {
            account_id: AccountId::from_uuid(row.account_id),
            email: row.email,
            client_ip: row.client_ip,
            user_agent: row.user_agent,
            reason: PasswordChangeReason::from_code(row.reason),
        },
        EventKind::ResetRequestedForUnknownEmail => DomainEvent::ResetRequestedForUnknownEmail {
            email: row.email,
            client_ip: row.client_ip,
            user_agent: row.user_agent,
            locale: row.locale,
        },
    };
    Some(Event { sequence: Sequence::from_db(row.sequence), occurred_at: from_millis(row.occurred_at), event })
}

/// The row of a new token; `revoked_at` when a newer token of the same batch supersedes it.
pub(super) fn token_model(
    token: NewToken,
    revoked_at: Option<chrono::DateTime<chrono::Utc>>,
) -> reset_tokens::ActiveModel {
    reset_tokens::ActiveModel {
        id: Set(token.id),
        account_id: Set(token.account_id.uuid()),
        digest: Set(token.digest.0.to_vec()),
        created_at: Set(millis(token.created_at)),
        expires_at: Set(millis(token.expires_at)),
        used_at: Set(None),
        revoked_at: Set(revoked_at.map(millis)),
        client_ip: Set(token.client_ip),
        user_agent: Set(token.user_agent),
        purpose: Set(token.purpose.code()),
        bound: Set(token.bound),
        failed_attempts: Set(0),
    }
}

/// The liveness rule in SQL, for the statements that change live tokens only: not used,
/// not revoked, not expired at `now`. The rule's fourth part in
/// [`TokenRecord::refusal`](crate::domain::model::token::TokenRecord::refusal), the
/// account's active flag, holds through the account: deactivating it revokes its
/// tokens. A test in `tokens.rs` keeps the two forms equal.
pub(super) fn live_at(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(reset_tokens::Column::UsedAt.is_null())
        .add(reset_tokens::Column::RevokedAt.is_null())
        .add(reset_tokens::Column::ExpiresAt.gt(millis(now)))
}
