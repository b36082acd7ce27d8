//! Password hashes made by other systems, brought in by a migration: PHC strings
//! (`$argon2id$`, `$argon2i$`, `$scrypt$`), bcrypt (`$2a$`, `$2b$`, `$2y$`) and Django's
//! formats (`pbkdf2_sha256$`, `pbkdf2_sha1$`, `argon2$`, `bcrypt_sha256$`, `bcrypt$`,
//! `scrypt$`, and the weak `md5$`, `sha1$`, `unsalted_md5$`, `unsalted_sha1$`).
//!
//! Each is parsed and bounded once at import ([`accept`]) and verified with its own
//! algorithm from the RustCrypto crates or `bcrypt` ([`verify`]); a success is rehashed
//! to the server's argon2id, as an outdated argon2id hash is. A work factor above
//! [`ImportLimits`] is refused at import and at verification, so a stored hash cannot
//! make one check cost minutes.

use anyhow::{Context, anyhow, bail};
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{Error, Result};

/// The highest work factors accepted in an imported hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// PBKDF2 iterations (Django's default is 1,000,000).
    pub max_pbkdf2_iterations: u32,
    /// bcrypt cost (Django's default is 12).
    pub max_bcrypt_cost: u32,
    /// Memory of an argon2 or scrypt hash, KiB (Django's argon2 default is 102,400).
    pub max_memory_kib: u32,
    /// argon2 passes, scrypt parallelism and argon2 lanes.
    pub max_iterations: u32,
    /// Accept unsalted or fast digests (`md5$`, `sha1$`, `unsalted_*`).
    pub allow_weak: bool,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            max_pbkdf2_iterations: 2_000_000,
            max_bcrypt_cost: 14,
            max_memory_kib: 256 * 1024,
            max_iterations: 16,
            allow_weak: false,
        }
    }
}

/// Longest imported hash accepted.
pub const MAX_HASH_BYTES: usize = 512;

/// The formats accepted, for error messages and the README.
pub const FORMATS: &str = "$argon2id$, $argon2i$, $scrypt$, $2a$/$2b$/$2y$ (bcrypt), pbkdf2_sha256$, pbkdf2_sha1$, \
                           argon2$, bcrypt_sha256$, bcrypt$, scrypt$ (Django)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest1 {
    Sha256,
    Sha1,
}

/// A parsed imported hash, borrowing from the stored string.
#[derive(Debug)]
enum Imported<'a> {
    /// A PHC argon2 string (Django's `argon2$` is one after its prefix).
    Argon2(PasswordHash),
    /// A PHC `$scrypt$ln=..,r=..,p=..$salt$hash` string.
    ScryptPhc(PasswordHash),
    /// Django's `scrypt$N$salt$r$p$hash` (base64 output, 64 bytes).
    ScryptDjango {
        salt: &'a str,
        log_n: u8,
        r: u32,
        p: u32,
        hash: Vec<u8>,
    },
    /// A modular-crypt bcrypt hash; `sha256` when the password is first SHA-256'd to hex
    /// (Django's `bcrypt_sha256$`).
    Bcrypt {
        hash: &'a str,
        sha256: bool,
    },
    Pbkdf2 {
        digest: Digest1,
        iterations: u32,
        salt: &'a str,
        hash: Vec<u8>,
    },
    /// `md5$salt$hex`, `sha1$salt$hex`, `unsalted_md5$$hex`, `unsalted_sha1$$hex`.
    Weak {
        digest: WeakDigest,
        salt: &'a str,
        hex: &'a str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WeakDigest {
    Md5,
    Sha1,
}

