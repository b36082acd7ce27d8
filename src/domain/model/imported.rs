//! Password hashes made by other systems, brought in by a migration: PHC strings
//! (`$argon2id$`, `$argon2i$`, `$scrypt$`), bcrypt (`$2a$`, `$2b$`, `$2y$`) and Django's
//! formats (`pbkdf2_sha256$`, `pbkdf2_sha1$`, `argon2$`, `bcrypt_sha256$`, `bcrypt$`,
//! `scrypt$`, and the weak `md5$`, `sha1$`, `unsalted_md5$`, `unsalted_sha1$`).
//!
//! Each is parsed, priced and checked once at import ([`accept`]) and verified with its
//! own algorithm from the RustCrypto crates or `bcrypt` ([`verify`]); a success is
//! rehashed to the server's argon2id, as an outdated argon2id hash is.
//!
//! **Cost.** What one check costs depends on the whole parameter set, not on any one
//! parameter: [`Cost`] prices it in microseconds of one core from the work the
//! algorithm does (PBKDF2: iterations × output blocks; scrypt: N·r·p; argon2: m·t;
//! bcrypt: 2^cost) and the memory it holds (scrypt 128·r·(N + p + 2) bytes, argon2 m
//! KiB). A hash over [`ImportLimits`] is refused at import, and is not run at
//! verification either (a mismatch, logged), so a stored hash cannot make one check
//! cost more than the ceiling. Every check that [`prepare`] lets in runs without error:
//! what could fail is found at import.

use anyhow::{Context, anyhow, bail};
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::alphabet::BCRYPT;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{Error, Result};

/// The ceilings on an imported hash: one on its estimated time, one on its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Highest estimated cost of one check, microseconds of one core ([`Cost`]).
    pub max_cost_micros: u64,
    /// Most memory one check may hold, KiB (argon2's m, scrypt's 128·r·N).
    pub max_memory_kib: u64,
    /// Accept unsalted or fast digests (`md5$`, `sha1$`, `unsalted_*`).
    pub allow_weak: bool,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits { max_cost_micros: 1_000_000, max_memory_kib: 128 * 1024, allow_weak: false }
    }
}

/// Nanoseconds of one core per unit of each algorithm's work, measured on the reference
/// machine with a release build (`examples/import_cost.rs`; figures in the README).
mod ns {
    // Measured 2026-12-06 on the 2-core reference machine (medians of 7, release):
    // PBKDF2-SHA256 1,000,000 iterations 127.7 ms, PBKDF2-SHA1 125.1 ms, scrypt
    // N=2^14 r=8 p=5 144.2 ms, argon2id m=102400 t=2 145.2 ms (argon2i m=32768 t=3
    // 52.9 ms), bcrypt cost 12 277.4 ms. Each rounded up.
    /// One PBKDF2-HMAC-SHA256 iteration of one 32-byte output block.
    pub const PBKDF2_SHA256: u64 = 130;
    /// One PBKDF2-HMAC-SHA1 iteration of one 20-byte output block.
    pub const PBKDF2_SHA1: u64 = 130;
    /// One unit of scrypt's N·r·p.
    pub const SCRYPT: u64 = 225;
    /// One KiB-pass of argon2 (m·t), the memory's first touch included.
    pub const ARGON2: u64 = 720;
    /// One of bcrypt's 2^cost key-schedule rounds.
    pub const BCRYPT: u64 = 68_000;
    /// A whole fast digest (md5$, sha1$).
    pub const DIGEST: u64 = 1_000;
}

/// What one check of a hash costs: estimated time on one core and memory held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    pub micros: u64,
    pub memory_kib: u64,
}

impl Cost {
    fn of(units: u64, ns_per_unit: u64, memory_kib: u64) -> Cost {
        Cost { micros: units.saturating_mul(ns_per_unit) / 1000, memory_kib }
    }
}

/// Longest imported hash accepted.
pub const MAX_HASH_BYTES: usize = 512;

/// Shortest output accepted (a shorter one is a truncated hash: easier to collide).
const MIN_OUTPUT_BYTES: usize = 16;

