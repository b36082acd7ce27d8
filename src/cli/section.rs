//! The flags, in one group per settings section; each subcommand flattens the groups
//! it uses, so its `--help` lists only what it reads. `config` validates each group
//! into the settings of its section.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use pwreset_proto::secret::Secret;

use super::value::{DatabaseUrl, Floor, GeneratorKind, LogFormat, RateArg, parse_floor};

/// What every subcommand reads: the database and the log format.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Database and logging")]
pub struct SharedArgs {
    /// Database URL: sqlite://FILE?mode=rwc or postgres://USER@HOST/DB.
    #[arg(long, env = "PWRESET_DATABASE_URL", default_value = "sqlite://pwreset.db?mode=rwc", hide_env_values = true)]
    pub database_url: DatabaseUrl,

    /// Log format.
    #[arg(long, env = "PWRESET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// For the subcommands that work in the database (`serve`, `purge`, `import`): the
/// shared flags, and whether to migrate the database first.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    #[command(flatten)]
    pub shared: SharedArgs,

    /// Do not apply pending migrations before starting.
    #[arg(long, env = "PWRESET_NO_MIGRATE", help_heading = "Database and logging")]
    pub no_migrate: bool,
}

impl DatabaseArgs {
    /// Whether pending migrations are applied first.
    pub fn migrate(&self) -> bool {
        !self.no_migrate
    }
}

/// The server key, and the keys being rotated out.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server key")]
pub struct KeyArgs {
    /// Server key, base64 of at least 32 bytes; token digests and event sealing keys
    /// derive from it. Default for SQLite: a key file beside the database, created on
    /// first start.
    #[arg(long, env = "PWRESET_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<Secret>,

    /// Earlier server keys still accepted for live tokens and sealed events while a
    /// rotation completes; repeatable.
    #[arg(
        long = "previous-secret-key",
        env = "PWRESET_PREVIOUS_SECRET_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub previous_secret_keys: Vec<Secret>,

    /// File holding the server key (base64).
    #[arg(long, env = "PWRESET_SECRET_KEY_FILE", conflicts_with = "secret_key")]
    pub secret_key_file: Option<PathBuf>,
}

/// The gRPC port, who may call it, and the server's lifecycle.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "PWRESET_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Largest database connection pool.
    #[arg(long, env = "PWRESET_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,

    /// Caller key for a role, ROLE=KEY (roles: reset, events, accounts); repeatable.
    /// Read as a `Secret` and checked in `Config`: clap would print a refused value.
    #[arg(long = "caller-key", env = "PWRESET_CALLER_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub caller_keys: Vec<Secret>,

    /// TLS certificate chain (PEM); with --tls-key, the server speaks TLS only.
    #[arg(long, env = "PWRESET_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "PWRESET_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA (PEM) for client certificates: a verified certificate whose DNS SAN is
    /// ROLE.caller.pwreset.internal holds ROLE, like a key does. Clients without a
    /// certificate may still present a key.
    #[arg(long, env = "PWRESET_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve on a non-loopback address even though a role has no key.
    #[arg(long, env = "PWRESET_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,

    /// Largest request message accepted, in bytes.
    #[arg(long, env = "PWRESET_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024)]
    pub max_message_bytes: usize,

    /// Serve Prometheus metrics at http://ADDR/metrics (off when unset).
    #[arg(long, env = "PWRESET_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// At shutdown, how long health reports NOT_SERVING before the listener closes, so
    /// load balancers and sidecars stop routing here first.
    #[arg(long, env = "PWRESET_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: std::time::Duration,

    /// How often readiness checks the database.
    #[arg(long, env = "PWRESET_HEALTH_CHECK_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub health_check_interval: std::time::Duration,

    /// How often HTTP/2 keep-alive pings go to each client connection: dead peers are
    /// found, and a proxy in front sees traffic on idle event streams.
    #[arg(long, env = "PWRESET_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_interval: std::time::Duration,

    /// How long in-flight calls get to finish at shutdown.
    #[arg(long, env = "PWRESET_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: std::time::Duration,

    /// How often expired tokens and old events are purged in-process.
    #[arg(long, env = "PWRESET_SWEEP_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub sweep_interval: std::time::Duration,
}

