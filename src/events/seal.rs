//! Sealing of raw tokens kept in the outbox for delivery: XChaCha20-Poly1305 under a
//! key derived from the server key, bound to the token's id, so the database alone
//! never yields a usable token. Each sealed value records the id of its key.

use anyhow::anyhow;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use rand::TryRng;
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 24;

/// A token sealed for storage: `nonce ‖ ciphertext ‖ tag`, and the key it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedToken {
    pub key_id: i64,
    pub bytes: Vec<u8>,
}

#[derive(Clone)]
pub struct Sealer {
    key_id: i64,
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        // A public fingerprint of the key: identifies it without revealing it.
        let fingerprint = Sha256::digest(key);
        let key_id = i64::from(u32::from_be_bytes([fingerprint[0], fingerprint[1], fingerprint[2], fingerprint[3]]));
        Self { key_id, cipher: XChaCha20Poly1305::new(&Key::from(key)) }
    }

    /// `context` (the token's id) is authenticated, so a sealed value cannot be moved
    /// to another row.
    pub fn seal(&self, plaintext: &str, context: &[u8]) -> anyhow::Result<SealedToken> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::SysRng.try_fill_bytes(&mut nonce).map_err(|e| anyhow!("OS RNG: {e}"))?;
        let ciphertext = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext.as_bytes(), aad: context })
            .map_err(|_| anyhow!("sealing failed"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Ok(SealedToken { key_id: self.key_id, bytes })
    }

    /// `None` when the value was sealed under another key or has been tampered with.
    pub fn open(&self, sealed: &SealedToken, context: &[u8]) -> Option<String> {
        if sealed.key_id != self.key_id || sealed.bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).ok()?;
        let plain = self.cipher.decrypt(&nonce, Payload { msg: ciphertext, aad: context }).ok()?;
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
}
