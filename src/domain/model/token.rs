//! Reset tokens: generation, the size limit on presented tokens, the keyed digest that
//! is all the database ever holds of them, and the record with the liveness rule.

use std::fmt;
use std::time::Duration;

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::{RngExt, TryRng};
use sha2::Sha256;
use uuid::Uuid;

use super::AccountId;
use super::error::{Error, Result};

/// Longest token accepted on the wire; longer input is `INVALID_ARGUMENT` before any work.
pub const MAX_TOKEN_BYTES: usize = 256;

/// How tokens are made, after django-rest-passwordreset's generators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenGenerator {
    /// `n` bytes from the OS generator, base64url without padding (default: 32 bytes).
    RandomBytes(usize),
    /// Alphanumeric string with a length drawn from `min..=max`.
    RandomString { min: usize, max: usize },
    /// Decimal code drawn from `min..=max`. A small search space: such codes are bound
    /// to their login, with their failed attempts capped.
    Numeric { min: u64, max: u64 },
}

impl Default for TokenGenerator {
    fn default() -> Self {
        TokenGenerator::RandomBytes(32)
    }
}

impl TokenGenerator {
    pub fn generate(&self) -> Result<RawToken> {
        let text = match *self {
            TokenGenerator::RandomBytes(n) => {
                let mut bytes = vec![0u8; n];
                rand::rngs::SysRng.try_fill_bytes(&mut bytes).map_err(|e| Error::Internal(anyhow!("OS RNG: {e}")))?;
                URL_SAFE_NO_PAD.encode(bytes)
            }
            TokenGenerator::RandomString { min, max } => {
                const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                let mut rng = rand::rng();
                let len = rng.random_range(min..=max);
                (0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
            }
            TokenGenerator::Numeric { min, max } => rand::rng().random_range(min..=max).to_string(),
        };
        Ok(RawToken(text))
    }

    /// Base-2 logarithm of the number of distinct tokens (a lower bound for strings).
    pub fn search_space_bits(&self) -> f64 {
        match *self {
            TokenGenerator::RandomBytes(n) => 8.0 * n as f64,
            TokenGenerator::RandomString { min, .. } => min as f64 * 62f64.log2(),
            TokenGenerator::Numeric { min, max } => ((max - min) as f64 + 1.0).log2(),
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, TokenGenerator::Numeric { .. })
    }
}

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TokenPurpose {
    /// Replace a forgotten password.
    #[default]
    PasswordReset,
    /// Set the first password of an account created without one (an invitation).
    AccountSetup,
}

impl TokenPurpose {
    /// The stable code it is stored under.
    pub fn code(self) -> i16 {
        match self {
            TokenPurpose::PasswordReset => 1,
            TokenPurpose::AccountSetup => 2,
        }
    }

    /// A stored code; anything unknown is a reset (the narrowest rights).
    pub fn from_code(code: i16) -> Self {
        match code {
            2 => TokenPurpose::AccountSetup,
            _ => TokenPurpose::PasswordReset,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TokenPurpose::PasswordReset => "password_reset",
            TokenPurpose::AccountSetup => "account_setup",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub generator: TokenGenerator,
    /// How long a reset token stays live (default 30 minutes).
    pub ttl: Duration,
    /// How long an account-setup token stays live (default 7 days).
    pub setup_ttl: Duration,
    /// The longest lifetime a caller of `IssueToken` may ask for (default 30 days).
    pub max_ttl: Duration,
    /// How long a replica trusts a cached live token (default 10 s; zero: no cache).
    pub cache_ttl: Duration,
    /// Whether an account without a usable password may reset (default: no, as in
    /// django-rest-passwordreset).
    pub allow_without_usable_password: bool,
    /// The short codes texted by SMS (the numeric range of `--token-min-number` and
    /// `--token-max-number`; default 10000..=99999).
    pub sms_codes: TokenGenerator,
    /// Failed attempts against an account with a live short code before that code is
    /// revoked (default 5).
    pub max_code_attempts: u32,
}

/// The shortest lifetime a caller of `IssueToken` may ask for.
pub const MIN_REQUESTED_TTL: Duration = Duration::from_secs(60);

impl TokenPolicy {
    /// A purpose's default lifetime.
    pub fn ttl_for(&self, purpose: TokenPurpose) -> Duration {
        match purpose {
            TokenPurpose::PasswordReset => self.ttl,
            TokenPurpose::AccountSetup => self.setup_ttl,
        }
    }

    /// The lifetime of an issued token: the purpose's default, or the one asked for
    /// within [`MIN_REQUESTED_TTL`]`..=max_ttl`.
    pub fn issued_ttl(&self, purpose: TokenPurpose, requested: Option<Duration>) -> Result<Duration> {
        match requested {
            None => Ok(self.ttl_for(purpose)),
            Some(ttl) if (MIN_REQUESTED_TTL..=self.max_ttl).contains(&ttl) => Ok(ttl),
            Some(_) => Err(Error::invalid(
                "ttl",
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(MIN_REQUESTED_TTL),
                    humantime::format_duration(self.max_ttl)
                ),
            )),
        }
    }
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            generator: TokenGenerator::default(),
            ttl: Duration::from_secs(30 * 60),
            setup_ttl: Duration::from_secs(7 * 24 * 3600),
            max_ttl: Duration::from_secs(30 * 24 * 3600),
            cache_ttl: Duration::from_secs(10),
            allow_without_usable_password: false,
            sms_codes: TokenGenerator::Numeric { min: 10_000, max: 99_999 },
            max_code_attempts: 5,
        }
    }
}

