//! The three ways an account is named for a reset: its e-mail, an optional username and
//! an optional phone number. Each has a normal form, which is what is stored and
//! compared.
//!
//! - **Username**: PRECIS UsernameCaseMapped (RFC 8265: width mapping, lower case, NFC,
//!   and the IdentifierClass, which refuses spaces, controls, compatibility forms and
//!   default-ignorable code points such as U+3164 HANGUL FILLER), then full Unicode case
//!   folding (`ς` and `σ`, `ß` and `ss` are one) and NFC; 3 to 64 characters; letters and
//!   digits of any script, `.`, `_` and `-`; starting with a letter or digit. It can
//!   never look like an e-mail (no `@`) or a phone number (no leading `+`). A new one
//!   must also be of one script (UTS #39 "highly restrictive": Latin may mix only with
//!   Han, Kana, Hangul or Bopomofo) and use only characters UTS #39 recommends for
//!   identifiers. Accounts are found and kept unique by the name's UTS #39 confusable
//!   *skeleton* (its key), so `admin` and `аdmin` (Cyrillic а), or `scope` and `ѕсоре`
//!   (all Cyrillic), are one login.
//! - **Phone**: parsed and validated with libphonenumber's metadata (`phonenumber`);
//!   international format only (a leading `+`), stored in E.164 (`+447700900123`).

use std::fmt;
use std::hash::{Hash, Hasher};

use precis_core::profile::PrecisFastInvocation;
use precis_profiles::UsernameCaseMapped;
use unicode_normalization::UnicodeNormalization;
use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

use super::email::{Email, is_invisible};
use super::error::{Error, Result};

/// Input longer than this is refused before any work.
const MAX_INPUT_BYTES: usize = 256;
pub const USERNAME_MIN_CHARS: usize = 3;
pub const USERNAME_MAX_CHARS: usize = 64;

/// A username: its normal form (stored, shown) and its key, the UTS #39 skeleton of the
/// normal form, by which it is found, compared and kept unique. Two usernames are equal
/// when their keys are.
#[derive(Debug, Clone)]
pub struct Username {
    name: String,
    /// `None` only for a stored username that lost its key to an earlier lookalike (or
    /// that PRECIS refuses) when keys were introduced: it is no longer a login.
    key: Option<String>,
}

impl Username {
    /// A username given to find an account: its normal form and key. Any script mix is
    /// accepted here (an account made before the script rule keeps working, and a
    /// lookalike finds the account it looks like).
    pub fn parse(raw: &str, field: &'static str) -> Result<Self> {
        let name = normal_form(raw, field)?;
        let key = skeleton(&name);
        Ok(Username { name, key: Some(key) })
    }

    /// A username for a new account (`CreateAccount`, `pwreset import`): [`Self::parse`],
    /// and of one script, with only the characters UTS #39 recommends for identifiers.
    pub fn parse_new(raw: &str, field: &'static str) -> Result<Self> {
        let username = Self::parse(raw, field)?;
        if username.name.as_str().detect_restriction_level() > RestrictionLevel::HighlyRestrictive {
            return Err(Error::invalid(
                field,
                "must be written in one script (Latin may mix only with Han, Kana, Hangul or Bopomofo) \
                 with characters recommended for identifiers (UTS #39)",
            ));
        }
        Ok(username)
    }

