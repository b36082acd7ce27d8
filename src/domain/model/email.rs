//! E-mail addresses. An address is a bare RFC 5321 addr-spec, `local-part@domain`, in
//! one canonical form, so one mailbox always maps to one account and one set of caps:
//!
//! - **local part**: a dot-atom (RFC 5321 `Dot-string`: atoms of letters, digits and
//!   ``#$&'*+/=?^_`{|}~-`` joined by single dots — not `%` or `!`, the source routes
//!   relays still honour; letters of any script, RFC 6531), at most 64 bytes, NFKC and
//!   lower case with Greek final sigma as sigma (full-width spellings are one address). No quoted strings, comments, brackets,
//!   commas, spaces or controls: nothing a mail library could read as a display name,
//!   a route or a list (`n0<victim@example.com>` is refused, not delivered to the
//!   victim).
//! - **domain**: a host name of at least two labels, checked and mapped by IDNA (UTS
//!   #46, STD3 rules: letters, digits and inner hyphens, labels of 1–63 octets, at most
//!   253 in all as ASCII), kept in its Unicode form, lower case (`BÜCHER.example`,
//!   `xn--bcher-kva.example` and full-width spellings are one domain). No address
//!   literals, no trailing dot, no all-numeric last label.
//! - at most 254 bytes in all.
//!
//! Whatever is accepted is also accepted, unchanged, by the checks lettre (the
//! notifier's mail library) makes on an address (`email_address` and `idna`, the same
//! crates): it is sent to exactly the address stored.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::error::{Error, Result};

/// RFC 5321 limits: 64 octets of local part, 254 in all (a path of 256 with its
/// brackets), 253 of domain as ASCII.
pub const MAX_EMAIL_BYTES: usize = 254;
const MAX_LOCAL_BYTES: usize = 64;
const MAX_DOMAIN_ASCII_BYTES: usize = 253;
/// Input longer than this is refused before any work (full-width and decomposed
/// spellings are longer than their canonical form).
const MAX_INPUT_BYTES: usize = 1024;

/// A canonical e-mail address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// An address as the caller wrote it: its canonical form, or `INVALID_ARGUMENT`.
    pub fn parse(raw: &str) -> Result<Self> {
        canonical(raw).map(Email).map_err(|reason| Error::invalid("email", reason))
    }

    /// An address given only to find an existing account (`VerifyPassword`,
    /// `GetAccount`): [`Self::parse`], or else the form addresses were stored in before
    /// the addr-spec rule (trimmed, lower case), so an account stored then with an
    /// address the rule now refuses (`a..b@example.com`, `ada@exa_mple.com`) can still
    /// sign in. Such a spelling names only the account stored with exactly it, is never
    /// mailed, and may not hold what makes a display name, comment, route or list
    /// (`<>()[],;:"\`, spaces): those are refused everywhere.
    pub fn parse_for_lookup(raw: &str) -> Result<Self> {
        Self::parse(raw).or_else(|e| legacy(raw).map(Email).ok_or(e))
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

/// The canonical form of `raw`, or why it is not a bare address.
fn canonical(raw: &str) -> std::result::Result<String, String> {
    const SHAPE: &str = "must be a bare address, name@domain (no display name, brackets, quotes, comments or lists)";
    if raw.len() > MAX_INPUT_BYTES {
        return Err(format!("must be at most {MAX_EMAIL_BYTES} bytes"));
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".into());
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control() || is_invisible(c)) {
        return Err("must not hold spaces, control or invisible characters".into());
    }
    let Some((local, domain)) = trimmed.split_once('@') else {
        return Err("must look like name@domain".into());
    };
    if domain.contains('@') {
        return Err(SHAPE.into());
    }
    let local = local_form(local);
    if local.is_empty() || local.len() > MAX_LOCAL_BYTES {
        return Err(format!("must have a name of 1 to {MAX_LOCAL_BYTES} bytes before the @"));
    }
    // RFC 5321 atext less `%` and `!`: relays still honour the old source routes
    // (`victim%evil.example@relay`, `evil.example!victim@relay`) and would deliver
    // elsewhere than the address says.
    let atext = |c: char| c.is_alphanumeric() || "#$&'*+/=?^_`{|}~-".contains(c);
    if !local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(atext)) {
        return Err(SHAPE.into());
    }
    let domain = domain_form(domain)?;
    let address = format!("{local}@{domain}");
    if address.len() > MAX_EMAIL_BYTES {
        return Err(format!("must be at most {MAX_EMAIL_BYTES} bytes"));
    }
    // Implied by the rules above; checked so that no future change here can accept an
    // address the mail library would not send to as written.
    if !mail_library_accepts(&local, &domain) {
        return Err(SHAPE.into());
    }
    Ok(address)
}

