//! pwreset-notify: subscribes to pwreset's event stream and sends what each event
//! calls for (reset and setup links by e-mail, codes by text, password-changed notices,
//! and optionally "no account here" notices), in order, storing its cursor only once an
//! event is handled, so a restart resumes with no event lost. A message sent twice after
//! a crash carries the same `Message-ID`, so mail systems can drop the duplicate.

mod cursor;
mod render;
mod send;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lettre::message::Mailbox;
use pwreset::domain::clock;
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{Channel, Event, PasswordChangeReason, SubscribeEventsRequest, TokenPurpose, event};
use rand::RngExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::metadata::MetadataValue;

use cursor::Cursor;
use render::{Kind, Renderer, context_for, link};
use send::{Envelope, Failure, MailSender, Text, TextSender};

#[derive(Debug, Parser)]
#[command(name = "pwreset-notify", version, about)]
struct Args {
    /// pwreset's gRPC address.
    #[arg(long, env = "PWRESET_NOTIFY_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    endpoint: String,
    /// Key of the `events` role, if the server requires one.
    #[arg(long, env = "PWRESET_NOTIFY_EVENTS_KEY", hide_env_values = true)]
    events_key: Option<String>,
    /// Where the last handled sequence is kept (without --cursor-database-url).
    #[arg(long, env = "PWRESET_NOTIFY_CURSOR_FILE", default_value = "pwreset-notify.cursor")]
    cursor_file: PathBuf,
    /// Keep the cursor in PostgreSQL instead: several notifier replicas may run, one
    /// active at a time (a session advisory lock), the others standing by.
    #[arg(long, env = "PWRESET_NOTIFY_CURSOR_DATABASE_URL", hide_env_values = true)]
    cursor_database_url: Option<String>,
    /// Where a notifier without a stored cursor starts: `beginning` (every event the
    /// server still retains, so nothing committed before the first start is lost) or
    /// `now` (live events only).
    #[arg(long, env = "PWRESET_NOTIFY_START", default_value = "beginning", value_parser = ["beginning", "now"])]
    start: String,
    /// The cursor's name in that database (one per notifier deployment).
    #[arg(long, env = "PWRESET_NOTIFY_CURSOR_NAME", default_value = "default")]
    cursor_name: String,
    /// Reset link; `{token}` becomes the URL-encoded token.
    #[arg(long, env = "PWRESET_NOTIFY_RESET_URL")]
    reset_url: String,
    /// Account-setup (invitation) link; `{token}` as above. Default: the reset link.
    #[arg(long, env = "PWRESET_NOTIFY_SETUP_URL")]
    setup_url: Option<String>,
    /// Sender address.
    #[arg(long, env = "PWRESET_NOTIFY_FROM", default_value = "Accounts <no-reply@example.com>")]
    from: Mailbox,
    /// SMTP relay: smtp://host:port (plain), smtp://user:pass@host:587?tls=required
    /// (STARTTLS) or smtps://user:pass@host (implicit TLS).
    #[arg(long, env = "PWRESET_NOTIFY_SMTP_URL", hide_env_values = true, conflicts_with = "out_dir")]
    smtp_url: Option<String>,
    /// PEM file of the certificate authorities to trust for the SMTP relay's TLS (a
    /// private relay with an internal CA) instead of the public roots; needs a TLS URL.
    #[arg(long, env = "PWRESET_NOTIFY_SMTP_CA_FILE", requires = "smtp_url")]
    smtp_ca_file: Option<PathBuf>,
    /// Development: write each e-mail (.eml) and text (.sms.json) to this folder.
    #[arg(long, env = "PWRESET_NOTIFY_OUT_DIR")]
    out_dir: Option<PathBuf>,
    /// Texts (channel SMS) are POSTed here as JSON (an SMS gateway, a chat tool).
    #[arg(long, env = "PWRESET_NOTIFY_SMS_WEBHOOK_URL")]
    sms_webhook_url: Option<String>,
    /// Sent as `authorization: Bearer TOKEN` to the webhook.
    #[arg(long, env = "PWRESET_NOTIFY_SMS_WEBHOOK_TOKEN", hide_env_values = true)]
    sms_webhook_token: Option<String>,
    /// The webhook's JSON body, a minijinja template with `to`, `message` and `sequence`.
    #[arg(
        long,
        env = "PWRESET_NOTIFY_SMS_WEBHOOK_BODY",
        default_value = r#"{"to": {{ to|tojson }}, "message": {{ message|tojson }}, "reference": "{{ sequence }}"}"#
    )]
    sms_webhook_body: String,
    /// How long a webhook call may take before it is retried.
    #[arg(long, env = "PWRESET_NOTIFY_SMS_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    sms_webhook_timeout: Duration,
    /// A folder of templates (`<locale>/<kind>.jinja`, kinds reset, setup, changed,
    /// unknown) that overrides or adds to the built-in ones (en, de, fr).
    #[arg(long, env = "PWRESET_NOTIFY_TEMPLATES")]
    templates: Option<PathBuf>,
    /// The locale used when an event's locale (or its language) has no template.
    #[arg(long, env = "PWRESET_NOTIFY_DEFAULT_LOCALE", default_value = "en")]
    default_locale: String,
    /// Also mail "someone asked to reset a password here, but there is no account"
    /// (OWASP's advice; needs pwreset's --emit-unknown-account-events).
    #[arg(long, env = "PWRESET_NOTIFY_UNKNOWN_ACCOUNTS")]
    notify_unknown_accounts: bool,
    /// Names this pwreset deployment in Message-IDs: `<sequence>.<server-id>@<domain>`.
    #[arg(long, env = "PWRESET_NOTIFY_SERVER_ID", default_value = "pwreset")]
    server_id: String,
    /// When the cursor is older than what the server retains (OUT_OF_RANGE), go on
    /// from the live stream instead of exiting non-zero.
    #[arg(long, env = "PWRESET_NOTIFY_SKIP_GAPS")]
    skip_gaps: bool,
    /// Prometheus metrics on /metrics and health on /healthz.
    #[arg(long, env = "PWRESET_NOTIFY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Stop (exit 0) once caught up: no event for a second. For batch runs and the
    /// walkthrough.
    #[arg(long)]
    once: bool,
    /// `text` or `json` logs.
    #[arg(long, env = "PWRESET_NOTIFY_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