/// Reset and setup tokens: lifetimes, the generator, and short codes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tokens")]
pub struct TokenArgs {
    /// How long a reset token stays live.
    #[arg(long, env = "PWRESET_TOKEN_TTL", default_value = "30m", value_parser = humantime::parse_duration)]
    pub token_ttl: std::time::Duration,

    /// How long an account-setup (invitation) token stays live.
    #[arg(long, env = "PWRESET_SETUP_TOKEN_TTL", default_value = "7d", value_parser = humantime::parse_duration)]
    pub setup_token_ttl: std::time::Duration,

    /// The longest lifetime a caller of IssueToken may ask for (its `ttl`).
    #[arg(long, env = "PWRESET_MAX_TOKEN_TTL", default_value = "30d", value_parser = humantime::parse_duration)]
    pub max_token_ttl: std::time::Duration,

    /// How long this replica trusts a cached live token for ValidateToken and Confirm's
    /// look-up before reading it again (0 turns the cache off). Changes made anywhere
    /// reach the cache through events and NOTIFY long before; this bounds what is missed.
    #[arg(long, env = "PWRESET_TOKEN_CACHE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub token_cache_ttl: std::time::Duration,

    /// Token generator.
    #[arg(long, env = "PWRESET_TOKEN_GENERATOR", value_enum, default_value_t = GeneratorKind::Bytes)]
    pub token_generator: GeneratorKind,

    /// Random bytes per token (bytes generator), 16 to 64.
    #[arg(long, env = "PWRESET_TOKEN_BYTES", default_value_t = 32)]
    pub token_bytes: usize,

    /// Shortest token (string generator).
    #[arg(long, env = "PWRESET_TOKEN_MIN_LENGTH", default_value_t = 10)]
    pub token_min_length: usize,

    /// Longest token (string generator).
    #[arg(long, env = "PWRESET_TOKEN_MAX_LENGTH", default_value_t = 50)]
    pub token_max_length: usize,

    /// Smallest code (numeric generator).
    #[arg(long, env = "PWRESET_TOKEN_MIN_NUMBER", default_value_t = 10_000)]
    pub token_min_number: u64,

    /// Largest code (numeric generator).
    #[arg(long, env = "PWRESET_TOKEN_MAX_NUMBER", default_value_t = 99_999)]
    pub token_max_number: u64,

    /// Failed ValidateToken/Confirm attempts against an account with a live short code
    /// (SMS codes, numeric tokens) before that code is revoked.
    #[arg(long, env = "PWRESET_MAX_CODE_ATTEMPTS", default_value_t = 5)]
    pub max_code_attempts: u32,

    /// Let accounts with no usable password request a reset.
    #[arg(long, env = "PWRESET_ALLOW_RESET_WITHOUT_PASSWORD")]
    pub allow_reset_without_password: bool,
}

/// The policy new passwords must meet.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Passwords")]
pub struct PasswordArgs {
    /// Minimum password length in code points after NFC (8 at the lowest).
    #[arg(long, env = "PWRESET_PASSWORD_MIN_LENGTH", default_value_t = 15)]
    pub password_min_length: usize,

    /// Maximum password length in code points after NFC (64 at the lowest).
    #[arg(long, env = "PWRESET_PASSWORD_MAX_LENGTH", default_value_t = 128)]
    pub password_max_length: usize,

    /// Lowest accepted zxcvbn strength score, 0 to 4.
    #[arg(long, env = "PWRESET_PASSWORD_MIN_SCORE", default_value_t = 3)]
    pub password_min_score: u8,

    /// A list of compromised passwords checked on every new password, added to the
    /// built-in 30,000 most common: Have I Been Pwned's download (SHA1-HEX:count, sorted
    /// by hash; searched in place; leading # comments and a header line are skipped) or
    /// plain text, one password per line (held in memory). Mixed formats and a list
    /// with no entries are refused at start-up; what was loaded is logged.
    #[arg(long, env = "PWRESET_BREACHED_PASSWORDS")]
    pub breached_passwords: Option<PathBuf>,

    #[command(flatten)]
    pub history: HistoryArgs,
}

