//! The three ways an account is named for a reset: its e-mail, an optional username and
//! an optional phone number. Each has a normal form, which is what is stored and
//! compared.
//!
//! - **Username**: NFKC, then lower case; 3 to 64 characters; letters and digits of any
//!   script, `.`, `_` and `-`; starting with a letter or digit. It can never look like
//!   an e-mail (no `@`) or a phone number (no leading `+`).
//! - **Phone**: parsed and validated with libphonenumber's metadata (`phonenumber`);
//!   international format only (a leading `+`), stored in E.164 (`+447700900123`).

use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::email::Email;
use super::error::{Error, Result};

/// Input longer than this is refused before any work.
const MAX_INPUT_BYTES: usize = 256;
pub const USERNAME_MIN_CHARS: usize = 3;
pub const USERNAME_MAX_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str, field: &'static str) -> Result<Self> {
        if raw.len() > MAX_INPUT_BYTES {
            return Err(Error::invalid(field, format!("must be at most {USERNAME_MAX_CHARS} characters")));
        }
        let normal: String = raw.trim().nfkc().collect::<String>().to_lowercase();
        let chars = normal.chars().count();
        if !(USERNAME_MIN_CHARS..=USERNAME_MAX_CHARS).contains(&chars) {
            return Err(Error::invalid(
                field,
                format!("must be {USERNAME_MIN_CHARS} to {USERNAME_MAX_CHARS} characters"),
            ));
        }
        let allowed = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !normal.chars().all(allowed) || !normal.chars().next().is_some_and(char::is_alphanumeric) {
            return Err(Error::invalid(
                field,
                "may hold letters, digits, '.', '_' and '-', starting with a letter or digit",
            ));
        }
        Ok(Username(normal))
    }

    /// A stored value (already normal).
    pub fn from_trusted(normal: String) -> Self {
        Username(normal)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str, field: &'static str) -> Result<Self> {
        let raw = raw.trim();
        if raw.len() > 64 {
            return Err(Error::invalid(field, "is too long for a phone number"));
        }
        if !raw.starts_with('+') {
            return Err(Error::invalid(field, "must be in international format, starting with + and the country code"));
        }
        let number = phonenumber::parse(None, raw).map_err(|_| Error::invalid(field, "is not a phone number"))?;
        if !phonenumber::is_valid(&number) {
            return Err(Error::invalid(field, "is not a valid phone number"));
        }
        Ok(Phone(number.format().mode(phonenumber::Mode::E164).to_string()))
    }

    /// A stored value (already E.164).
    pub fn from_trusted(e164: String) -> Self {
        Phone(e164)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a reset is requested by, or what a short code is presented with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Login {
    Email(Email),
    Username(Username),
    Phone(Phone),
}

impl Login {
    /// A `login` field: an e-mail if it holds `@`, a phone number if it starts with
    /// `+`, else a username.
    pub fn parse(raw: &str, field: &'static str) -> Result<Self> {
        let trimmed = raw.trim();
        if trimmed.contains('@') {
            Email::parse(trimmed).map(Login::Email).map_err(|_| Error::invalid(field, "is not a valid e-mail address"))
        } else if trimmed.starts_with('+') {
            Phone::parse(trimmed, field).map(Login::Phone)
        } else {
            Username::parse(trimmed, field).map(Login::Username)
        }
    }

    /// `RequestToken`'s three fields, exactly one of them set.
    pub fn from_request(email: &str, username: &str, phone: &str) -> Result<Self> {
        match (email.is_empty(), username.is_empty(), phone.is_empty()) {
            (false, true, true) => Email::parse(email).map(Login::Email),
            (true, false, true) => Username::parse(username, "username").map(Login::Username),
            (true, true, false) => Phone::parse(phone, "phone").map(Login::Phone),
            (true, true, true) => Err(Error::invalid("email", "set one of email, username or phone")),
            _ => Err(Error::invalid("username", "set only one of email, username or phone")),
        }
    }

    /// The name of its kind, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Login::Email(_) => "email",
            Login::Username(_) => "username",
            Login::Phone(_) => "phone",
        }
    }
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Login::Email(e) => e.as_str(),
            Login::Username(u) => u.as_str(),
            Login::Phone(p) => p.as_str(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_nfkc_lower_case_and_bounded() {
        assert_eq!(Username::parse(" Ada.Lovelace ", "username").ok().map(|u| u.0), Some("ada.lovelace".into()));
        // Full-width letters fold to ASCII under NFKC.
        assert_eq!(Username::parse("ＡＤＡ_1815", "username").ok().map(|u| u.0), Some("ada_1815".into()));
        assert_eq!(Username::parse("Ærøskøbing", "username").ok().map(|u| u.0), Some("ærøskøbing".into()));
        for bad in ["ab", "a@b.example", "+44123", "_ada", "ada lovelace", &"x".repeat(65)] {
            assert!(Username::parse(bad, "username").is_err(), "{bad}");
        }
    }

    #[test]
    fn phones_are_valid_e164() {
        assert_eq!(Phone::parse("+44 7911 123456", "phone").ok().map(|p| p.0), Some("+447911123456".into()));
        assert_eq!(Phone::parse("+1 (650) 253-0000", "phone").ok().map(|p| p.0), Some("+16502530000".into()));
        for bad in ["07700 900123", "+44 12", "+999 123456", "phone", "+"] {
            assert!(Phone::parse(bad, "phone").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_login_is_told_apart_by_its_shape() {
        assert!(matches!(Login::parse("ada@example.com", "login"), Ok(Login::Email(_))));
        assert!(matches!(Login::parse("+447911123456", "login"), Ok(Login::Phone(_))));
        assert!(matches!(Login::parse("ada", "login"), Ok(Login::Username(_))));
        assert!(Login::from_request("", "", "").is_err());
        assert!(Login::from_request("a@example.com", "ada", "").is_err());
    }
}