/// The formats accepted, for error messages and the README.
pub const FORMATS: &str = "$argon2id$, $argon2i$, $scrypt$, $2a$/$2b$/$2y$ (bcrypt), pbkdf2_sha256$, pbkdf2_sha1$, \
                           argon2$, bcrypt_sha256$, bcrypt$, scrypt$ (Django)";

/// bcrypt's base64 read as the libraries that write it do: the unused low bits of the
/// last character (salt and hash both) may be set, as some encoders leave them.
const BCRYPT_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &BCRYPT,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prf {
    Sha256,
    Sha1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WeakDigest {
    Md5,
    Sha1,
}

/// An imported hash, parsed and checked: everything its check needs, valid for the
/// algorithm, so running it cannot fail.
#[derive(Debug)]
pub struct Prepared {
    check: Check,
    cost: Cost,
}

#[derive(Debug)]
enum Check {
    Argon2 {
        algorithm: Algorithm,
        version: Version,
        params: Params,
        salt: Vec<u8>,
        expected: Vec<u8>,
    },
    Scrypt {
        params: scrypt::Params,
        salt: Vec<u8>,
        expected: Vec<u8>,
    },
    /// `sha256`: the password is first SHA-256'd to hex (Django's `bcrypt_sha256$`).
    Bcrypt {
        cost: u32,
        salt: [u8; 16],
        expected: [u8; 23],
        sha256: bool,
    },
    Pbkdf2 {
        prf: Prf,
        iterations: u32,
        salt: Vec<u8>,
        expected: Vec<u8>,
    },
    /// `md5$salt$hex`, `sha1$salt$hex`, `unsalted_md5$$hex`, `unsalted_sha1$$hex`.
    Weak {
        digest: WeakDigest,
        salt: Vec<u8>,
        hex: String,
    },
}

impl Prepared {
    /// What one check costs.
    pub fn cost(&self) -> Cost {
        self.cost
    }

    fn weak(&self) -> bool {
        matches!(self.check, Check::Weak { .. })
    }

    /// Whether `password` matches.
    pub fn matches(&self, password: &[u8]) -> bool {
        match &self.check {
            Check::Argon2 { algorithm, version, params, salt, expected } => {
                let mut out = vec![0u8; expected.len()];
                // Parameters, salt and output length were checked by `prepare`.
                let ran =
                    Argon2::new(*algorithm, *version, params.clone()).hash_password_into(password, salt, &mut out);
                ran.is_ok() && bool::from(out.ct_eq(expected))
            }
            Check::Scrypt { params, salt, expected } => {
                let mut out = vec![0u8; expected.len()];
                let ran = scrypt::scrypt(password, salt, params, &mut out);
                ran.is_ok() && bool::from(out.ct_eq(expected))
            }
            Check::Bcrypt { cost, salt, expected, sha256 } => {
                let hex: String;
                let input = if *sha256 {
                    hex = Sha256::digest(password).iter().map(|b| format!("{b:02x}")).collect();
                    hex.as_bytes()
                } else {
                    password
                };
                // As bcrypt libraries do: NUL-terminated, cut at 72 bytes.
                let mut key = [0u8; 72];
                let len = input.len().min(72);
                key[..len].copy_from_slice(&input[..len]);
                let out = bcrypt::bcrypt(*cost, *salt, &key[..(len + 1).min(72)]);
                bool::from(out[..23].ct_eq(expected))
            }
            Check::Pbkdf2 { prf, iterations, salt, expected } => {
                let mut out = vec![0u8; expected.len()];
                match prf {
                    Prf::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, *iterations, &mut out),
                    Prf::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, *iterations, &mut out),
                }
                bool::from(out.ct_eq(expected))
            }
            Check::Weak { digest, salt, hex } => {
                let mut input = salt.clone();
                input.extend_from_slice(password);
                let computed: String = match digest {
                    WeakDigest::Md5 => md5::Md5::digest(&input).iter().map(|b| format!("{b:02x}")).collect(),
                    WeakDigest::Sha1 => sha1::Sha1::digest(&input).iter().map(|b| format!("{b:02x}")).collect(),
                };
                bool::from(computed.as_bytes().ct_eq(hex.as_bytes()))
            }
        }
    }
}

