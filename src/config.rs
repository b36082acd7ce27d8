//! Typed settings, validated once at start-up. Each section goes to the component
//! that owns it; handlers never see `Config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use argon2::Params;
pub use pwreset_proto::secret::Secret;

pub use crate::cli::DatabaseUrl;
use crate::cli::{GeneratorKind, Settings};
use crate::domain::model::breached::BreachedPasswords;
use crate::domain::model::imported::ImportLimits;
use crate::domain::model::keys::ServerKey;
use crate::domain::model::password::MAX_PASSWORD_HISTORY;
use crate::domain::model::password::{LOWEST_MAX_LENGTH, LOWEST_MIN_LENGTH, MAX_PASSWORD_BYTES, PasswordPolicy};
use crate::domain::model::textfile;
use crate::domain::model::token::{TokenGenerator, TokenPolicy};
use crate::domain::runtime::guard::FailureLimit;
use crate::domain::runtime::hasher::HasherSettings;
use crate::domain::runtime::limits::RateLimits;
use crate::grpc::auth::{CallerKey, Role};
use crate::grpc::client::ClientIpSettings;

/// Where the server key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    Given(ServerKey),
    File(PathBuf),
    /// A key file created on first start (the zero-set-up SQLite default).
    CreateIfMissing(PathBuf),
    /// A fresh key per process, for in-memory databases.
    Ephemeral,
    /// None given for a database that needs one: an error for every command that uses
    /// the key (`serve`, `purge`), none for those that do not (`migrate`, `import`).
    Missing,
}

#[derive(Debug, Clone)]
pub struct EventSettings {
    pub retention: Duration,
    pub poll_interval: Duration,
    /// Events kept in memory for subscribers a little behind; past it they read the
    /// database from their own cursor.
    pub broadcast_capacity: usize,
    pub emit_unknown_account_events: bool,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub caller_keys: Vec<CallerKey>,
    pub allow_unauthenticated: bool,
    pub max_message_bytes: usize,
    pub shutdown_grace: Duration,
    pub sweep_interval: Duration,
    pub metrics_listen: Option<SocketAddr>,
    pub drain_delay: Duration,
    pub health_check_interval: Duration,
    /// HTTP/2 keep-alive pings to clients (and to a proxy in front).
    pub keepalive_interval: Duration,
    pub tls: Option<TlsSettings>,
}

/// PEM contents, read at start-up.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub database_max_connections: u32,
    pub migrate: bool,
    pub key: KeySource,
    /// Keys being rotated out: still accepted, never used for new tokens or events.
    pub previous_keys: Vec<ServerKey>,
    pub tokens: TokenPolicy,
    pub passwords: PasswordPolicy,
    pub hasher: HasherSettings,
    pub limits: RateLimits,
    pub clients: ClientIpSettings,
    pub events: EventSettings,
    pub server: ServerSettings,
}

/// Largest TLS certificate chain, key or CA file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The fewest codes a short-code range may hold (`--token-min-number..--token-max-number`).
pub const MIN_SHORT_CODES: u64 = 10_000;
/// `--max-code-attempts` may give a guesser at most 1 chance in this many per code.
pub const MAX_GUESS_ODDS: u64 = 1_000;

/// The file an SQLite URL names, if it names one.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

fn key_file_beside(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".key");
    db.with_file_name(name)
}

impl TryFrom<&Settings> for Config {
    type Error = anyhow::Error;