    /// A stored value and its stored key.
    pub fn from_trusted(name: String, key: Option<String>) -> Self {
        Username { name, key }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The confusable skeleton that finds the account; see [`Username`].
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

/// The key of a username stored before keys existed (the schema migration fills them
/// with this); `None` when today's rules refuse it.
pub fn stored_username_key(stored: &str) -> Option<String> {
    normal_form(stored, "username").ok().map(|name| skeleton(&name))
}

impl PartialEq for Username {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Username {}

impl Hash for Username {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// PRECIS UsernameCaseMapped, full case folding, NFC; then the length and the
/// characters this service allows.
fn normal_form(raw: &str, field: &'static str) -> Result<String> {
    if raw.len() > MAX_INPUT_BYTES {
        return Err(Error::invalid(field, format!("must be at most {USERNAME_MAX_CHARS} characters")));
    }
    let length = || Error::invalid(field, format!("must be {USERNAME_MIN_CHARS} to {USERNAME_MAX_CHARS} characters"));
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(length());
    }
    // PRECIS refuses these too; refused first, by name, because they are the lookalikes
    // that render as nothing.
    if let Some(c) = trimmed.chars().find(|&c| is_invisible(c)) {
        return Err(Error::invalid(field, format!("may not hold the invisible character U+{:04X}", c as u32)));
    }
    let prepared = UsernameCaseMapped::enforce(trimmed).map_err(|e| match e {
        precis_core::Error::BadCodepoint(info) => Error::invalid(
            field,
            format!(
                "may not hold U+{:04X} (invisible characters, spaces, controls and compatibility forms are refused)",
                info.cp
            ),
        ),
        _ => Error::invalid(field, "is not a valid username (RFC 8265)"),
    })?;
    // RFC 8265 lower-cases; full case folding also makes `ς`/`σ` and `ß`/`ss` one name.
    let normal: String = unicase::UniCase::new(prepared.as_ref()).to_folded_case().nfc().collect();
    let chars = normal.chars().count();
    if !(USERNAME_MIN_CHARS..=USERNAME_MAX_CHARS).contains(&chars) {
        return Err(length());
    }
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !normal.chars().all(allowed) || !normal.chars().next().is_some_and(char::is_alphanumeric) {
        return Err(Error::invalid(
            field,
            "may hold letters, digits, '.', '_' and '-', starting with a letter or digit",
        ));
    }
    Ok(normal)
}

/// UTS #39 confusable skeleton (default-ignorable code points dropped, each character
/// replaced by its prototype): `admin`, `аdmin` and `adrnin` share one.
fn skeleton(normal: &str) -> String {
    unicode_security::skeleton(normal).collect()
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

    fn name(raw: &str) -> Option<String> {
        Username::parse(raw, "username").ok().map(|u| u.name)
    }

    fn key(raw: &str) -> Option<String> {
        Username::parse(raw, "username").ok().and_then(|u| u.key)
    }

    #[test]
    fn usernames_are_precis_case_folded_and_bounded() {
        assert_eq!(name(" Ada.Lovelace "), Some("ada.lovelace".into()));
        // Full-width letters are mapped to ASCII (PRECIS width mapping).
        assert_eq!(name("ＡＤＡ_1815"), Some("ada_1815".into()));
        assert_eq!(name("Ærøskøbing"), Some("ærøskøbing".into()));
        // Full case folding, beyond RFC 8265's lower-casing: final sigma, sharp s.
        assert_eq!(name("ΟΔΟΣ42"), Some("οδοσ42".into()));
        assert_eq!(name("οδος42"), Some("οδοσ42".into()));
        assert_eq!(name("Straße"), Some("strasse".into()));
        // Composed (NFC) whatever the input's composition.
        assert_eq!(name("e\u{301}cole"), Some("\u{e9}cole".into()));
        for bad in ["ab", "a@b.example", "+44123", "_ada", "ada lovelace", "", "   ", &"x".repeat(65), &"x".repeat(300)]
        {
            assert!(Username::parse(bad, "username").is_err(), "{bad}");
        }
    }

    #[test]
    fn invisible_and_default_ignorable_code_points_are_refused() {
        // HANGUL FILLER and its kin, zero-width (non-)joiners and spaces, word joiner,
        // BOM, soft hyphen, combining grapheme joiner, Mongolian vowel separator, Khmer
        // inherent vowel, variation selector, a tag character; and compatibility forms.
        for c in [
            '\u{3164}',
            '\u{1160}',
            '\u{115F}',
            '\u{FFA0}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{034F}',
            '\u{180E}',
            '\u{17B4}',
            '\u{FE0F}',
            '\u{E0061}',
            '\u{FB01}',
            '\u{00A0}',
            '\u{2028}',
        ] {
            // (Spaces at either end are trimmed, like any surrounding space.)
            let edges = if c.is_whitespace() { vec![] } else { vec![format!("bob{c}"), format!("{c}bob")] };
            for raw in edges.into_iter().chain([format!("bob{c}x")]) {
                assert!(Username::parse(&raw, "username").is_err(), "U+{:04X} in {raw:?}", c as u32);
                assert!(Username::parse_new(&raw, "username").is_err(), "U+{:04X} in {raw:?}", c as u32);
            }
        }
    }

    #[test]
    fn lookalikes_share_one_key() {
        for group in [
            &["ΟΔΟΣ42", "οδος42", "οδοσ42", "Οδος42"][..],
            &["admin_x7", "аdmin_x7", "ADMIN_X7", "ａｄｍｉｎ_ｘ７", "adrnin_x7"],
            &["scope", "ѕсоре"],
            &["ΟΔΟΣ42d2", "οδοσ42d2", "οδος42d2"],
            &["straße", "strasse", "STRASSE"],
            &["paypal", "pаypаl", "paypa1"],
        ] {
            let keys: Vec<_> = group.iter().map(|raw| key(raw)).collect();
            assert!(keys[0].is_some(), "{group:?}");
            assert!(keys.iter().all(|k| *k == keys[0]), "{group:?}: {keys:?}");
        }
        assert_ne!(key("alice"), key("alicf"));
        // A stored normal form has the key of every spelling that led to it.
        for raw in ["ΟΔΟΣ42", "Ærøskøbing", "ＡＤＡ_1815", "Straße", "日本語かなabc", "ѕсоре"] {
            let stored = name(raw).unwrap_or_default();
            assert_eq!(stored_username_key(&stored), key(raw), "{raw}");
        }
        assert_eq!(stored_username_key("bob\u{1160}x"), None);
    }

    #[test]
    fn a_new_username_is_of_one_script() {
        for good in ["ada.lovelace", "ærøskøbing", "οδοσ42", "ѕсоре", "日本語かなabc", "한국어abc", "عمر42", "ΟΔΟΣ42"]
        {
            assert!(Username::parse_new(good, "username").is_ok(), "{good}");
        }
        // Cyrillic а in Latin; Greek with a Latin d; a script not recommended for
        // identifiers (Cherokee).
        for mixed in ["аdmin_x7", "ΟΔΟΣ42d2", "οδοσ42d2", "pаypаl", "ᏚᎢᎵ"] {
            assert!(Username::parse(mixed, "username").is_ok(), "{mixed} is still looked up");
            assert!(Username::parse_new(mixed, "username").is_err(), "{mixed}");
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
