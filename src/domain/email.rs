//! E-mail addresses: size limit, a plain shape check and normalisation (trimmed,
//! case-folded), so one address always maps to one account.

use std::fmt;

use super::error::{Error, Result};

/// RFC 5321 limits: 64 octets of local part, 254 in all.
pub const MAX_EMAIL_BYTES: usize = 254;
const MAX_LOCAL_BYTES: usize = 64;

/// A normalised e-mail address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid("email", "must not be empty"));
        }
        if trimmed.len() > MAX_EMAIL_BYTES {
            return Err(Error::invalid("email", format!("must be at most {MAX_EMAIL_BYTES} bytes")));
        }
        let normalised = trimmed.to_lowercase();
        let Some((local, domain)) = normalised.rsplit_once('@') else {
            return Err(Error::invalid("email", "must look like name@domain"));
        };
        let well_formed = !local.is_empty()
            && local.len() <= MAX_LOCAL_BYTES
            && !local.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && normalised.chars().all(|c| !c.is_whitespace() && !c.is_control());
        if !well_formed {
            return Err(Error::invalid("email", "must look like name@domain"));
        }
        Ok(Email(normalised))
    }

    /// For values read back from the store, which only ever holds normalised addresses.
    pub fn from_trusted(normalised: String) -> Self {
        Email(normalised)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(self.0.as_str(), |(local, _)| local)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_whitespace() {
        assert_eq!(Email::parse("  Ada@Example.COM ").map(|e| e.0).ok(), Some("ada@example.com".into()));
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@.example.com",
            "ada@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rejects_oversized_addresses() {
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(Email::parse(&long_local).is_err());
    }
}
