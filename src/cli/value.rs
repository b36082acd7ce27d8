//! The values flags take that need more than a number or a path: rates, the database
//! URL, the answer floor, and the choices of generator and log format. Secrets are
//! `pwreset_proto::secret::Secret`, shared with the notifier.

use clap::ValueEnum;
use pwreset_proto::redact;

use crate::domain::runtime::limits::Rate;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum GeneratorKind {
    /// Random bytes from the OS generator, base64url (--token-bytes).
    #[default]
    Bytes,
    /// Random alphanumeric string (--token-min-length..--token-max-length).
    String,
    /// Decimal code (--token-min-number..--token-max-number), found only with its login
    /// and revoked after --max-code-attempts failures.
    Numeric,
}

/// A rate limit flag value: `COUNT/PERIOD` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateArg(pub Option<Rate>);

impl std::str::FromStr for RateArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") { Ok(RateArg(None)) } else { s.parse().map(|r| RateArg(Some(r))) }
    }
}

/// A database URL. `Debug` shows it with its password replaced, so settings can be
/// logged; the URL itself is read with `as_str` (or through `Deref`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL with the password of its user info (`user:password@`) and its query
    /// replaced.
    pub fn redacted(&self) -> String {
        redact::url(&self.0)
    }
}

impl std::ops::Deref for DatabaseUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl(s.to_owned()))
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

/// `--verify-answer-floor`: "auto" or a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    Auto,
    Fixed(std::time::Duration),
}

pub(super) fn parse_floor(text: &str) -> Result<Floor, String> {
    if text.eq_ignore_ascii_case("auto") {
        return Ok(Floor::Auto);
    }
    humantime::parse_duration(text).map(Floor::Fixed).map_err(|e| format!("\"auto\" or a duration: {e}"))
}