/// The local part's one spelling: compatibility forms folded (NFKC: full-width letters,
/// ligatures, `ſ`), lower case letter by letter, and Greek final sigma as sigma (what
/// simple case folding adds to lower-casing: `ΟΔΟΣ` lower-cases to `οδος` but is also
/// written `οδοσ`). Not full case folding: that would turn `ß` into `ss`, another
/// mailbox.
fn local_form(local: &str) -> String {
    local.nfkc().flat_map(char::to_lowercase).map(|c| if c == 'ς' { 'σ' } else { c }).nfc().collect()
}

/// What lettre's `Address` checks (`check_user`, `check_domain`): the local part with
/// `email_address`, the domain with `email_address` as written or after IDNA.
fn mail_library_accepts(local: &str, domain: &str) -> bool {
    use email_address::EmailAddress;
    let domain_ok = EmailAddress::is_valid_domain(domain)
        || idna::domain_to_ascii(domain).is_ok_and(|ascii| EmailAddress::is_valid_domain(&ascii));
    EmailAddress::is_valid_local_part(local) && domain_ok
}

/// A default-ignorable code point (zero-width spaces and joiners, soft hyphen, HANGUL
/// FILLER, variation selectors, …): renders as nothing, and IDNA would silently drop it.
pub(super) fn is_invisible(c: char) -> bool {
    use unicode_security::general_security_profile::{GeneralSecurityProfile, IdentifierType};
    c.identifier_type() == Some(IdentifierType::Default_Ignorable)
}

/// The domain's Unicode form, lower case, after IDNA's checks on its ASCII form.
fn domain_form(domain: &str) -> std::result::Result<String, String> {
    const HOST: &str = "must have a domain name after the @ (like example.com)";
    // Strict: STD3 rules (letters, digits, inner hyphens) and DNS lengths.
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| HOST.to_owned())?;
    let labels: Vec<&str> = ascii.split('.').collect();
    let last = labels.last().copied().unwrap_or_default();
    if ascii.len() > MAX_DOMAIN_ASCII_BYTES
        || labels.len() < 2
        || labels.iter().any(|l| l.is_empty())
        || last.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(HOST.into());
    }
    let (unicode, errors) = idna::domain_to_unicode(&ascii);
    if errors.is_err() {
        return Err(HOST.into());
    }
    Ok(unicode)
}