/// A token in clear, as generated or presented. Never printed: `Debug` is `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RawToken(String);

impl RawToken {
    pub fn parse(raw: String) -> Result<Self> {
        if raw.is_empty() {
            return Err(Error::invalid("token", "must not be empty"));
        }
        if raw.len() > MAX_TOKEN_BYTES {
            return Err(Error::invalid("token", format!("must be at most {MAX_TOKEN_BYTES} bytes")));
        }
        Ok(RawToken(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// HMAC-SHA-256 of a token under a server key: a database dump alone cannot be
/// searched for short codes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TokenDigest(pub [u8; 32]);

/// Digests new tokens under the current key; looks presented tokens up under the
/// current and every previous key, so rotating the server key keeps live tokens live.
#[derive(Clone)]
pub struct TokenDigester {
    current: [u8; 32],
    previous: Vec<[u8; 32]>,
}

fn hmac(key: &[u8; 32], token: &RawToken) -> TokenDigest {
    // HMAC accepts keys of any length, so this cannot fail for a 32-byte key.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(token.expose().as_bytes());
    TokenDigest(mac.finalize().into_bytes().into())
}

/// What a bound code's digest covers: a label, the account id and the code.
fn bound_input(account: AccountId, token: &RawToken) -> RawToken {
    let mut input = String::with_capacity(64 + token.0.len());
    input.push_str("bound\0");
    input.push_str(&account.to_string());
    input.push('\0');
    input.push_str(&token.0);
    RawToken(input)
}

impl TokenDigester {
    pub fn new(key: [u8; 32]) -> Self {
        Self { current: key, previous: Vec::new() }
    }

    pub fn with_previous(current: [u8; 32], previous: Vec<[u8; 32]>) -> Self {
        Self { current, previous }
    }

    /// The digest a new token is stored under.
    pub fn digest(&self, token: &RawToken) -> TokenDigest {
        hmac(&self.current, token)
    }

    /// Every digest a presented token may be stored under: `current` (its
    /// [`digest`](Self::digest), already computed) and one per previous key.
    pub fn candidates(&self, current: TokenDigest, token: &RawToken) -> Vec<TokenDigest> {
        std::iter::once(current).chain(self.previous.iter().map(|k| hmac(k, token))).collect()
    }

    /// The digest a short code is stored under: bound to its account, so the same code
    /// of another account is another digest, and a code is found only when the caller
    /// names its login.
    pub fn digest_bound(&self, account: AccountId, token: &RawToken) -> TokenDigest {
        hmac(&self.current, &bound_input(account, token))
    }

    /// [`candidates`](Self::candidates) for a short code of `account`.
    pub fn candidates_bound(&self, account: AccountId, token: &RawToken) -> Vec<TokenDigest> {
        let input = bound_input(account, token);
        std::iter::once(&self.current).chain(&self.previous).map(|k| hmac(k, &input)).collect()
    }
}

/// A token about to be stored (as its digest only).
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: Uuid,
    pub account_id: AccountId,
    pub digest: TokenDigest,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub client_ip: String,
    pub user_agent: String,
    pub purpose: TokenPurpose,
    /// A short code: digested with its account ([`TokenDigester::digest_bound`]), so it
    /// is found only together with its login.
    pub bound: bool,
}

/// A stored token, as far as deciding whether it is live needs.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: Uuid,
    pub account_id: AccountId,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether the token's account is active: a token of an inactive account is never
    /// live, whatever its own state says.
    pub account_active: bool,
    pub purpose: TokenPurpose,
    /// A short code digested with its account (see [`NewToken::bound`]).
    pub bound: bool,
}

impl From<&NewToken> for TokenRecord {
    /// The record of a token just written (the writer checked the account is active), as
    /// the database keeps it (to the millisecond).
    fn from(token: &NewToken) -> Self {
        let millis = token.expires_at.timestamp_millis();
        TokenRecord {
            id: token.id,
            account_id: token.account_id,
            expires_at: DateTime::from_timestamp_millis(millis).unwrap_or(token.expires_at),
            used_at: None,
            revoked_at: None,
            account_active: true,
            purpose: token.purpose,
            bound: token.bound,
        }
    }
}

impl TokenRecord {
    /// The liveness rule: why the token is not live, if it is not.
    pub fn refusal(&self, now: DateTime<Utc>) -> Option<&'static str> {
        if self.used_at.is_some() {
            Some("used")
        } else if self.revoked_at.is_some() {
            Some("revoked")
        } else if !self.account_active {
            Some("inactive")
        } else if self.expires_at <= now {
            Some("expired")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tokens_are_43_base64url_chars_and_distinct() -> Result<()> {
        let a = TokenGenerator::default().generate()?;
        let b = TokenGenerator::default().generate()?;
        assert_eq!(a.expose().len(), 43);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn string_and_numeric_generators_respect_their_bounds() -> Result<()> {
        for _ in 0..100 {
            let s = TokenGenerator::RandomString { min: 10, max: 12 }.generate()?;
            assert!((10..=12).contains(&s.expose().len()));
            let n: u64 = TokenGenerator::Numeric { min: 100, max: 199 }.generate()?.expose().parse().unwrap_or(0);
            assert!((100..=199).contains(&n));
        }
        Ok(())
    }

    #[test]
    fn issued_ttl_defaults_per_purpose_and_bounds_requests() {
        let policy = TokenPolicy::default();
        assert_eq!(policy.issued_ttl(TokenPurpose::PasswordReset, None).ok(), Some(policy.ttl));
        assert_eq!(policy.issued_ttl(TokenPurpose::AccountSetup, None).ok(), Some(policy.setup_ttl));
        assert!(policy.issued_ttl(TokenPurpose::PasswordReset, Some(Duration::from_secs(59))).is_err());
        assert!(policy.issued_ttl(TokenPurpose::PasswordReset, Some(policy.max_ttl + Duration::from_secs(1))).is_err());
        assert_eq!(policy.issued_ttl(TokenPurpose::AccountSetup, Some(policy.max_ttl)).ok(), Some(policy.max_ttl));
    }

    #[test]
    fn purposes_round_trip_through_their_codes() {
        for purpose in [TokenPurpose::PasswordReset, TokenPurpose::AccountSetup] {
            assert_eq!(TokenPurpose::from_code(purpose.code()), purpose);
        }
        assert_eq!(TokenPurpose::from_code(99), TokenPurpose::PasswordReset);
    }

    #[test]
    fn digest_depends_on_the_key() {
        let token = RawToken("123456".into());
        assert_ne!(TokenDigester::new([1; 32]).digest(&token), TokenDigester::new([2; 32]).digest(&token));
        assert_eq!(TokenDigester::new([1; 32]).digest(&token), TokenDigester::new([1; 32]).digest(&token));
    }

    #[test]
    fn parse_enforces_size_limits() {
        assert!(RawToken::parse(String::new()).is_err());
        assert!(RawToken::parse("x".repeat(MAX_TOKEN_BYTES + 1)).is_err());
        assert!(RawToken::parse("x".repeat(MAX_TOKEN_BYTES)).is_ok());
    }

    #[test]
    fn debug_never_shows_the_token() {
        assert_eq!(format!("{:?}", RawToken("secret".into())), "[redacted]");
    }
}
