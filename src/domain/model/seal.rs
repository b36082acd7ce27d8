//! Sealing of raw tokens kept in the outbox for delivery: XChaCha20-Poly1305 under a
//! key derived from the server key, so the database alone never yields a usable token.
//! The associated data binds the event's kind, token id, account id and e-mail
//! ([`seal_context`]): a row whose recipient was edited in the database no longer
//! opens. Each sealed value records the id of its key.

use anyhow::anyhow;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use rand::TryRng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AccountId;
use super::event::{EventKind, TokenCreated};
use super::token::TokenPurpose;

const NONCE_LEN: usize = 24;
/// Set in the stored key id of values sealed with [`seal_context`]. Values without it
/// were sealed (before this format) with the token id alone and open only that way;
/// clearing the flag does not help an attacker, since the ciphertext itself was made
/// with the full context.
const BOUND_TO_EVENT: i64 = 1 << 32;
const KEY_ID_MASK: i64 = 0xFFFF_FFFF;
const CONTEXT_LABEL: &[u8] = b"pwreset-seal-v2\0";

/// What a sealed token is bound to: what the event says, what the token is for and to
/// whom it goes.
#[derive(Debug, Clone, Copy)]
pub struct SealContext<'a> {
    pub kind: EventKind,
    pub token_id: Uuid,
    pub account_id: AccountId,
    pub email: &'a str,
    pub purpose: TokenPurpose,
    /// The number a code is texted to (SMS only).
    pub sms_phone: Option<&'a str>,
}

impl<'a> SealContext<'a> {
    /// The context of the token a `TokenCreated` event carries: the one both sealing
    /// (when the token is made) and opening (when the event is delivered) use.
    pub fn of(created: &'a TokenCreated) -> Self {
        SealContext {
            kind: EventKind::TokenCreated,
            token_id: created.token_id,
            account_id: created.account_id,
            email: &created.email,
            purpose: created.purpose,
            sms_phone: created.sms_phone(),
        }
    }
}

/// The associated data of a sealed token (see [`SealContext`]).
pub fn seal_context(c: &SealContext<'_>) -> Vec<u8> {
    let mut context = Vec::with_capacity(CONTEXT_LABEL.len() + 2 + 32 + 3 + 24 + c.email.len());
    context.extend_from_slice(CONTEXT_LABEL);
    context.extend_from_slice(&c.kind.code().to_be_bytes());
    context.extend_from_slice(c.token_id.as_bytes());
    context.extend_from_slice(c.account_id.uuid().as_bytes());
    // Resets, the only purpose before purposes existed, add nothing (values sealed then
    // still open); any other purpose adds a NUL, which no e-mail address starts with,
    // and its code. A row whose purpose was edited no longer opens.
    if c.purpose != TokenPurpose::PasswordReset {
        context.push(0);
        context.extend_from_slice(&c.purpose.code().to_be_bytes());
    }
    // A texted code binds its number the same way: NUL, 'S', the E.164 number, NUL.
    if let Some(phone) = c.sms_phone {
        context.extend_from_slice(b"\0S");
        context.extend_from_slice(phone.as_bytes());
        context.push(0);
    }
    // Last, so the fixed-length fields before it keep the encoding unambiguous.
    context.extend_from_slice(c.email.as_bytes());
    context
}

/// Defined with the events that carry it, so the event model does not depend on sealing.
pub use super::event::SealedToken;

/// Seals under the current key; opens under the current key or any previous one, so a
/// key can be rotated while events sealed under the old one are still replayable.
#[derive(Clone)]
pub struct Sealer {
    /// The first is current.
    keys: Vec<(i64, XChaCha20Poly1305)>,
}