/// What the loop shares with the health endpoint.
#[derive(Default)]
struct Health {
    subscribed: AtomicBool,
    handled: AtomicU64,
}

struct Notifier {
    args: Args,
    renderer: Renderer,
    mail: MailSender,
    texts: TextSender,
    webhook_body: minijinja::Environment<'static>,
    domain: String,
    /// Test hook: abort after sending this many messages, before storing the cursor.
    crash_after: Option<u64>,
    sent: AtomicU64,
}

/// What one event asks for.
enum Work {
    Mail(Envelope),
    Text(Text),
    Nothing(&'static str),
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.log_format);
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "pwreset-notify failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => return tracing::error!(error = %e, "cannot listen for SIGTERM"),
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("stopping after the message in hand");
            shutdown.cancel();
        });
    }
    let health = Arc::new(Health::default());
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, Arc::clone(&health)).await?;
    }
    let notifier = Notifier::new(args)?;
    let cursor = match &notifier.args.cursor_database_url {
        Some(url) => {
            tokio::select! {
                cursor = Cursor::postgres(url, &notifier.args.cursor_name, Duration::from_secs(2)) => cursor?,
                _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
            }
        }
        None => Cursor::file(notifier.args.cursor_file.clone()),
    };
    notifier.follow(&cursor, &health, &shutdown).await
}