fn at_least_16(output: &[u8]) -> anyhow::Result<()> {
    if output.len() < MIN_OUTPUT_BYTES {
        bail!("has an output of {} bytes, under {MIN_OUTPUT_BYTES}", output.len());
    }
    Ok(())
}

fn argon2_check(stored: &str) -> anyhow::Result<Prepared> {
    let phc = PasswordHash::new(stored).map_err(|e| anyhow!("is not a valid argon2 PHC string: {e}"))?;
    let algorithm =
        Algorithm::try_from(phc.algorithm.as_str()).map_err(|e| anyhow!("names an unknown argon2 variant: {e}"))?;
    if algorithm == Algorithm::Argon2d {
        bail!("is argon2d, which is not meant for passwords");
    }
    let version = match phc.version {
        None => Version::V0x10,
        Some(v) => Version::try_from(v).map_err(|e| anyhow!("has an unknown argon2 version: {e}"))?,
    };
    // The output length is part of the parameters (argon2 allows 4 bytes to 4 GiB; a
    // PHC string carries 10 to 64).
    let params = Params::try_from(&phc).map_err(|e| anyhow!("has invalid argon2 parameters: {e}"))?;
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else { bail!("has no salt or output") };
    let salt = salt.as_ref().to_vec();
    if salt.len() < argon2::MIN_SALT_LEN {
        bail!("has a salt shorter than {} bytes", argon2::MIN_SALT_LEN);
    }
    let expected = expected.as_bytes().to_vec();
    at_least_16(&expected)?;
    let m = u64::from(params.m_cost());
    let cost = Cost::of(m.saturating_mul(u64::from(params.t_cost())), ns::ARGON2, m);
    Ok(Prepared { check: Check::Argon2 { algorithm, version, params, salt, expected }, cost })
}

fn scrypt_check(log_n: u8, r: u32, p: u32, salt: Vec<u8>, expected: Vec<u8>) -> anyhow::Result<Prepared> {
    at_least_16(&expected)?;
    if expected.len() > 1024 {
        bail!("has an output over 1024 bytes");
    }
    let params = scrypt::Params::new(log_n, r, p).map_err(|e| anyhow!("has invalid scrypt parameters: {e}"))?;
    let n = 1u64 << log_n.min(63);
    let (r, p) = (u64::from(r), u64::from(p));
    // V is 128·r·N bytes, B 128·r·p, the working blocks 256·r.
    let memory_kib = 128u64.saturating_mul(r).saturating_mul(n.saturating_add(p).saturating_add(2)) / 1024;
    let cost = Cost::of(n.saturating_mul(r).saturating_mul(p), ns::SCRYPT, memory_kib);
    Ok(Prepared { check: Check::Scrypt { params, salt, expected }, cost })
}

fn bcrypt_check(hash: &str, sha256: bool) -> anyhow::Result<Prepared> {
    // `$2x$NN$` then 22 characters of salt and 31 of hash, in bcrypt's base64.
    let (Some(cost), Some(salt), Some(output)) = (hash.get(4..6), hash.get(7..29), hash.get(29..)) else {
        bail!("is not a valid bcrypt hash");
    };
    if hash.len() != 60 || hash.as_bytes().get(6) != Some(&b'$') {
        bail!("is not a valid bcrypt hash");
    }
    let cost: u32 = cost.parse().context("has a malformed bcrypt cost")?;
    if !(4..=31).contains(&cost) {
        bail!("has bcrypt cost {cost}, outside 4..=31");
    }
    let salt: [u8; 16] =
        BCRYPT_LENIENT.decode(salt).ok().and_then(|s| s.try_into().ok()).context("has a malformed bcrypt salt")?;
    let expected: [u8; 23] =
        BCRYPT_LENIENT.decode(output).ok().and_then(|h| h.try_into().ok()).context("has a malformed bcrypt hash")?;
    let cost_units = Cost::of(1u64 << cost, ns::BCRYPT, 4);
    Ok(Prepared { check: Check::Bcrypt { cost, salt, expected, sha256 }, cost: cost_units })
}