/// A public fingerprint of a key: identifies it without revealing it.
fn key_id(key: &[u8; 32]) -> i64 {
    let fingerprint = Sha256::digest(key);
    i64::from(u32::from_be_bytes([fingerprint[0], fingerprint[1], fingerprint[2], fingerprint[3]]))
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        Self::with_previous(key, &[])
    }

    pub fn with_previous(current: [u8; 32], previous: &[[u8; 32]]) -> Self {
        let keys = std::iter::once(&current)
            .chain(previous)
            .map(|k| (key_id(k), XChaCha20Poly1305::new(&Key::from(*k))))
            .collect();
        Self { keys }
    }

    /// `context` (the token's id) is authenticated, so a sealed value cannot be moved
    /// to another row.
    pub fn seal(&self, plaintext: &str, context: &[u8]) -> anyhow::Result<SealedToken> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::SysRng.try_fill_bytes(&mut nonce).map_err(|e| anyhow!("OS RNG: {e}"))?;
        let (key_id, cipher) = self.keys.first().ok_or_else(|| anyhow!("no sealing key"))?;
        let ciphertext = cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext.as_bytes(), aad: context })
            .map_err(|_| anyhow!("sealing failed"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Ok(SealedToken { key_id: *key_id | BOUND_TO_EVENT, bytes })
    }

    /// Seals the token of an event, bound to its [`seal_context`].
    pub fn seal_event(&self, raw: &str, context: &SealContext<'_>) -> anyhow::Result<SealedToken> {
        self.seal(raw, &seal_context(context))
    }

    /// Opens the token of an event row: with the full [`seal_context`], or, for a value
    /// sealed before that format, with the token id alone.
    pub fn open_event(&self, sealed: &SealedToken, context: &SealContext<'_>) -> Option<String> {
        if sealed.key_id & BOUND_TO_EVENT != 0 {
            self.open(sealed, &seal_context(context))
        } else {
            self.open(sealed, context.token_id.as_bytes())
        }
    }

    /// `None` when the value was sealed under another key or has been tampered with.
    pub fn open(&self, sealed: &SealedToken, context: &[u8]) -> Option<String> {
        let (_, cipher) = self.keys.iter().find(|(id, _)| *id == sealed.key_id & KEY_ID_MASK)?;
        if sealed.bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).ok()?;
        let plain = cipher.decrypt(&nonce, Payload { msg: ciphertext, aad: context }).ok()?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_hides_the_plaintext() -> anyhow::Result<()> {
        let sealer = Sealer::new([9; 32]);
        let sealed = sealer.seal("the-raw-token", b"row-1")?;
        assert!(!sealed.bytes.windows(13).any(|w| w == b"the-raw-token"));
        assert_eq!(sealer.open(&sealed, b"row-1").as_deref(), Some("the-raw-token"));
        Ok(())
    }

    #[test]
    fn refuses_another_row_or_another_key() -> anyhow::Result<()> {
        let sealer = Sealer::new([9; 32]);
        let sealed = sealer.seal("the-raw-token", b"row-1")?;
        assert_eq!(sealer.open(&sealed, b"row-2"), None);
        assert_eq!(Sealer::new([8; 32]).open(&sealed, b"row-1"), None);
        Ok(())
    }

    fn context<'a>(token: Uuid, account: AccountId, email: &'a str, purpose: TokenPurpose) -> SealContext<'a> {
        SealContext {
            kind: EventKind::TokenCreated,
            token_id: token,
            account_id: account,
            email,
            purpose,
            sms_phone: None,
        }
    }

    #[test]
    fn an_event_opens_only_with_its_own_recipient_kind_purpose_and_number() -> anyhow::Result<()> {
        let sealer = Sealer::new([9; 32]);
        let (token, account) = (Uuid::now_v7(), AccountId::generate());
        let reset = context(token, account, "ada@example.com", TokenPurpose::PasswordReset);
        let sealed = sealer.seal("the-raw-token", &seal_context(&reset))?;
        assert_eq!(sealer.open_event(&sealed, &reset).as_deref(), Some("the-raw-token"));
        let edits = [
            ("recipient edited", SealContext { email: "eve@example.com", ..reset }),
            ("account edited", SealContext { account_id: AccountId::generate(), ..reset }),
            ("kind edited", SealContext { kind: EventKind::PasswordChanged, ..reset }),
            ("purpose edited", SealContext { purpose: TokenPurpose::AccountSetup, ..reset }),
            ("number added", SealContext { sms_phone: Some("+447911123456"), ..reset }),
        ];
        for (what, edited) in &edits {
            assert_eq!(sealer.open_event(&sealed, edited), None, "{what}");
        }
        let texted = SealContext { sms_phone: Some("+447911123456"), ..reset };
        let code = sealer.seal("123456", &seal_context(&texted))?;
        assert_eq!(sealer.open_event(&code, &texted).as_deref(), Some("123456"));
        let renumbered = SealContext { sms_phone: Some("+447911123457"), ..reset };
        assert_eq!(sealer.open_event(&code, &renumbered), None, "number edited");
        let downgraded = SealedToken { key_id: sealed.key_id & KEY_ID_MASK, ..sealed.clone() };
        let eve = SealContext { email: "eve@example.com", ..reset };
        assert_eq!(sealer.open_event(&downgraded, &eve), None, "flag cleared");
        // A value sealed before the full context (token id only) still opens.
        let legacy = SealedToken { key_id: sealed.key_id & KEY_ID_MASK, ..sealer.seal("old", token.as_bytes())? };
        assert_eq!(sealer.open_event(&legacy, &reset).as_deref(), Some("old"));
        Ok(())
    }

    #[test]
    fn a_rotated_sealer_still_opens_values_sealed_under_the_previous_key() -> anyhow::Result<()> {
        let old = Sealer::new([1; 32]);
        let sealed = old.seal("the-raw-token", b"row-1")?;
        let rotated = Sealer::with_previous([2; 32], &[[1; 32]]);
        assert_eq!(rotated.open(&sealed, b"row-1").as_deref(), Some("the-raw-token"));
        assert_ne!(rotated.seal("x", b"row-1")?.key_id, sealed.key_id, "new values use the new key");
        Ok(())
    }
}
