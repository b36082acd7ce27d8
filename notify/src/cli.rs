//! The notifier's flags; every one but `--once` has a `PWRESET_NOTIFY_*` variable.
//! Secret settings are read as [`Secret`], so their values stay out of `Debug`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use lettre::message::Mailbox;
use pwreset_proto::redact;
use pwreset_proto::secret::Secret;

#[derive(Debug, Parser)]
#[command(name = "pwreset-notify", version, about)]
pub struct Args {
    /// pwreset's gRPC address.
    #[arg(long, env = "PWRESET_NOTIFY_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// Key of the `events` role, if the server requires one.
    #[arg(long, env = "PWRESET_NOTIFY_EVENTS_KEY", hide_env_values = true)]
    pub events_key: Option<Secret>,
    /// Where the position (the newest sequence read, and the messages not finished yet)
    /// is kept (without --cursor-database-url).
    #[arg(long, env = "PWRESET_NOTIFY_CURSOR_FILE", default_value = "pwreset-notify.cursor")]
    pub cursor_file: PathBuf,
    /// Keep the cursor in PostgreSQL instead: several notifier replicas may run, one
    /// active at a time (a session advisory lock), the others standing by.
    #[arg(long, env = "PWRESET_NOTIFY_CURSOR_DATABASE_URL", hide_env_values = true)]
    pub cursor_database_url: Option<Secret>,
    /// Where a notifier without a stored cursor starts: `beginning` (every event the
    /// server still retains, so nothing committed before the first start is lost) or
    /// `now` (live events only).
    #[arg(long, env = "PWRESET_NOTIFY_START", default_value = "beginning", value_parser = ["beginning", "now"])]
    pub start: String,
    /// The cursor's name in that database (one per notifier deployment).
    #[arg(long, env = "PWRESET_NOTIFY_CURSOR_NAME", default_value = "default")]
    pub cursor_name: String,
    /// Reset link; `{token}` becomes the URL-encoded token.
    #[arg(long, env = "PWRESET_NOTIFY_RESET_URL")]
    pub reset_url: String,
    /// Account-setup (invitation) link; `{token}` as above. Default: the reset link.
    #[arg(long, env = "PWRESET_NOTIFY_SETUP_URL")]
    pub setup_url: Option<String>,
    /// Sender address.
    #[arg(long, env = "PWRESET_NOTIFY_FROM", default_value = "Accounts <no-reply@example.com>")]
    pub from: Mailbox,
    /// SMTP relay: smtp://host:port (plain), smtp://user:pass@host:587?tls=required
    /// (STARTTLS) or smtps://user:pass@host (implicit TLS).
    #[arg(long, env = "PWRESET_NOTIFY_SMTP_URL", hide_env_values = true, conflicts_with = "out_dir")]
    pub smtp_url: Option<Secret>,
    /// PEM file of the certificate authorities to trust for the SMTP relay's TLS (a
    /// private relay with an internal CA) instead of the public roots; needs a TLS URL.
    #[arg(long, env = "PWRESET_NOTIFY_SMTP_CA_FILE", requires = "smtp_url")]
    pub smtp_ca_file: Option<PathBuf>,
    /// How long one e-mail may take as a whole (connecting, TLS, every command, the
    /// data) before it counts as a transient failure.
    #[arg(long, env = "PWRESET_NOTIFY_SMTP_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub smtp_timeout: Duration,
    /// Development: write each e-mail (.eml) and text (.sms.json) to this folder.
    #[arg(long, env = "PWRESET_NOTIFY_OUT_DIR")]
    pub out_dir: Option<PathBuf>,
    /// Texts (channel SMS) are POSTed here as JSON (an SMS gateway, a chat tool). It may
    /// carry a key (`?api_key=…`): hidden like the other secrets.
    #[arg(long, env = "PWRESET_NOTIFY_SMS_WEBHOOK_URL", hide_env_values = true)]
    pub sms_webhook_url: Option<Secret>,
    /// Sent as `authorization: Bearer TOKEN` to the webhook.
    #[arg(long, env = "PWRESET_NOTIFY_SMS_WEBHOOK_TOKEN", hide_env_values = true)]
    pub sms_webhook_token: Option<Secret>,
    /// The webhook's JSON body, a minijinja template with `to`, `message` and `sequence`
    /// (it may carry a gateway's key: the environment's value is hidden).
    #[arg(
        long,
        env = "PWRESET_NOTIFY_SMS_WEBHOOK_BODY",
        hide_env_values = true,
        default_value = r#"{"to": {{ to|tojson }}, "message": {{ message|tojson }}, "reference": "{{ sequence }}"}"#
    )]
    pub sms_webhook_body: Secret,
    /// How long a webhook call may take as a whole (connecting, the answer and its body,
    /// read up to 64 KiB) before it counts as a transient failure.
    #[arg(long, env = "PWRESET_NOTIFY_SMS_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub sms_webhook_timeout: Duration,
    /// How long a message that fails transiently is retried in the background before it
    /// is given up (logged, counted); a link or code is given up when its token expires,
    /// if that comes first.
    #[arg(long, env = "PWRESET_NOTIFY_RETRY_FOR", default_value = "1h", value_parser = humantime::parse_duration)]
    pub retry_for: Duration,
    /// At most this many messages retry at once; past it one is given up: an
    /// unknown-account notice first, else the one whose retrying ends soonest.
    #[arg(long, env = "PWRESET_NOTIFY_MAX_RETRYING", default_value = "1000")]
    pub max_retrying: usize,
    /// A folder of templates (`<locale>/<kind>.jinja`, kinds reset, setup, changed,
    /// unknown) that overrides or adds to the built-in ones (en, de, fr).
    #[arg(long, env = "PWRESET_NOTIFY_TEMPLATES")]
    pub templates: Option<PathBuf>,
    /// The locale used when an event's locale (or its language) has no template.
    #[arg(long, env = "PWRESET_NOTIFY_DEFAULT_LOCALE", default_value = "en")]
    pub default_locale: String,
    /// Also mail "someone asked to reset a password here, but there is no account"
    /// (OWASP's advice; needs pwreset's --emit-unknown-account-events).
    #[arg(long, env = "PWRESET_NOTIFY_UNKNOWN_ACCOUNTS")]
    pub notify_unknown_accounts: bool,
    /// Names this pwreset deployment in Message-IDs: `<sequence>.<server-id>@<domain>`.
    #[arg(long, env = "PWRESET_NOTIFY_SERVER_ID", default_value = "pwreset")]
    pub server_id: String,
    /// When the cursor is older than what the server retains (OUT_OF_RANGE), go on
    /// from the live stream instead of exiting non-zero.
    #[arg(long, env = "PWRESET_NOTIFY_SKIP_GAPS")]
    pub skip_gaps: bool,
    /// Prometheus metrics on /metrics and health on /healthz.
    #[arg(long, env = "PWRESET_NOTIFY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Stop (exit 0) once caught up: no event for a second, and every message's first
    /// attempt made (messages still retrying stay in the cursor for the next run). For
    /// batch runs and the walkthrough.
    #[arg(long)]
    pub once: bool,
    /// `text` or `json` logs.
    #[arg(long, env = "PWRESET_NOTIFY_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl Args {
    /// Every secret setting's value, and the secret parts of the URLs.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        for url in [&self.cursor_database_url, &self.smtp_url, &self.sms_webhook_url].into_iter().flatten() {
            secrets.extend(redact::secrets_of_url(url.expose()));
        }
        for key in [&self.events_key, &self.sms_webhook_token].into_iter().flatten() {
            secrets.push(key.expose().to_owned());
        }
        secrets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_settings_hides_every_secret() {
        let args = Args::parse_from([
            "pwreset-notify",
            "--reset-url",
            "https://app.example/r?t={token}",
            "--events-key",
            "events-key-secret",
            "--cursor-database-url",
            "postgres://notify:pg-password-secret@db/x",
            "--smtp-url",
            "smtp://user:smtp-password-secret@relay:587",
            "--sms-webhook-url",
            "https://sms.example/send?api_key=webhook-key-secret",
            "--sms-webhook-token",
            "bearer-secret",
            "--sms-webhook-body",
            r#"{"key": "body-key-secret"}"#,
        ]);
        let debug = format!("{args:?}");
        assert!(debug.contains("reset_url"), "{debug}");
        for secret in ["events-key", "pg-password", "smtp-password", "webhook-key", "bearer-secret", "body-key"] {
            assert!(!debug.contains(secret), "Debug shows {secret}: {debug}");
        }
    }
}