/// How many of an account's passwords are kept to refuse reuse (`serve` checks
/// against them, `purge` deletes the older ones).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Passwords")]
pub struct HistoryArgs {
    /// Refuse a new password equal to any of the account's last N (the current one
    /// included), 0 to 24; older hashes are deleted.
    #[arg(long, env = "PWRESET_PASSWORD_HISTORY", default_value_t = 0)]
    pub password_history: u32,
}

/// Argon2id and the hashing pool, and how long a password check takes at least.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Hashing")]
pub struct HashingArgs {
    /// Argon2id memory cost in KiB.
    #[arg(long, env = "PWRESET_ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,

    /// Argon2id iterations.
    #[arg(long, env = "PWRESET_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,

    /// Argon2id lanes.
    #[arg(long, env = "PWRESET_ARGON2_PARALLELISM", default_value_t = 1)]
    pub argon2_parallelism: u32,

    /// Hashing worker threads (default: number of cores).
    #[arg(long, env = "PWRESET_HASH_WORKERS")]
    pub hash_workers: Option<usize>,

    /// Hash jobs that may wait for a worker; beyond it calls get RESOURCE_EXHAUSTED.
    #[arg(long, env = "PWRESET_HASH_QUEUE_DEPTH", default_value_t = 64)]
    pub hash_queue_depth: usize,

    /// No VerifyPassword (nor ChangePassword's check of the current password) is
    /// answered sooner than this after it arrived, so accounts whose imported hashes
    /// cost more than the server's own do not stand out. "auto": from the costliest
    /// stored hash not under the server's argon2 parameters (none: no floor); or a
    /// duration (0: off).
    #[arg(long, env = "PWRESET_VERIFY_ANSWER_FLOOR", default_value = "auto", value_parser = parse_floor)]
    pub verify_answer_floor: Floor,

    #[command(flatten)]
    pub imports: ImportLimitArgs,
}

/// Which imported password hashes are accepted (by `CreateAccount` and `import`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Imported hashes")]
pub struct ImportLimitArgs {
    /// Accept imported hashes made with fast or unsalted digests (Django's md5$, sha1$,
    /// unsalted_md5$, unsalted_sha1$). Off: they are refused.
    #[arg(long, env = "PWRESET_ALLOW_WEAK_IMPORTED_HASHES")]
    pub allow_weak_imported_hashes: bool,

    /// Highest estimated cost of checking one imported hash, in milliseconds of one core
    /// (priced over the whole parameter set: PBKDF2 iterations × output blocks, scrypt
    /// N·r·p, argon2 m·t, bcrypt 2^cost); above it the hash is refused.
    #[arg(long, env = "PWRESET_IMPORT_MAX_COST_MS", default_value_t = 1000)]
    pub import_max_cost_ms: u64,

    /// Most memory (KiB) checking one imported hash may hold (argon2 m, scrypt 128·r·N);
    /// above it the hash is refused.
    #[arg(long, env = "PWRESET_IMPORT_MAX_MEMORY_KIB", default_value_t = 131_072)]
    pub import_max_memory_kib: u64,

    /// Replaced by --import-max-cost-ms (refused with a message saying so).
    #[arg(long, env = "PWRESET_IMPORT_MAX_PBKDF2_ITERATIONS", hide = true)]
    pub import_max_pbkdf2_iterations: Option<String>,

    /// Replaced by --import-max-cost-ms (refused with a message saying so).
    #[arg(long, env = "PWRESET_IMPORT_MAX_BCRYPT_COST", hide = true)]
    pub import_max_bcrypt_cost: Option<String>,
}