fn parse(stored: &str) -> anyhow::Result<Imported<'_>> {
    if stored.len() > MAX_HASH_BYTES {
        bail!("is longer than {MAX_HASH_BYTES} bytes");
    }
    // Django writes "argon2" followed by argon2-cffi's PHC string.
    if let Some(phc) = stored.strip_prefix("argon2").filter(|rest| rest.starts_with("$argon2")) {
        return parse(phc);
    }
    if stored.starts_with("$argon2") {
        let phc = PasswordHash::new(stored).map_err(|e| anyhow!("is not a valid argon2 PHC string: {e}"))?;
        return Ok(Imported::Argon2(phc));
    }
    if stored.starts_with("$scrypt$") {
        // passlib writes salt and hash in "adapted" base64, with '.' for '+'.
        let phc = PasswordHash::new(&stored.replace('.', "+"))
            .map_err(|e| anyhow!("is not a valid scrypt PHC string: {e}"))?;
        return Ok(Imported::ScryptPhc(phc));
    }
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return Ok(Imported::Bcrypt { hash: stored, sha256: false });
    }
    let mut parts = stored.split('$');
    let algorithm = parts.next().unwrap_or_default();
    let fields: Vec<&str> = parts.collect();
    match (algorithm, fields.as_slice()) {
        ("pbkdf2_sha256" | "pbkdf2_sha1", [iterations, salt, hash]) => Ok(Imported::Pbkdf2 {
            digest: if algorithm == "pbkdf2_sha256" { Digest1::Sha256 } else { Digest1::Sha1 },
            iterations: iterations.parse().context("has a malformed iteration count")?,
            salt,
            hash: STANDARD.decode(hash).context("has a malformed base64 hash")?,
        }),
        ("bcrypt_sha256" | "bcrypt", ["", ..]) => {
            let hash = stored.get(algorithm.len() + 1..).unwrap_or_default();
            if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
                bail!("is not a bcrypt hash after its {algorithm}$ prefix");
            }
            Ok(Imported::Bcrypt { hash, sha256: algorithm == "bcrypt_sha256" })
        }
        ("scrypt", [n, salt, r, p, hash]) => {
            let n: u64 = n.parse().context("has a malformed N")?;
            if !n.is_power_of_two() || n < 2 {
                bail!("has an N that is not a power of two");
            }
            Ok(Imported::ScryptDjango {
                salt,
                log_n: u8::try_from(n.trailing_zeros()).context("has an N out of range")?,
                r: r.parse().context("has a malformed r")?,
                p: p.parse().context("has a malformed p")?,
                hash: STANDARD.decode(hash).context("has a malformed base64 hash")?,
            })
        }
        ("md5", [salt, hex]) => Ok(Imported::Weak { digest: WeakDigest::Md5, salt, hex }),
        ("sha1", [salt, hex]) => Ok(Imported::Weak { digest: WeakDigest::Sha1, salt, hex }),
        ("unsalted_md5", ["", hex]) => Ok(Imported::Weak { digest: WeakDigest::Md5, salt: "", hex }),
        ("unsalted_sha1", ["", hex]) => Ok(Imported::Weak { digest: WeakDigest::Sha1, salt: "", hex }),
        _ => bail!("is not a supported format ({FORMATS})"),
    }
}

/// The argon2 parameters of a PHC string, bounded.
fn argon2_of(phc: &PasswordHash, limits: &ImportLimits) -> anyhow::Result<(Algorithm, Version, Params)> {
    let algorithm =
        Algorithm::try_from(phc.algorithm.as_str()).map_err(|e| anyhow!("names an unknown argon2 variant: {e}"))?;
    if algorithm == Algorithm::Argon2d {
        bail!("is argon2d, which is not meant for passwords");
    }
    let version = match phc.version {
        None => Version::V0x10,
        Some(v) => Version::try_from(v).map_err(|e| anyhow!("has an unknown argon2 version: {e}"))?,
    };
    let params = Params::try_from(phc).map_err(|e| anyhow!("has invalid argon2 parameters: {e}"))?;
    if params.m_cost() > limits.max_memory_kib {
        bail!("asks for {} KiB, over the import ceiling of {} KiB", params.m_cost(), limits.max_memory_kib);
    }
    if params.t_cost() > limits.max_iterations || params.p_cost() > limits.max_iterations {
        bail!("has t={} p={}, over the import ceiling of {}", params.t_cost(), params.p_cost(), limits.max_iterations);
    }
    Ok((algorithm, version, params))
}

