//! Password policy after NIST SP 800-63B-4: NFC normalisation, length in code points,
//! no composition rules, a blocklist-like strength estimate (zxcvbn) and no passwords
//! built from the account's own e-mail. Every failed rule is reported on its own.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::breached::BreachedPasswords;
use super::email::Email;
use super::error::{Error, PolicyViolation, Result};

/// Hard limit on the bytes accepted before any work is done on a password.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The floor a deployment may lower the minimum to (multi-factor use only).
pub const LOWEST_MIN_LENGTH: usize = 8;
/// The ceiling must allow at least this many code points (NIST: at least 64).
pub const LOWEST_MAX_LENGTH: usize = 64;

#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    /// Minimum length in code points after NFC normalisation (default 15).
    pub min_length: usize,
    /// Maximum length in code points after NFC normalisation (default 128).
    pub max_length: usize,
    /// Lowest acceptable zxcvbn score, 0–4 (default 3).
    pub min_score: u8,
    /// Compromised passwords (default: the built-in list of common ones).
    pub breached: BreachedPasswords,
    /// How many of an account's passwords, the current one included, a new one must
    /// differ from (0: no history is kept).
    pub history: u32,
}

/// The most passwords a history may hold (each costs one argon2 check per change).
pub const MAX_PASSWORD_HISTORY: u32 = 24;

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_length: 15, max_length: 128, min_score: 3, breached: BreachedPasswords::default(), history: 0 }
    }
}

/// A password as received. Never printed: `Debug` shows `[redacted]`.
pub struct Password(String);

impl Password {
    pub fn new(raw: String) -> Self {
        Password(raw)
    }

    /// The NFC form, the only one that is checked, hashed or verified.
    pub fn normalised(&self) -> Result<NormalisedPassword> {
        self.normalised_for("password")
    }

    /// [`normalised`](Self::normalised), naming the request field `field` in errors.
    pub fn normalised_for(&self, field: &'static str) -> Result<NormalisedPassword> {
        if self.0.len() > MAX_PASSWORD_BYTES {
            return Err(Error::invalid(field, format!("must be at most {MAX_PASSWORD_BYTES} bytes")));
        }
        Ok(NormalisedPassword(self.0.nfc().collect()))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A password in Unicode NFC, so composed and decomposed input are one password.
pub struct NormalisedPassword(String);

impl NormalisedPassword {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether both are one password, compared in constant time for equal lengths.
    pub fn same_as(&self, other: &NormalisedPassword) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.as_bytes().ct_eq(other.as_bytes()))
    }
}

impl fmt::Debug for NormalisedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PasswordPolicy {
    /// Checks a new password for `email`; `field` names the request field in errors.
    pub fn check(&self, password: &Password, email: &Email, field: &'static str) -> Result<NormalisedPassword> {
        if password.0.len() > MAX_PASSWORD_BYTES {
            let violations = vec![PolicyViolation {
                rule: "max_length",
                description: format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
            }];
            return Err(Error::WeakPassword { field, violations });
        }
        let normalised = password.normalised()?;
        let violations = self.violations(&normalised.0, email)?;
        if violations.is_empty() { Ok(normalised) } else { Err(Error::WeakPassword { field, violations }) }
    }

    fn violations(&self, password: &str, email: &Email) -> Result<Vec<PolicyViolation>> {
        let mut found = Vec::new();
        let length = password.chars().count();
        if length < self.min_length {
            found.push(PolicyViolation {
                rule: "min_length",
                description: format!("must be at least {} characters", self.min_length),
            });
        }
        if length > self.max_length {
            found.push(PolicyViolation {
                rule: "max_length",
                description: format!("must be at most {} characters", self.max_length),
            });
            // Long inputs are refused before the estimator, which is superlinear in length.
            return Ok(found);
        }
        let local = email.local_part();
        if local.chars().count() >= 3 && password.to_lowercase().contains(local) {
            found.push(PolicyViolation {
                rule: "contains_email",
                description: "must not contain the e-mail address".into(),
            });
        }
        // A short read of the list's file (or none): the page cache serves it.
        if self.breached.contains(password).map_err(|e| Error::Internal(e.context("the breached-password list")))? {
            found.push(PolicyViolation {
                rule: "breached",
                description: "is on a list of compromised or commonly used passwords".into(),
            });
        }
        if !password.is_empty() {
            let score = u8::from(zxcvbn::zxcvbn(password, &[email.as_str(), local]).score());
            if score < self.min_score {
                found.push(PolicyViolation {
                    rule: "too_guessable",
                    description: format!("is too easy to guess (strength {score} of 4, needs {})", self.min_score),
                });
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(password: &str) -> Vec<&'static str> {
        let email = Email::parse("ada.lovelace@example.com").ok().into_iter().next();
        let Some(email) = email else {
            return vec!["bad test email"];
        };
        match PasswordPolicy::default().check(&Password::new(password.into()), &email, "new_password") {
            Ok(_) => vec![],
            Err(Error::WeakPassword { violations, .. }) => violations.into_iter().map(|v| v.rule).collect(),
            Err(_) => vec!["other"],
        }
    }

    #[test]
    fn accepts_a_long_unpredictable_passphrase() {
        assert!(rules("correct horse battery staple orbit").is_empty());
    }

    #[test]
    fn reports_each_failed_rule() {
        assert_eq!(rules("short"), ["min_length", "too_guessable"]);
        assert_eq!(rules("password"), ["min_length", "breached", "too_guessable"]);
        assert_eq!(rules("ada.lovelace-1815-x9!Qz"), ["contains_email"]);
        assert_eq!(rules("passwordpassword"), ["too_guessable"]);
        assert_eq!(rules(&"x".repeat(129)), ["max_length"]);
    }

    #[test]
    fn length_counts_code_points_after_nfc() {
        // 15 × "é" decomposed is 30 code points before NFC and 15 after.
        let decomposed = "e\u{301}".repeat(15);
        let nfc: String = decomposed.nfc().collect();
        assert_eq!(nfc.chars().count(), 15);
        assert!(!rules(&decomposed).contains(&"min_length"));
    }

    #[test]
    fn composed_and_decomposed_forms_normalise_alike() {
        let a = Password::new("caf\u{e9} au lait tous les jours".into()).normalised();
        let b = Password::new("cafe\u{301} au lait tous les jours".into()).normalised();
        assert_eq!(a.map(|p| p.0).ok(), b.map(|p| p.0).ok());
    }
}