/// Rate limits, lockouts and the reset queue.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Per-client-IP limit on RequestToken, as COUNT/PERIOD or "off".
    #[arg(long, env = "PWRESET_RATE_REQUEST_TOKEN", default_value = "10/1m")]
    pub rate_request_token: RateArg,

    /// Per-client-IP limit on ValidateToken.
    #[arg(long, env = "PWRESET_RATE_VALIDATE_TOKEN", default_value = "30/1m")]
    pub rate_validate_token: RateArg,

    /// Per-client-IP limit on Confirm.
    #[arg(long, env = "PWRESET_RATE_CONFIRM", default_value = "10/1m")]
    pub rate_confirm: RateArg,

    /// Per-client-IP limit on VerifyPassword.
    #[arg(long, env = "PWRESET_RATE_VERIFY_PASSWORD", default_value = "30/1m")]
    pub rate_verify_password: RateArg,

    /// Reset requests by phone, all numbers together, as COUNT/PERIOD or "off" (texts
    /// cost money). Over it every request by phone gets RESOURCE_EXHAUSTED.
    #[arg(long, env = "PWRESET_SMS_RATE", default_value = "off")]
    pub sms_rate: RateArg,

    /// Per-account cap on token creation, COUNT/PERIOD or "off"; enforced from the
    /// database (holds across replicas) and invisible to the caller.
    #[arg(long, env = "PWRESET_ACCOUNT_TOKEN_LIMIT", default_value = "5/1h")]
    pub account_token_limit: RateArg,

    /// Consecutive failed VerifyPassword attempts per e-mail before it is locked (0: off).
    #[arg(long, env = "PWRESET_VERIFY_FAILURE_LIMIT", default_value_t = 10)]
    pub verify_failure_limit: u32,

    /// How long an e-mail stays locked after its last failed attempt.
    #[arg(long, env = "PWRESET_VERIFY_LOCKOUT", default_value = "15m", value_parser = humantime::parse_duration)]
    pub verify_lockout: std::time::Duration,

    /// Reset requests in flight (including token work after the reply) before new ones
    /// get RESOURCE_EXHAUSTED; as many ValidateToken/Confirm checks with a login (each
    /// runs to its end, whatever becomes of its call).
    #[arg(long, env = "PWRESET_MAX_PENDING_RESETS", default_value_t = 1024)]
    pub max_pending_resets: usize,

    /// How long a reset request waits for room among those in flight before it gets
    /// RESOURCE_EXHAUSTED (0: refused at once).
    #[arg(long, env = "PWRESET_RESET_QUEUE_WAIT", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub reset_queue_wait: std::time::Duration,

    /// No RequestToken, and no ValidateToken/Confirm with a login, is answered sooner
    /// than this after it arrived, so a known login (a token written, an attempt
    /// counted) and an unknown one take as long (0: off; at most 100ms).
    #[arg(long, env = "PWRESET_RESET_ANSWER_FLOOR", default_value = "3ms", value_parser = humantime::parse_duration)]
    pub reset_answer_floor: std::time::Duration,

    /// IPv6 clients are rate-limited per network of this prefix length (one /64 is
    /// usually one subscriber), 32 to 128.
    #[arg(long, env = "PWRESET_IPV6_PREFIX", default_value_t = 64)]
    pub ipv6_prefix: u8,
}

/// Who the end user is when a proxy calls on their behalf.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Clients")]
pub struct ClientArgs {
    /// Number of trusted proxies that append to the forwarded-for header.
    #[arg(long, env = "PWRESET_TRUSTED_PROXY_HOPS", default_value_t = 1)]
    pub trusted_proxy_hops: usize,

    /// Peers (CIDR, comma-separated, or "none") whose forwarded-for and user-agent
    /// headers are believed; callers authenticated by a key or certificate always are.
    /// Anyone else is limited by the address it connects from.
    #[arg(long, env = "PWRESET_TRUSTED_PROXIES", value_delimiter = ',', default_value = "127.0.0.0/8,::1/128")]
    pub trusted_proxies: Vec<String>,

    /// Metadata key carrying the end user's address.
    #[arg(long, env = "PWRESET_CLIENT_IP_HEADER", default_value = "x-forwarded-for")]
    pub client_ip_header: String,

    /// Metadata key carrying the end user's agent (falls back to user-agent).
    #[arg(long, env = "PWRESET_USER_AGENT_HEADER", default_value = "x-forwarded-user-agent")]
    pub user_agent_header: String,
}

/// The event log and its subscribers.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Events")]
pub struct EventArgs {
    /// How long events stay replayable (TokenCreated at least until its token expires).
    #[arg(long, env = "PWRESET_EVENT_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub event_retention: std::time::Duration,

    /// Record ResetRequestedForUnknownEmail events for addresses with no account.
    #[arg(long, env = "PWRESET_EMIT_UNKNOWN_ACCOUNT_EVENTS")]
    pub emit_unknown_account_events: bool,

    /// How often subscribers look for events committed by other replicas.
    #[arg(long, env = "PWRESET_EVENT_POLL_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub event_poll_interval: std::time::Duration,
}