fn scrypt_params(log_n: u8, r: u32, p: u32, limits: &ImportLimits) -> anyhow::Result<scrypt::Params> {
    // scrypt needs 128 · r · N bytes.
    let kib = 128u64.saturating_mul(u64::from(r)).saturating_mul(1u64 << log_n.min(63)) / 1024;
    if kib > u64::from(limits.max_memory_kib) || log_n > 40 {
        bail!("asks for {kib} KiB, over the import ceiling of {} KiB", limits.max_memory_kib);
    }
    if p > limits.max_iterations {
        bail!("has p={p}, over the import ceiling of {}", limits.max_iterations);
    }
    scrypt::Params::new(log_n, r, p).map_err(|e| anyhow!("has invalid scrypt parameters: {e}"))
}

fn scrypt_phc_params(phc: &PasswordHash, limits: &ImportLimits) -> anyhow::Result<scrypt::Params> {
    let get = |name: &str| phc.params.get_decimal(name).ok_or_else(|| anyhow!("has no scrypt {name}"));
    let log_n = u8::try_from(get("ln")?).context("has an ln out of range")?;
    scrypt_params(log_n, get("r")?, get("p")?, limits)
}

/// Checks the hash's work factor and whether weak formats are allowed.
fn bound(hash: &Imported<'_>, limits: &ImportLimits) -> anyhow::Result<()> {
    match hash {
        Imported::Argon2(phc) => argon2_of(phc, limits).map(|_| ()),
        Imported::ScryptPhc(phc) => scrypt_phc_params(phc, limits).map(|_| ()),
        Imported::ScryptDjango { log_n, r, p, .. } => scrypt_params(*log_n, *r, *p, limits).map(|_| ()),
        Imported::Bcrypt { hash, .. } => {
            let cost: u32 = hash.get(4..6).and_then(|c| c.parse().ok()).context("has a malformed bcrypt cost")?;
            if cost > limits.max_bcrypt_cost {
                bail!("has bcrypt cost {cost}, over the import ceiling of {}", limits.max_bcrypt_cost);
            }
            Ok(())
        }
        Imported::Pbkdf2 { iterations, hash, .. } => {
            if *iterations == 0 || *iterations > limits.max_pbkdf2_iterations {
                bail!("has {iterations} iterations, outside 1..={}", limits.max_pbkdf2_iterations);
            }
            if hash.len() < 16 {
                bail!("has a hash shorter than 16 bytes");
            }
            Ok(())
        }
        Imported::Weak { .. } if !limits.allow_weak => {
            bail!("is a fast unsalted or weakly salted digest; import it only with --allow-weak-imported-hashes")
        }
        Imported::Weak { digest, hex, .. } => {
            let len = match digest {
                WeakDigest::Md5 => 32,
                WeakDigest::Sha1 => 40,
            };
            if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("has a malformed hex digest");
            }
            Ok(())
        }
    }
}

/// Checks an imported hash for storage: the string to store (Django's `argon2` prefix
/// dropped, leaving the PHC string), or `INVALID_ARGUMENT` on `field` with the reason.
pub fn accept(hash: &str, limits: &ImportLimits, field: &'static str) -> Result<String> {
    let parsed = parse(hash).map_err(|e| Error::invalid(field, format!("{e:#}")))?;
    bound(&parsed, limits).map_err(|e| Error::invalid(field, format!("{e:#}")))?;
    // A bcrypt hash must be one the library can read: `$2x$NN$` and 53 characters of
    // bcrypt's base64 (checked by shape; running it would cost the hash's full work).
    if let Imported::Bcrypt { hash: inner, .. } = &parsed {
        let body = inner.get(7..).unwrap_or_default();
        let shaped = inner.len() == 60
            && inner.as_bytes().get(6) == Some(&b'$')
            && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
        if !shaped {
            return Err(Error::invalid(field, "is not a valid bcrypt hash"));
        }
    }
    Ok(hash.strip_prefix("argon2").filter(|rest| rest.starts_with("$argon2")).unwrap_or(hash).to_owned())
}

