//! The events the service publishes: one enum, [`DomainEvent`], built by its
//! constructors (which own the retention rule), stored by `store`, delivered by
//! `events` and converted to proto by `grpc`. Adding an event kind is one variant here
//! (with its [`EventKind`] code and constructor), its store mapping and its proto
//! conversion.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::email::Email;
use super::token::{NewToken, TokenPurpose};
use super::{Account, AccountId, ClientInfo};

/// The position of an event in the stream: assigned by the database at commit, in
/// commit order. Zero means "before the first event".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sequence(i64);

impl Sequence {
    pub const ZERO: Sequence = Sequence(0);

    /// As the database stores it.
    pub fn from_db(value: i64) -> Self {
        Sequence(value.max(0))
    }

    pub fn db(self) -> i64 {
        self.0
    }

    /// As a caller sends it (`after_sequence`).
    pub fn from_wire(value: u64) -> super::Result<Self> {
        i64::try_from(value).map(Sequence).map_err(|_| super::Error::invalid("after_sequence", "is too large"))
    }

    pub fn wire(self) -> u64 {
        self.0.unsigned_abs()
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The kinds of event, with the stable code each is stored (and sealed) under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    TokenCreated,
    PasswordChanged,
    ResetRequestedForUnknownEmail,
}

impl EventKind {
    pub fn code(self) -> i16 {
        match self {
            EventKind::TokenCreated => 1,
            EventKind::PasswordChanged => 2,
            EventKind::ResetRequestedForUnknownEmail => 3,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(EventKind::TokenCreated),
            2 => Some(EventKind::PasswordChanged),
            3 => Some(EventKind::ResetRequestedForUnknownEmail),
            _ => None,
        }
    }
}

/// How a token reaches its user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Channel {
    #[default]
    Email,
    Sms,
}

impl Channel {
    pub fn code(self) -> i16 {
        match self {
            Channel::Email => 1,
            Channel::Sms => 2,
        }
    }

    pub fn from_code(code: i16) -> Self {
        if code == 2 { Channel::Sms } else { Channel::Email }
    }
}

/// Why a password changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasswordChangeReason {
    /// With a reset token.
    Reset,
    /// The first password, with an account-setup token.
    AccountSetup,
    /// By its owner, with the current password.
    Change,
}

impl PasswordChangeReason {
    pub fn code(self) -> i16 {
        match self {
            PasswordChangeReason::Reset => 1,
            PasswordChangeReason::AccountSetup => 2,
            PasswordChangeReason::Change => 3,
        }
    }

    /// A stored code; rows from before reasons were recorded are resets.
    pub fn from_code(code: i16) -> Self {
        match code {
            2 => PasswordChangeReason::AccountSetup,
            3 => PasswordChangeReason::Change,
            _ => PasswordChangeReason::Reset,
        }
    }

    /// The change a token of `purpose` makes.
    pub fn confirming(purpose: TokenPurpose) -> Self {
        match purpose {
            TokenPurpose::PasswordReset => PasswordChangeReason::Reset,
            TokenPurpose::AccountSetup => PasswordChangeReason::AccountSetup,
        }
    }
}

/// A token sealed for storage (by `seal::Sealer`): `nonce ‖ ciphertext ‖ tag`, and the
/// key it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedToken {
    pub key_id: i64,
    pub bytes: Vec<u8>,
}

/// The copy of a raw token an event carries for its notifier.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenCopy {
    /// As stored: sealed (see `seal`).
    Sealed(SealedToken),
    /// Opened for delivery.
    Raw(String),
    /// Destroyed: the token is used, revoked or expired (or did not open).
    Gone,
}

impl fmt::Debug for TokenCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenCopy::Sealed(_) => "Sealed",
            TokenCopy::Raw(_) => "Raw([redacted])",
            TokenCopy::Gone => "Gone",
        })
    }
}

/// A token was made, with what its notifier needs to deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCreated {
    pub account_id: AccountId,
    pub email: String,
    pub token_id: Uuid,
    pub token: TokenCopy,
    pub expires_at: DateTime<Utc>,
    pub client_ip: String,
    pub user_agent: String,
    pub locale: String,
    pub purpose: TokenPurpose,
    /// How it goes out: decided once, here, for everyone after (sealing, delivery).
    pub channel: Channel,
    /// E.164, for `Channel::Sms`; empty otherwise.
    pub phone: String,
    /// The account's username, if it has one.
    pub username: String,
}