/// The normal form of the rule before the addr-spec rule, for [`Email::parse_for_lookup`] only.
fn legacy(raw: &str) -> Option<String> {
    let normalised = raw.trim().to_lowercase();
    let (local, domain) = normalised.rsplit_once('@')?;
    let well_formed = normalised.len() <= MAX_EMAIL_BYTES
        && !local.is_empty()
        && local.len() <= MAX_LOCAL_BYTES
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && normalised.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\"\\".contains(c));
    well_formed.then_some(normalised)
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

    fn parsed(raw: &str) -> Option<String> {
        Email::parse(raw).ok().map(|e| e.0)
    }

    fn lettre_accepts(address: &str) -> bool {
        address.rsplit_once('@').is_some_and(|(user, domain)| mail_library_accepts(user, domain))
    }

    #[test]
    fn accepted_spellings_and_their_canonical_form() {
        for (raw, canonical) in [
            ("ada@example.com", "ada@example.com"),
            ("  Ada@Example.COM ", "ada@example.com"),
            ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
            ("o'brien@example.ie", "o'brien@example.ie"),
            ("x#$&*/=?^_`{|}~-y@example.com", "x#$&*/=?^_`{|}~-y@example.com"),
            // Full-width letters, and Greek sigma in all its spellings, are one address.
            ("ＡＤＡ@example.com", "ada@example.com"),
            ("ΟΔΟΣ@example.gr", "οδοσ@example.gr"),
            ("οδος@example.gr", "οδοσ@example.gr"),
            ("straße@example.de", "straße@example.de"),
            ("a@b-c.example", "a@b-c.example"),
            ("a@123.example", "a@123.example"),
            ("ada@bücher.example", "ada@bücher.example"),
            ("ada@BÜCHER.example", "ada@bücher.example"),
            ("ada@xn--bcher-kva.example", "ada@bücher.example"),
            ("ada@ｅｘａｍｐｌｅ.com", "ada@example.com"),
            ("ada@example。com", "ada@example.com"),
            ("Jürgen@example.de", "jürgen@example.de"),
            ("ju\u{308}rgen@example.de", "jürgen@example.de"),
            ("用户@例子.广告", "用户@例子.广告"),
        ] {
            assert_eq!(parsed(raw).as_deref(), Some(canonical), "{raw:?}");
            assert!(lettre_accepts(canonical), "lettre refuses {canonical:?}");
            // Canonical is a fixed point.
            assert_eq!(parsed(canonical).as_deref(), Some(canonical), "{canonical:?}");
        }
        let longest = format!("{}@{}.{}.{}.example", "a".repeat(64), "b".repeat(63), "c".repeat(63), "d".repeat(53));
        assert_eq!(longest.len(), 254);
        assert!(parsed(&longest).is_some());
    }

    #[test]
    fn refused_spellings() {
        for bad in [
            // The display-name attack: lettre reads these as mailboxes of victim@example.com.
            "n0<victim@example.com>",
            // Source routes relays still honour.
            "victim%evil.example@example.com",
            "evil.example!victim@example.com",
            "\"https://evil.example/reset-now\" <victim@example.com>",
            "Victim <victim@example.com>",
            "<victim@example.com>",
            "victim@example.com (comment)",
            "(comment)victim@example.com",
            "victim(comment)@example.com",
            "victim@example.com, attacker@evil.example",
            "victim@example.com,attacker@evil.example",
            "victim@example.com;attacker@evil.example",
            "\"victim\"@example.com",
            "\"a b\"@example.com",
            "\"a,b\"@example.com",
            "\"v@x\"@example.com",
            "a\\b@example.com",
            "@route:victim@example.com",
            "victim@example.com\r\nBcc: attacker@evil.example",
            "victim@example.com\nx",
            "vic tim@example.com",
            "victim\u{0}@example.com",
            "victim\u{200b}@example.com",
            "victim@exa\u{200b}mple.com",
            "victim\u{a0}@example.com",
            // Shapes.
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "a@b@example.com",
            ".ada@example.com",
            "ada.@example.com",
            "a..da@example.com",
            "ada@.example.com",
            "ada@example..com",
            "ada@example.com.",
            "ada@-example.com",
            "ada@example-.com",
            "ada@exa_mple.com",
            "ada@ex!ample.com",
            "ada@[127.0.0.1]",
            "ada@[IPv6:::1]",
            "ada@127.0.0.1",
            "ada@example.123",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn refuses_oversized_addresses() {
        assert!(parsed(&format!("{}@example.com", "a".repeat(65))).is_none());
        assert!(parsed(&format!("{}@example.com", "a".repeat(64))).is_some());
        // 64 bytes, 32 characters.
        assert!(parsed(&format!("{}@example.com", "é".repeat(33))).is_none());
        assert!(parsed(&format!("a@{}.com", "b".repeat(64))).is_none());
        let total_255 = format!("{}@{}.{}.{}.example", "a".repeat(64), "b".repeat(63), "c".repeat(63), "d".repeat(54));
        assert_eq!(total_255.len(), 255);
        assert!(parsed(&total_255).is_none());
        assert!(parsed(&format!("{}ada@example.com", " ".repeat(2000))).is_none());
    }

    #[test]
    fn a_lookup_also_finds_addresses_stored_under_the_old_rule() {
        // Not an addr-spec, but it was accepted and stored under the earlier rule.
        for (raw, stored) in
            [(" Odd..Name@Example.com ", "odd..name@example.com"), ("ada@exa_mple.com", "ada@exa_mple.com")]
        {
            assert_eq!(Email::parse_for_lookup(raw).ok().map(|e| e.0).as_deref(), Some(stored));
            assert!(Email::parse(raw).is_err());
        }
        // Canonical when it can be.
        assert_eq!(Email::parse_for_lookup("Ada@Example.COM").ok().map(|e| e.0).as_deref(), Some("ada@example.com"));
        // Display names, comments, lists, quotes: refused for look-ups too.
        for bad in [
            "",
            "ada",
            "a b@example.com",
            "ada@example",
            "n0<victim@example.com>",
            "victim@example.com,x@evil.example",
            "\"v\"@example.com",
            "v(c)@example.com",
            "v;x@example.com",
            "@r:v@example.com",
        ] {
            assert!(Email::parse_for_lookup(bad).is_err(), "{bad:?}");
        }
    }
}
