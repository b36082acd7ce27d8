//! The server key and the purpose-bound keys derived from it with HKDF-SHA-256.
//! Every use gets its own label, so no key is ever used for two things.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hkdf::Hkdf;
use sha2::Sha256;

pub const MIN_KEY_BYTES: usize = 32;
const DIGEST_LABEL: &[u8] = b"pwreset/v1/token-digest";
const SEAL_LABEL: &[u8] = b"pwreset/v1/event-seal";
const ATTEMPTS_LABEL: &[u8] = b"pwreset/v1/verify-attempts";

/// Secret input key material (at least 32 bytes). `Debug` is `[redacted]`.
#[derive(Clone)]
pub struct ServerKey(Vec<u8>);

impl ServerKey {
    /// Parses base64 (standard or URL-safe, padded or not) of at least 32 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| "the secret key must be base64".to_string())?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!("the secret key must be at least {MIN_KEY_BYTES} bytes, got {}", bytes.len()));
        }
        Ok(ServerKey(bytes))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ServerKey(bytes.to_vec())
    }

    pub fn encode(&self) -> String {
        STANDARD.encode(&self.0)
    }

    fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF's limit of 255 × 32, so expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, &self.0).expand(label, &mut out);
        out
    }

    pub fn digest_key(&self) -> [u8; 32] {
        self.derive(DIGEST_LABEL)
    }

    pub fn seal_key(&self) -> [u8; 32] {
        self.derive(SEAL_LABEL)
    }

    /// Keys the digest under which failed password checks are counted per address.
    pub fn attempts_key(&self) -> [u8; 32] {
        self.derive(ATTEMPTS_LABEL)
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_by_purpose() {
        let key = ServerKey::from_bytes([7; 32]);
        assert_ne!(key.digest_key(), key.seal_key());
    }

    #[test]
    fn parse_rejects_short_and_non_base64_keys() {
        assert!(ServerKey::parse("c2hvcnQ=").is_err());
        assert!(ServerKey::parse("not base64 at all!").is_err());
        let good = ServerKey::from_bytes([1; 32]).encode();
        assert!(ServerKey::parse(&good).is_ok());
    }
}