    fn try_from(s: &Settings) -> anyhow::Result<Self> {
        let key = match (&s.secret_key, &s.secret_key_file) {
            (Some(text), _) => KeySource::Given(ServerKey::parse(text.expose()).map_err(anyhow::Error::msg)?),
            (None, Some(path)) => KeySource::File(path.clone()),
            (None, None) => match sqlite_file(&s.database_url) {
                Some(db) => KeySource::CreateIfMissing(key_file_beside(&db)),
                None if s.database_url.contains(":memory:") => KeySource::Ephemeral,
                None => KeySource::Missing,
            },
        };

        let previous_keys = s
            .previous_secret_keys
            .iter()
            .map(|k| ServerKey::parse(k.expose()).map_err(|e| anyhow::anyhow!("previous secret key: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;

        if s.token_min_number >= s.token_max_number {
            bail!("--token-min-number must be below --token-max-number");
        }
        if s.max_code_attempts == 0 {
            bail!("--max-code-attempts must be at least 1");
        }
        // Short codes (the numeric generator's and every SMS code) are protected by the
        // attempt cap alone, which means something only against enough codes.
        let code_count = (s.token_max_number - s.token_min_number).saturating_add(1);
        if code_count < MIN_SHORT_CODES {
            bail!(
                "--token-min-number..--token-max-number holds {code_count} codes; at least {MIN_SHORT_CODES} are needed for --max-code-attempts to protect them"
            );
        }
        if u64::from(s.max_code_attempts).saturating_mul(MAX_GUESS_ODDS) > code_count {
            bail!(
                "--max-code-attempts {} against {code_count} codes lets a guesser win more than 1 time in {MAX_GUESS_ODDS}; lower it or widen the code range",
                s.max_code_attempts
            );
        }
        // Short codes: the numeric generator's, and every code texted by SMS.
        let codes = TokenGenerator::Numeric { min: s.token_min_number, max: s.token_max_number };
        let generator = match s.token_generator {
            GeneratorKind::Bytes => {
                if !(16..=64).contains(&s.token_bytes) {
                    bail!("--token-bytes must be between 16 and 64");
                }
                TokenGenerator::RandomBytes(s.token_bytes)
            }
            GeneratorKind::String => {
                if s.token_min_length < 8 || s.token_min_length > s.token_max_length || s.token_max_length > 128 {
                    bail!("--token-min-length must be at least 8 and at most --token-max-length (at most 128)");
                }
                TokenGenerator::RandomString { min: s.token_min_length, max: s.token_max_length }
            }
            GeneratorKind::Numeric => codes.clone(),
        };
        let limits = RateLimits {
            sms: s.sms_rate.0,
            request_token: s.rate_request_token.0,
            validate_token: s.rate_validate_token.0,
            confirm: s.rate_confirm.0,
            verify_password: s.rate_verify_password.0,
            account_tokens: s.account_token_limit.0,
            verify_failures: (s.verify_failure_limit > 0)
                .then_some(FailureLimit { failures: s.verify_failure_limit, lockout: s.verify_lockout }),
            max_pending_resets: s.max_pending_resets.max(1),
            reset_queue_wait: s.reset_queue_wait,
            ipv6_prefix: s.ipv6_prefix,
            reset_answer_floor: s.reset_answer_floor,
        };
        if s.reset_answer_floor > Duration::from_millis(100) {
            bail!("--reset-answer-floor must be at most 100ms");
        }
        if !(32..=128).contains(&s.ipv6_prefix) {
            bail!("--ipv6-prefix must be between 32 and 128");
        }
        let trusted_proxies = match s.trusted_proxies.as_slice() {
            [none] if none.trim().eq_ignore_ascii_case("none") || none.trim().is_empty() => Vec::new(),
            list => list
                .iter()
                .map(|net| {
                    let net = net.trim();
                    net.parse::<ipnet::IpNet>()
                        .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| anyhow::anyhow!("--trusted-proxies: {net:?} is not an address or CIDR"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        };
        if let Some(cap) = limits.account_tokens
            && cap.period > s.event_retention
        {
            bail!("--account-token-limit counts events, so its period must not exceed --event-retention");
        }
        if s.token_ttl < Duration::from_secs(60) || s.token_ttl > Duration::from_secs(7 * 24 * 3600) {
            bail!("--token-ttl must be between 1m and 7d");
        }
        if s.max_token_ttl < Duration::from_secs(60) || s.max_token_ttl > Duration::from_secs(365 * 24 * 3600) {
            bail!("--max-token-ttl must be between 1m and 365d");
        }
        if s.setup_token_ttl < Duration::from_secs(60) || s.setup_token_ttl > s.max_token_ttl {
            bail!("--setup-token-ttl must be between 1m and --max-token-ttl");
        }
        if s.token_cache_ttl > Duration::from_secs(60) {
            bail!("--token-cache-ttl must be at most 1m");
        }

        if s.password_min_length < LOWEST_MIN_LENGTH {
            bail!("--password-min-length must be at least {LOWEST_MIN_LENGTH}");
        }
        if s.password_max_length < LOWEST_MAX_LENGTH || s.password_max_length > MAX_PASSWORD_BYTES / 4 {
            bail!("--password-max-length must be between {LOWEST_MAX_LENGTH} and {}", MAX_PASSWORD_BYTES / 4);
        }
        if s.password_min_length > s.password_max_length {
            bail!("--password-min-length must not exceed --password-max-length");
        }
        if s.password_min_score > 4 {
            bail!("--password-min-score must be between 0 and 4");
        }

        if s.password_history > MAX_PASSWORD_HISTORY {
            bail!("--password-history must be between 0 and {MAX_PASSWORD_HISTORY}");
        }
        let breached = match &s.breached_passwords {
            Some(path) => {
                let lists = BreachedPasswords::with_file(path).context("--breached-passwords")?;
                if let Some(loaded) = lists.loaded() {
                    tracing::info!(
                        path = %path.display(),
                        format = %loaded.format,
                        entries = loaded.entries,
                        approximate = loaded.approximate,
                        skipped_lines = loaded.skipped_lines,
                        "breached-password list loaded"
                    );
                }
                lists
            }
            None => BreachedPasswords::default(),
        };

        let params = Params::new(s.argon2_memory_kib, s.argon2_iterations, s.argon2_parallelism, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        if s.import_max_pbkdf2_iterations.is_some() || s.import_max_bcrypt_cost.is_some() {
            bail!(
                "--import-max-pbkdf2-iterations and --import-max-bcrypt-cost are gone: one ceiling prices the whole \
                 parameter set of an imported hash, --import-max-cost-ms (with --import-max-memory-kib)"
            );
        }
        let imports = ImportLimits {
            max_cost_micros: s.import_max_cost_ms.saturating_mul(1000),
            max_memory_kib: s.import_max_memory_kib,
            allow_weak: s.allow_weak_imported_hashes,
        };
        let verify_answer_floor = match s.verify_answer_floor {
            crate::cli::Floor::Auto => None,
            crate::cli::Floor::Fixed(floor) => Some(floor),
        };
        let mut hasher = HasherSettings {
            params,
            queue_depth: s.hash_queue_depth.max(1),
            imports,
            verify_answer_floor,
            ..HasherSettings::default()
        };
        if let Some(workers) = s.hash_workers {
            if workers == 0 {
                bail!("--hash-workers must be at least 1");
            }
            hasher.workers = workers;
        }

        // PEM files of a few KiB: a device or directory named by mistake is refused.
        let read = |p: &PathBuf| textfile::read_small(p, MAX_PEM_BYTES);
        let tls = match (&s.tls_cert, &s.tls_key) {
            (Some(cert), Some(key)) => Some(TlsSettings {
                cert: read(cert)?,
                key: read(key)?,
                client_ca: s.tls_client_ca.as_ref().map(read).transpose()?,
            }),
            _ => None,
        };
        let caller_keys = s
            .caller_keys
            .iter()
            .map(|k| k.expose().parse::<CallerKey>().map_err(|e| anyhow::anyhow!("--caller-key: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let client_certificates = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if !s.listen.ip().is_loopback() && !s.allow_unauthenticated && !client_certificates {
            // Every role: an open `reset` role on a reachable address lets anyone guess
            // tokens and claim any client address.
            let missing: Vec<String> = Role::ALL
                .into_iter()
                .filter(|role| !caller_keys.iter().any(|k| k.role == *role))
                .map(|r| r.to_string())
                .collect();
            if !missing.is_empty() {
                bail!(
                    "refusing to serve on {} with no caller key for: {} (set --caller-key ROLE=KEY, or --allow-unauthenticated on purpose)",
                    s.listen,
                    missing.join(", ")
                );
            }
        }
        if s.max_message_bytes < 1024 {
            bail!("--max-message-bytes must be at least 1024");
        }

        Ok(Config {
            database_url: s.database_url.clone(),
            database_max_connections: s.database_max_connections.max(1),
            migrate: !s.no_migrate,
            key,
            previous_keys,
            tokens: TokenPolicy {
                generator,
                ttl: s.token_ttl,
                setup_ttl: s.setup_token_ttl,
                max_ttl: s.max_token_ttl,
                cache_ttl: s.token_cache_ttl,
                allow_without_usable_password: s.allow_reset_without_password,
                sms_codes: codes,
                max_code_attempts: s.max_code_attempts,
            },
            passwords: PasswordPolicy {
                min_length: s.password_min_length,
                max_length: s.password_max_length,
                min_score: s.password_min_score,
                breached,
                history: s.password_history,
            },
            hasher,
            limits,
            clients: ClientIpSettings {
                trusted_hops: s.trusted_proxy_hops,
                trusted_proxies,
                forwarded_for_header: s.client_ip_header.to_ascii_lowercase(),
                user_agent_header: s.user_agent_header.to_ascii_lowercase(),
            },
            events: EventSettings {
                retention: s.event_retention,
                poll_interval: s.event_poll_interval.max(Duration::from_millis(10)),
                broadcast_capacity: 4096,
                emit_unknown_account_events: s.emit_unknown_account_events,
            },
            server: ServerSettings {
                listen: s.listen,
                caller_keys,
                allow_unauthenticated: s.allow_unauthenticated,
                max_message_bytes: s.max_message_bytes,
                shutdown_grace: s.shutdown_grace,
                sweep_interval: s.sweep_interval.max(Duration::from_secs(1)),
                metrics_listen: s.metrics_listen,
                drain_delay: s.drain_delay,
                health_check_interval: s.health_check_interval.max(Duration::from_millis(100)),
                keepalive_interval: s.http2_keepalive_interval.max(Duration::from_millis(100)),
                tls,
            },
        })
    }
}

impl Config {
    /// Defaults for tests: cheap argon2, no rate limits, an in-process key.
    pub fn for_tests(database_url: &str) -> Self {
        Config {
            database_url: DatabaseUrl::new(database_url),
            database_max_connections: 8,
            migrate: true,
            key: KeySource::Ephemeral,
            previous_keys: Vec::new(),
            tokens: TokenPolicy::default(),
            passwords: PasswordPolicy::default(),
            hasher: HasherSettings {
                params: Params::new(64, 1, 1, None).unwrap_or_default(),
                workers: 2,
                queue_depth: 64,
                imports: ImportLimits::default(),
                verify_answer_floor: None,
            },
            limits: RateLimits::default(),
            clients: ClientIpSettings::default(),
            events: EventSettings {
                retention: Duration::from_secs(24 * 3600),
                poll_interval: Duration::from_millis(200),
                broadcast_capacity: 4096,
                emit_unknown_account_events: false,
            },
            server: ServerSettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                caller_keys: Vec::new(),
                allow_unauthenticated: false,
                max_message_bytes: 16 * 1024,
                shutdown_grace: Duration::from_secs(5),
                sweep_interval: Duration::from_secs(60),
                metrics_listen: None,
                drain_delay: Duration::ZERO,
                health_check_interval: Duration::from_millis(100),
                keepalive_interval: Duration::from_secs(30),
                tls: None,
            },
        }
    }
}

impl KeySource {
    /// Loads the key, creating the key file (mode 0600) when that is the default.
    pub fn load(&self) -> anyhow::Result<ServerKey> {
        match self {
            KeySource::Given(key) => Ok(key.clone()),
            KeySource::File(path) => read_key(path),
            KeySource::CreateIfMissing(path) if path.exists() => read_key(path),
            KeySource::CreateIfMissing(path) => {
                let key = random_key()?;
                write_private(path, key.encode().as_bytes())
                    .with_context(|| format!("creating the key file {}", path.display()))?;
                tracing::info!(path = %path.display(), "created a new server key file");
                Ok(key)
            }
            KeySource::Ephemeral => random_key(),
            KeySource::Missing => {
                bail!("a server key is required with this database: set PWRESET_SECRET_KEY or PWRESET_SECRET_KEY_FILE")
            }
        }
    }
}

fn random_key() -> anyhow::Result<ServerKey> {
    use rand::TryRng;
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng.try_fill_bytes(&mut bytes).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
    Ok(ServerKey::from_bytes(bytes))
}

fn read_key(path: &Path) -> anyhow::Result<ServerKey> {
    let bytes = textfile::read_small(path, 4096).with_context(|| format!("the key file {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("key file {}: not text", path.display()))?;
    ServerKey::parse(&text).map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let mut all = vec!["pwreset", "serve"];
        all.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(all)?;
        Config::try_from(&cli.settings)
    }

    #[test]
    fn defaults_are_valid() -> anyhow::Result<()> {
        let c = parse(&[])?;
        assert_eq!(c.tokens.ttl, Duration::from_secs(1800));
        assert!(matches!(c.key, KeySource::CreateIfMissing(ref p) if p == Path::new("pwreset.db.key")));
        Ok(())
    }

    #[test]
    fn refuses_public_listener_without_keys() {
        let err = parse(&["--listen", "0.0.0.0:50051"]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("reset, events, accounts"), "{err}");
        assert!(parse(&["--listen", "0.0.0.0:50051", "--allow-unauthenticated"]).is_ok());
        let two = [
            "--listen",
            "0.0.0.0:50051",
            "--caller-key",
            "events=events-key-0123456789",
            "--caller-key",
            "accounts=accounts-key-0123456789",
        ];
        let err = parse(&two).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("no caller key for: reset"), "the reset role needs a key too: {err}");
        let mut three = two.to_vec();
        three.extend(["--caller-key", "reset=reset-key-0123456789"]);
        assert!(parse(&three).is_ok());
    }

    #[test]
    fn trusted_proxies_parse_as_cidrs_addresses_or_none() -> anyhow::Result<()> {
        let c = parse(&[])?;
        assert_eq!(c.clients.trusted_proxies.len(), 2, "loopback by default");
        let c = parse(&["--trusted-proxies", "10.0.0.0/8,192.0.2.1,fd00::/8"])?;
        assert_eq!(c.clients.trusted_proxies.len(), 3);
        assert!(parse(&["--trusted-proxies", "none"])?.clients.trusted_proxies.is_empty());
        assert!(parse(&["--trusted-proxies", "not-a-net"]).is_err());
        assert!(parse(&["--ipv6-prefix", "16"]).is_err());
        Ok(())
    }

    #[test]
    fn debug_of_settings_hides_secrets() -> anyhow::Result<()> {
        let key = ServerKey::from_bytes([7; 32]).encode();
        let url = "postgres://pwreset:hunter2-db-secret@db.internal:5432/pwreset";
        let cli = crate::cli::Cli::try_parse_from([
            "pwreset",
            "serve",
            "--database-url",
            url,
            "--secret-key",
            &key,
            "--previous-secret-key",
            &key,
        ])?;
        let config = Config::try_from(&cli.settings)?;
        for shown in [format!("{:?}", cli), format!("{config:?}")] {
            assert!(!shown.contains("hunter2-db-secret"), "{shown}");
            assert!(!shown.contains(&key), "{shown}");
            assert!(shown.contains("postgres://pwreset:***@db.internal:5432/pwreset"), "{shown}");
        }
        Ok(())
    }

    #[test]
    fn postgres_needs_a_key() {
        // Parsed (migrate and import need no key), but refused where the key is used.
        let without = parse(&["--database-url", "postgres://localhost/x"]);
        assert!(without.is_ok_and(|c| c.key.load().is_err()));
        let key = ServerKey::from_bytes([3; 32]).encode();
        assert!(parse(&["--database-url", "postgres://localhost/x", "--secret-key", &key]).is_ok());
        assert!(parse(&["--database-url", "postgres://localhost/x", "--secret-key", "short"]).is_err());
    }

    #[test]
    fn policy_bounds_are_enforced() {
        assert!(parse(&["--password-min-length", "7"]).is_err());
        assert!(parse(&["--password-min-length", "8"]).is_ok());
        assert!(parse(&["--password-max-length", "63"]).is_err());
        // Short codes are bound to their login with their attempts capped, so per-IP
        // limits are no longer what protects them.
        assert!(parse(&["--token-generator", "numeric", "--rate-confirm", "off"]).is_ok());
        assert!(parse(&["--max-code-attempts", "0"]).is_err());
        assert!(parse(&["--token-generator", "numeric"]).is_ok());
    }

    #[test]
    fn a_short_code_range_too_small_for_the_attempt_cap_is_refused() {
        let refusal = |args: &[&str]| parse(args).err().map(|e| e.to_string()).unwrap_or_default();
        // A 2-code range: the cap of 5 attempts would mean nothing.
        let err = refusal(&["--token-generator", "numeric", "--token-min-number", "1", "--token-max-number", "2"]);
        assert!(err.contains("holds 2 codes; at least 10000"), "{err}");
        // SMS codes use the same range whatever the generator.
        assert!(parse(&["--token-min-number", "0", "--token-max-number", "9998"]).is_err());
        assert!(parse(&["--token-min-number", "0", "--token-max-number", "9999"]).is_ok());
        let err = refusal(&["--token-min-number", "0", "--token-max-number", "9999", "--max-code-attempts", "11"]);
        assert!(err.contains("more than 1 time in 1000"), "{err}");
        assert!(parse(&["--token-min-number", "0", "--token-max-number", "9999", "--max-code-attempts", "10"]).is_ok());
        // The widest range holds 2^64 codes, not 0 (the count does not wrap).
        assert!(parse(&["--token-min-number", "0", "--token-max-number", &u64::MAX.to_string()]).is_ok());
    }

    #[test]
    fn a_refused_caller_key_is_not_echoed() {
        let err = parse(&["--caller-key", "admin=caller-key-secret-0123456789"]).err().map(|e| format!("{e:#}"));
        let err = err.unwrap_or_default();
        assert!(err.contains("unknown role") && !err.contains("caller-key-secret"), "{err}");
        let err = parse(&["--caller-key", "reset=short-secret"]).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(err.contains("at least 16") && !err.contains("short-secret"), "{err}");
    }

    #[test]
    fn key_file_sits_beside_the_database() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/pwreset/db.sqlite?mode=rwc"),
            Some(PathBuf::from("/var/lib/pwreset/db.sqlite"))
        );
        assert_eq!(key_file_beside(Path::new("/var/lib/x.db")), PathBuf::from("/var/lib/x.db.key"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }
}