fn pbkdf2_check(prf: Prf, iterations: &str, salt: &str, hash: &str) -> anyhow::Result<Prepared> {
    let iterations: u32 = iterations.parse().context("has a malformed iteration count")?;
    if iterations == 0 {
        bail!("has 0 iterations");
    }
    let expected = STANDARD.decode(hash).context("has a malformed base64 hash")?;
    at_least_16(&expected)?;
    // Each block of output is a whole run of the iterations.
    let (block, ns) = match prf {
        Prf::Sha256 => (32, ns::PBKDF2_SHA256),
        Prf::Sha1 => (20, ns::PBKDF2_SHA1),
    };
    let blocks = expected.len().div_ceil(block) as u64;
    let cost = Cost::of(u64::from(iterations).saturating_mul(blocks), ns, 1);
    Ok(Prepared { check: Check::Pbkdf2 { prf, iterations, salt: salt.as_bytes().to_vec(), expected }, cost })
}

fn weak_check(digest: WeakDigest, salt: &str, hex: &str) -> anyhow::Result<Prepared> {
    let len = match digest {
        WeakDigest::Md5 => 32,
        WeakDigest::Sha1 => 40,
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("has a malformed hex digest");
    }
    let check = Check::Weak { digest, salt: salt.as_bytes().to_vec(), hex: hex.to_ascii_lowercase() };
    Ok(Prepared { check, cost: Cost::of(1, ns::DIGEST, 1) })
}

/// Parses `stored` into a check that cannot fail, priced; not yet held to any ceiling.
pub fn prepare(stored: &str) -> anyhow::Result<Prepared> {
    if stored.len() > MAX_HASH_BYTES {
        bail!("is longer than {MAX_HASH_BYTES} bytes");
    }
    // Django writes "argon2" followed by argon2-cffi's PHC string.
    if let Some(phc) = stored.strip_prefix("argon2").filter(|rest| rest.starts_with("$argon2")) {
        return argon2_check(phc);
    }
    if stored.starts_with("$argon2") {
        return argon2_check(stored);
    }
    if stored.starts_with("$scrypt$") {
        // passlib writes salt and hash in "adapted" base64, with '.' for '+'.
        let phc = PasswordHash::new(&stored.replace('.', "+"))
            .map_err(|e| anyhow!("is not a valid scrypt PHC string: {e}"))?;
        let get = |name: &str| phc.params.get_decimal(name).ok_or_else(|| anyhow!("has no scrypt {name}"));
        let log_n = u8::try_from(get("ln")?).context("has an ln out of range")?;
        let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else { bail!("has no salt or output") };
        return scrypt_check(log_n, get("r")?, get("p")?, salt.as_ref().to_vec(), expected.as_bytes().to_vec());
    }
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return bcrypt_check(stored, false);
    }
    let mut parts = stored.split('$');
    let algorithm = parts.next().unwrap_or_default();
    let fields: Vec<&str> = parts.collect();
    match (algorithm, fields.as_slice()) {
        ("pbkdf2_sha256", [iterations, salt, hash]) => pbkdf2_check(Prf::Sha256, iterations, salt, hash),
        ("pbkdf2_sha1", [iterations, salt, hash]) => pbkdf2_check(Prf::Sha1, iterations, salt, hash),
        ("bcrypt_sha256" | "bcrypt", ["", ..]) => {
            let hash = stored.get(algorithm.len() + 1..).unwrap_or_default();
            if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
                bail!("is not a bcrypt hash after its {algorithm}$ prefix");
            }
            bcrypt_check(hash, algorithm == "bcrypt_sha256")
        }
        ("scrypt", [n, salt, r, p, hash]) => {
            let n: u64 = n.parse().context("has a malformed N")?;
            if !n.is_power_of_two() || n < 2 {
                bail!("has an N that is not a power of two");
            }
            let log_n = u8::try_from(n.trailing_zeros()).context("has an N out of range")?;
            let hash = STANDARD.decode(hash).context("has a malformed base64 hash")?;
            let r = r.parse().context("has a malformed r")?;
            let p = p.parse().context("has a malformed p")?;
            scrypt_check(log_n, r, p, salt.as_bytes().to_vec(), hash)
        }
        ("md5", [salt, hex]) => weak_check(WeakDigest::Md5, salt, hex),
        ("sha1", [salt, hex]) => weak_check(WeakDigest::Sha1, salt, hex),
        ("unsalted_md5", ["", hex]) => weak_check(WeakDigest::Md5, "", hex),
        ("unsalted_sha1", ["", hex]) => weak_check(WeakDigest::Sha1, "", hex),
        _ => bail!("is not a supported format ({FORMATS})"),
    }
}