impl TokenCreated {
    /// `token` was created for `account` (its owner), to go out by `channel`; its copy
    /// is still to be sealed.
    pub fn new(account: &Account, token: &NewToken, locale: &str, channel: Channel) -> Self {
        TokenCreated {
            account_id: account.id,
            email: account.email.as_str().to_owned(),
            token_id: token.id,
            token: TokenCopy::Gone,
            expires_at: token.expires_at,
            client_ip: token.client_ip.clone(),
            user_agent: token.user_agent.clone(),
            locale: locale.to_owned(),
            purpose: token.purpose,
            channel,
            phone: match (channel, &account.phone) {
                (Channel::Sms, Some(phone)) => phone.as_str().to_owned(),
                _ => String::new(),
            },
            username: account.username.as_ref().map(|u| u.as_str().to_owned()).unwrap_or_default(),
        }
    }

    /// The number a code is texted to (SMS only).
    pub fn sms_phone(&self) -> Option<&str> {
        (self.channel == Channel::Sms).then_some(self.phone.as_str())
    }
}

/// What happened, with what a notifier needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    TokenCreated(TokenCreated),
    PasswordChanged {
        account_id: AccountId,
        email: String,
        client_ip: String,
        user_agent: String,
        reason: PasswordChangeReason,
    },
    ResetRequestedForUnknownEmail {
        email: String,
        client_ip: String,
        user_agent: String,
        locale: String,
    },
}

impl DomainEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            DomainEvent::TokenCreated(_) => EventKind::TokenCreated,
            DomainEvent::PasswordChanged { .. } => EventKind::PasswordChanged,
            DomainEvent::ResetRequestedForUnknownEmail { .. } => EventKind::ResetRequestedForUnknownEmail,
        }
    }

    /// The account whose tokens the event changed, if any.
    pub fn account_id(&self) -> Option<AccountId> {
        match self {
            DomainEvent::TokenCreated(created) => Some(created.account_id),
            DomainEvent::PasswordChanged { account_id, .. } => Some(*account_id),
            DomainEvent::ResetRequestedForUnknownEmail { .. } => None,
        }
    }

    pub fn email(&self) -> &str {
        match self {
            DomainEvent::TokenCreated(TokenCreated { email, .. })
            | DomainEvent::PasswordChanged { email, .. }
            | DomainEvent::ResetRequestedForUnknownEmail { email, .. } => email,
        }
    }
}

/// An event about to be written: no sequence yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub occurred_at: DateTime<Utc>,
    /// Until when it stays replayable.
    pub retain_until: DateTime<Utc>,
    pub event: DomainEvent,
}

/// A committed event, as read back and delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub sequence: Sequence,
    pub occurred_at: DateTime<Utc>,
    pub event: DomainEvent,
}

/// How long an event stays replayable: the retention window, and a `TokenCreated` at
/// least until its token expires.
pub fn retain_until(now: DateTime<Utc>, retention: Duration, expires_at: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let window = now + retention;
    expires_at.map_or(window, |e| e.max(window))
}

impl NewEvent {
    /// `created`, replayable at least until its token expires.
    pub fn token_created(retention: Duration, created_at: DateTime<Utc>, created: TokenCreated) -> Self {
        NewEvent {
            occurred_at: created_at,
            retain_until: retain_until(created_at, retention, Some(created.expires_at)),
            event: DomainEvent::TokenCreated(created),
        }
    }

    pub fn password_changed(
        now: DateTime<Utc>,
        retention: Duration,
        account: &Account,
        client: &ClientInfo,
        reason: PasswordChangeReason,
    ) -> Self {
        NewEvent {
            occurred_at: now,
            retain_until: retain_until(now, retention, None),
            event: DomainEvent::PasswordChanged {
                account_id: account.id,
                email: account.email.as_str().to_owned(),
                client_ip: client.ip_string(),
                user_agent: client.user_agent.clone(),
                reason,
            },
        }
    }

    pub fn unknown_email(
        now: DateTime<Utc>,
        retention: Duration,
        email: &Email,
        client: &ClientInfo,
        locale: &str,
    ) -> Self {
        NewEvent {
            occurred_at: now,
            retain_until: retain_until(now, retention, None),
            event: DomainEvent::ResetRequestedForUnknownEmail {
                email: email.as_str().to_owned(),
                client_ip: client.ip_string(),
                user_agent: client.user_agent.clone(),
                locale: locale.to_owned(),
            },
        }
    }
}