/// Whether `password` matches an imported `stored` hash (one [`accept`] let in). A weak
/// digest imported under `--allow-weak-imported-hashes` still verifies (and is rehashed)
/// after the flag is switched off; the work-factor ceilings still hold.
pub fn verify(password: &[u8], stored: &str, limits: &ImportLimits) -> anyhow::Result<bool> {
    let parsed = parse(stored)?;
    bound(&parsed, &ImportLimits { allow_weak: true, ..*limits })?;
    Ok(match parsed {
        Imported::Argon2(phc) => {
            let (algorithm, version, params) = argon2_of(&phc, limits)?;
            let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else { bail!("has no salt or output") };
            let mut out = vec![0u8; expected.len()];
            Argon2::new(algorithm, version, params)
                .hash_password_into(password, salt.as_ref(), &mut out)
                .map_err(|e| anyhow!("argon2: {e}"))?;
            bool::from(out.ct_eq(expected.as_bytes()))
        }
        Imported::ScryptPhc(phc) => {
            let params = scrypt_phc_params(&phc, limits)?;
            let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else { bail!("has no salt or output") };
            let mut out = vec![0u8; expected.len()];
            scrypt::scrypt(password, salt.as_ref(), &params, &mut out).map_err(|e| anyhow!("scrypt: {e}"))?;
            bool::from(out.ct_eq(expected.as_bytes()))
        }
        Imported::ScryptDjango { salt, log_n, r, p, hash } => {
            let params = scrypt_params(log_n, r, p, limits)?;
            let mut out = vec![0u8; hash.len()];
            scrypt::scrypt(password, salt.as_bytes(), &params, &mut out).map_err(|e| anyhow!("scrypt: {e}"))?;
            bool::from(out.ct_eq(&hash))
        }
        Imported::Bcrypt { hash, sha256 } => {
            if sha256 {
                let hex: String = Sha256::digest(password).iter().map(|b| format!("{b:02x}")).collect();
                bcrypt::verify(hex.as_bytes(), hash)?
            } else {
                bcrypt::verify(password, hash)?
            }
        }
        Imported::Pbkdf2 { digest, iterations, salt, hash } => {
            let mut out = vec![0u8; hash.len()];
            match digest {
                Digest1::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt.as_bytes(), iterations, &mut out),
                Digest1::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt.as_bytes(), iterations, &mut out),
            }
            bool::from(out.ct_eq(&hash))
        }
        Imported::Weak { digest, salt, hex } => {
            let mut input = salt.as_bytes().to_vec();
            input.extend_from_slice(password);
            let computed: String = match digest {
                WeakDigest::Md5 => md5::Md5::digest(&input).iter().map(|b| format!("{b:02x}")).collect(),
                WeakDigest::Sha1 => sha1::Sha1::digest(&input).iter().map(|b| format!("{b:02x}")).collect(),
            };
            bool::from(computed.as_bytes().ct_eq(hex.to_ascii_lowercase().as_bytes()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_malformed_hashes_are_refused_naming_the_field() {
        for bad in ["", "plain", "pbkdf2_sha256$x$salt$aGFzaA==", "$2b$xx$short", "argon2$nonsense", "crypt$$abc"] {
            match accept(bad, &ImportLimits::default(), "password_hash") {
                Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "password_hash", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn weak_digests_need_the_flag() {
        let md5 = "md5$salt$0123456789abcdef0123456789abcdef";
        assert!(accept(md5, &ImportLimits::default(), "password_hash").is_err());
        let allow = ImportLimits { allow_weak: true, ..ImportLimits::default() };
        assert!(accept(md5, &allow, "password_hash").is_ok());
    }

    #[test]
    fn work_factors_over_the_ceiling_are_refused() {
        let many = "pbkdf2_sha256$9000000$salt$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let err = accept(many, &ImportLimits::default(), "password_hash");
        assert!(matches!(err, Err(Error::InvalidArgument { .. })), "{err:?}");
    }
}