/// Holds a prepared hash to the ceilings (and to the weak-format flag unless `weak_ok`).
fn bound(prepared: &Prepared, limits: &ImportLimits, weak_ok: bool) -> anyhow::Result<()> {
    if prepared.weak() && !weak_ok && !limits.allow_weak {
        bail!("is a fast unsalted or weakly salted digest; import it only with --allow-weak-imported-hashes");
    }
    let Cost { micros, memory_kib } = prepared.cost;
    if micros > limits.max_cost_micros {
        bail!(
            "would cost about {} ms of one core per check, over the import ceiling of {} ms (--import-max-cost-ms)",
            micros / 1000,
            limits.max_cost_micros / 1000
        );
    }
    if memory_kib > limits.max_memory_kib {
        bail!(
            "asks for {memory_kib} KiB, over the import ceiling of {} KiB (--import-max-memory-kib)",
            limits.max_memory_kib
        );
    }
    Ok(())
}

/// Checks an imported hash for storage: the string to store (Django's `argon2` prefix
/// dropped, leaving the PHC string), or `INVALID_ARGUMENT` on `field` with the reason.
pub fn accept(hash: &str, limits: &ImportLimits, field: &'static str) -> Result<String> {
    let prepared = prepare(hash).map_err(|e| Error::invalid(field, format!("{e:#}")))?;
    bound(&prepared, limits, false).map_err(|e| Error::invalid(field, format!("{e:#}")))?;
    Ok(hash.strip_prefix("argon2").filter(|rest| rest.starts_with("$argon2")).unwrap_or(hash).to_owned())
}

/// The cost of checking a stored hash, if it is one this module reads.
pub fn cost_of(stored: &str) -> Option<Cost> {
    prepare(stored).ok().map(|p| p.cost)
}