impl Notifier {
    fn new(args: Args) -> anyhow::Result<Self> {
        let renderer = Renderer::new(args.templates.clone(), &args.default_locale)?;
        let mail = match (&args.smtp_url, &args.out_dir) {
            (Some(url), _) => send::smtp(url, args.smtp_ca_file.as_deref())?,
            (None, Some(dir)) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                MailSender::Folder(dir.clone())
            }
            (None, None) => anyhow::bail!("set --smtp-url, or --out-dir for development"),
        };
        let texts = match (&args.sms_webhook_url, &args.out_dir) {
            (Some(url), _) => TextSender::Webhook {
                url: url.clone(),
                bearer: args.sms_webhook_token.clone(),
                client: Box::new(send::webhook_client()?),
                timeout: args.sms_webhook_timeout,
            },
            (None, Some(dir)) => TextSender::Folder(dir.clone()),
            (None, None) => TextSender::None,
        };
        let mut webhook_body = minijinja::Environment::new();
        webhook_body.add_template_owned("body", args.sms_webhook_body.clone()).context("--sms-webhook-body")?;
        let domain = args.from.email.domain().to_owned();
        let crash_after = std::env::var("PWRESET_NOTIFY_FAULT")
            .ok()
            .and_then(|v| v.strip_prefix("crash-after-send:").and_then(|n| n.parse().ok()));
        Ok(Notifier { args, renderer, mail, texts, webhook_body, domain, crash_after, sent: AtomicU64::new(0) })
    }

    /// Subscribes from the cursor and handles events until shutdown; reconnects after
    /// transient stream errors.
    async fn follow(&self, cursor: &Cursor, health: &Health, shutdown: &CancellationToken) -> anyhow::Result<ExitCode> {
        let mut after = match cursor.load().await? {
            Some(sequence) => Some(sequence),
            None if self.args.start == "now" => None,
            None => Some(0),
        };
        let mut backoff = Duration::from_millis(200);
        let channel =
            tonic::transport::Endpoint::from_shared(self.args.endpoint.clone()).context("--endpoint")?.connect_lazy();
        loop {
            let mut client = PasswordResetServiceClient::new(channel.clone());
            let mut request = tonic::Request::new(SubscribeEventsRequest { after_sequence: after });
            if let Some(key) = &self.args.events_key {
                let value: MetadataValue<_> = format!("Bearer {key}").parse().context("--events-key")?;
                request.metadata_mut().insert("authorization", value);
            }
            let subscribed = tokio::select! {
                r = client.subscribe_events(request) => r,
                _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
            };
            let mut stream = match subscribed {
                Ok(stream) => stream.into_inner(),
                Err(status) => match self.stream_error(&status, &mut after)? {
                    Some(code) => return Ok(code),
                    None => {
                        if !pause(&mut backoff, shutdown).await {
                            return Ok(ExitCode::SUCCESS);
                        }
                        continue;
                    }
                },
            };
            health.subscribed.store(true, Ordering::SeqCst);
            tracing::info!(after = ?after, "subscribed");
            loop {
                let idle = async {
                    if self.args.once {
                        clock::pause(Duration::from_secs(1)).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                };
                let next = tokio::select! {
                    m = stream.message() => m,
                    _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
                    _ = idle => {
                        tracing::info!(after = ?after, "caught up (--once)");
                        return Ok(ExitCode::SUCCESS);
                    }
                };
                match next {
                    Ok(Some(event)) => {
                        backoff = Duration::from_millis(200);
                        let sequence = event.sequence;
                        let occurred = event.occurred_at;
                        if !self.handle(event, shutdown).await {
                            return Ok(ExitCode::SUCCESS);
                        }
                        cursor.store(sequence).await?;
                        after = Some(sequence);
                        health.handled.fetch_add(1, Ordering::Relaxed);
                        if let Some(t) = occurred {
                            let lag = pwreset::domain::clock::Clock::now(&pwreset::domain::clock::SystemClock)
                                .timestamp()
                                - t.seconds;
                            metrics::gauge!("pwreset_notify_lag_seconds").set(lag.max(0) as f64);
                        }
                    }
                    Ok(None) => break,
                    Err(status) => match self.stream_error(&status, &mut after)? {
                        Some(code) => return Ok(code),
                        None => break,
                    },
                }
            }
            health.subscribed.store(false, Ordering::SeqCst);
            if !pause(&mut backoff, shutdown).await {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }

    /// `Some(exit code)` to stop; `None` to reconnect.
    fn stream_error(&self, status: &tonic::Status, after: &mut Option<u64>) -> anyhow::Result<Option<ExitCode>> {
        if status.code() == Code::OutOfRange {
            if self.args.skip_gaps {
                tracing::error!(after = ?after, "the cursor is older than the server retains: events were missed; going on from the live stream (--skip-gaps)");
                *after = None;
                return Ok(None);
            }
            tracing::error!(after = ?after, "the cursor is older than the server retains: events were missed. Exiting; restart with --skip-gaps to go on from the live stream");
            return Ok(Some(ExitCode::from(3)));
        }
        if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) {
            anyhow::bail!("the server refused the events key: {}", status.message());
        }
        tracing::warn!(code = ?status.code(), message = status.message(), "the event stream failed; reconnecting");
        Ok(None)
    }

    /// Handles one event, retrying transient failures until it is delivered or
    /// shutdown is asked for (then `false`: the cursor stays where it is).
    async fn handle(&self, event: Event, shutdown: &CancellationToken) -> bool {
        let sequence = event.sequence;
        let work = match self.work(event) {
            Ok(work) => work,
            Err(e) => {
                metrics::counter!("pwreset_notify_failed_total", "reason" => "render").increment(1);
                tracing::error!(sequence, error = format!("{e:#}"), "the message could not be rendered; skipped");
                return true;
            }
        };
        let channel = match &work {
            Work::Mail(_) => "email",
            Work::Text(_) => "sms",
            Work::Nothing(reason) => {
                tracing::debug!(sequence, reason, "nothing to send");
                return true;
            }
        };
        let mut delay = Duration::from_millis(500);
        loop {
            let result = match &work {
                Work::Mail(envelope) => self.mail.send(&self.args.from, envelope).await,
                Work::Text(text) => self.texts.send(text).await,
                Work::Nothing(_) => Ok(()),
            };
            match result {
                Ok(()) => {
                    metrics::counter!("pwreset_notify_sent_total", "channel" => channel).increment(1);
                    tracing::info!(sequence, channel, "sent");
                    let sent = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
                    if self.crash_after == Some(sent) {
                        tracing::error!(sequence, "PWRESET_NOTIFY_FAULT: crashing after the send, before the cursor");
                        std::process::abort();
                    }
                    return true;
                }
                Err(Failure::Permanent(e)) => {
                    metrics::counter!("pwreset_notify_failed_total", "reason" => "permanent").increment(1);
                    tracing::error!(sequence, channel, error = format!("{e:#}"), "permanent failure; skipped");
                    return true;
                }
                Err(Failure::Transient(e)) => {
                    metrics::counter!("pwreset_notify_retried_total", "channel" => channel).increment(1);
                    tracing::warn!(sequence, channel, error = format!("{e:#}"), retry_in = ?delay, "transient failure; retrying");
                    if !pause(&mut delay, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    fn work(&self, event: Event) -> anyhow::Result<Work> {
        let sequence = event.sequence;
        let message_id = format!("<{sequence}.{}@{}>", self.args.server_id, self.domain);
        Ok(match event.kind {
            Some(event::Kind::TokenCreated(t)) => {
                if t.token.is_empty() {
                    return Ok(Work::Nothing("token no longer live"));
                }
                let setup = t.purpose == TokenPurpose::AccountSetup as i32;
                let (kind, url) = if setup {
                    (Kind::Setup, self.args.setup_url.as_deref().unwrap_or(&self.args.reset_url))
                } else {
                    (Kind::Reset, self.args.reset_url.as_str())
                };
                let expires = t.expires_at.as_ref().map(format_time).unwrap_or_default();
                if t.channel == Channel::Sms as i32 {
                    let ctx = context_for(&t.email, &t.username, &t.phone, "", &t.token, &expires, "");
                    let message = self.renderer.sms(kind, &t.locale, ctx)?;
                    let json = self
                        .webhook_body
                        .get_template("body")?
                        .render(minijinja::context! { to => &t.phone, message => &message, sequence })?;
                    Work::Text(Text { to: t.phone, sequence, json })
                } else {
                    let link = link(url, &t.token);
                    let ctx = context_for(&t.email, &t.username, &t.phone, &link, "", &expires, "");
                    let mail = self.renderer.mail(kind, &t.locale, ctx)?;
                    Work::Mail(Envelope { to: t.email, message_id, mail, sequence })
                }
            }
            Some(event::Kind::PasswordChanged(p)) => {
                let reason = match PasswordChangeReason::try_from(p.reason) {
                    Ok(PasswordChangeReason::AccountSetup) => "ACCOUNT_SETUP",
                    Ok(PasswordChangeReason::Change) => "CHANGE",
                    _ => "RESET",
                };
                let ctx = context_for(&p.email, "", "", "", "", "", reason);
                let mail = self.renderer.mail(Kind::Changed, "", ctx)?;
                Work::Mail(Envelope { to: p.email, message_id, mail, sequence })
            }
            Some(event::Kind::ResetRequestedForUnknownEmail(u)) if self.args.notify_unknown_accounts => {
                let ctx = context_for(&u.email, "", "", "", "", "", "");
                let mail = self.renderer.mail(Kind::Unknown, &u.locale, ctx)?;
                Work::Mail(Envelope { to: u.email, message_id, mail, sequence })
            }
            Some(event::Kind::ResetRequestedForUnknownEmail(_)) => Work::Nothing("unknown-account notices are off"),
            None => Work::Nothing("an event kind this notifier does not know"),
        })
    }
}

fn format_time(t: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.seconds, 0).map(|d| d.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

/// Waits `delay` (with up to 50 % jitter), then doubles it up to a minute; `false` if
/// shutdown came first.
async fn pause(delay: &mut Duration, shutdown: &CancellationToken) -> bool {
    let jitter = rand::rng().random_range(0..=delay.as_millis() as u64 / 2);
    let wait = *delay + Duration::from_millis(jitter);
    *delay = (*delay * 2).min(Duration::from_secs(60));
    tokio::select! {
        _ = clock::pause(wait) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// `/metrics` (Prometheus text) and `/healthz` (200 while subscribed, else 503).
async fn serve_metrics(addr: SocketAddr, health: Arc<Health>) -> anyhow::Result<()> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "metrics and health listening");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { continue };
            let (handle, health) = (handle.clone(), Arc::clone(&health));
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/metrics" => ("200 OK", handle.render()),
                    "/healthz" if health.subscribed.load(Ordering::SeqCst) => ("200 OK", "serving\n".to_owned()),
                    "/healthz" => ("503 Service Unavailable", "not subscribed\n".to_owned()),
                    _ => ("404 Not Found", String::new()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(())
}