/// Whether `password` matches an imported `stored` hash. An error means the hash was
/// not run: it is not one [`accept`] lets in under `limits` (malformed, or over a
/// ceiling lowered since its import). A weak digest imported under
/// `--allow-weak-imported-hashes` still verifies (and is rehashed) after the flag is
/// switched off.
pub fn verify(password: &[u8], stored: &str, limits: &ImportLimits) -> anyhow::Result<bool> {
    let prepared = prepare(stored)?;
    bound(&prepared, limits, true)?;
    Ok(prepared.matches(password))
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

    /// Hashes each under every former per-parameter ceiling, each seconds
    /// of work; the whole parameter set is priced, so each is over the one ceiling.
    #[test]
    fn costly_combinations_of_allowed_parameters_are_refused() {
        let long_output = STANDARD.encode([0u8; 366]);
        let salt = "c2FsdHNhbHRzYWx0c2FsdA";
        let out = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let cases = [
            format!("pbkdf2_sha1$2000000$salt${long_output}"),
            format!("$scrypt$ln=17,r=16,p=16${salt}${out}"),
            format!("$argon2id$v=19$m=262144,t=16,p=16${salt}${out}"),
            format!("$argon2id$v=19$m=131072,t=16,p=1${salt}${out}"),
            "$2b$15$NQOHRHnRexj5SBu57l3Bue.Q7K.nZOQlxmKiUzhMrIKMmBpS7kgIu".to_owned(),
        ];
        for hash in &cases {
            let err = accept(hash, &ImportLimits::default(), "password_hash");
            assert!(matches!(err, Err(Error::InvalidArgument { .. })), "{hash}: {err:?}");
        }
        // Over the memory ceiling however cheap in time.
        let big = format!("$argon2id$v=19$m=262144,t=1,p=1${salt}${out}");
        let err = accept(&big, &ImportLimits::default(), "password_hash");
        assert!(format!("{err:?}").contains("--import-max-memory-kib"), "{err:?}");
    }

    /// Django's defaults and the common libraries' defaults are under the ceilings.
    #[test]
    fn usual_defaults_are_priced_under_the_ceilings() {
        let salt = "c2FsdHNhbHRzYWx0c2FsdA";
        let out = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let cases = [
            format!("pbkdf2_sha256$1000000$salt${}", STANDARD.encode([0u8; 32])),
            format!("pbkdf2_sha1$1000000$salt${}", STANDARD.encode([0u8; 20])),
            format!("$argon2id$v=19$m=102400,t=2,p=8${salt}${out}"),
            format!("$argon2id$v=19$m=65536,t=3,p=4${salt}${out}"),
            format!("scrypt$16384$salt$8$5${}", STANDARD.encode([0u8; 64])),
            "$2b$12$NQOHRHnRexj5SBu57l3Bue.Q7K.nZOQlxmKiUzhMrIKMmBpS7kgIu".to_owned(),
        ];
        for hash in &cases {
            assert!(accept(hash, &ImportLimits::default(), "password_hash").is_ok(), "{hash}");
        }
    }

    /// Every hash `accept` lets in runs: none of these can fail at verification.
    #[test]
    fn accepted_hashes_verify_without_error() {
        let limits = ImportLimits::default();
        let salt = "c2FsdHNhbHRzYWx0c2FsdA";
        let cases = [
            // A 64-byte and a 16-byte argon2 output.
            format!("$argon2id$v=19$m=64,t=1,p=1${salt}${}", STANDARD.encode([1u8; 64]).trim_end_matches('=')),
            format!("$argon2i$v=19$m=64,t=1,p=1${salt}${}", STANDARD.encode([1u8; 16]).trim_end_matches('=')),
            // bcrypt whose salt's last character has its unused bits set ('.' would be canonical).
            "$2b$04$abcdefghijklmnopqrstu/abcdefghijklmnopqrstuvwxyz01234".to_owned(),
        ];
        for hash in &cases {
            accept(hash, &limits, "password_hash").unwrap_or_else(|e| panic!("{hash}: {e:?}"));
            assert!(!verify(b"wrong", hash, &limits).unwrap_or_else(|e| panic!("{hash}: {e:?}")), "{hash}");
        }
    }

    /// A non-canonical bcrypt salt is the same salt: the hash made with the canonical
    /// one verifies with either spelling.
    #[test]
    fn bcrypt_salts_are_read_leniently() {
        let canonical = bcrypt::hash_with_salt("a password", 4, *b"0123456789abcdef")
            .map(|h| h.format_for_version(bcrypt::Version::TwoB))
            .unwrap_or_default();
        const ALPHABET: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let last = canonical.as_bytes()[28];
        let position = ALPHABET.iter().position(|&c| c == last).unwrap_or_default();
        assert_eq!(position & 0x0f, 0, "bcrypt writes the unused bits as zero");
        let mut loose = canonical.clone().into_bytes();
        loose[28] = ALPHABET[position | 0x0f];
        let loose = String::from_utf8(loose).unwrap_or_default();
        assert_ne!(loose, canonical);
        for hash in [&canonical, &loose] {
            assert!(verify(b"a password", hash, &ImportLimits::default()).unwrap_or(false), "{hash}");
            assert!(!verify(b"another one", hash, &ImportLimits::default()).unwrap_or(true), "{hash}");
        }
    }
}
