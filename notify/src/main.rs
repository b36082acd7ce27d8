//! pwreset-notify: subscribes to pwreset's event stream and sends what each event
//! calls for (reset and setup links by e-mail, codes by text, password-changed notices,
//! and optionally "no account here" notices). Events are read in order; e-mail and texts
//! each go out in order through their own lane, and a message that fails transiently is
//! retried in the background so it holds up no other (`deliver.rs`). The cursor records
//! which messages are not finished yet, so a restart resumes with no message lost
//! (`cursor.rs`). A message sent twice after a crash carries the same `Message-ID`, so
//! mail systems can drop the duplicate.

mod cursor;
mod deliver;
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
use pwreset::cli::Secret;
use pwreset::domain::runtime::clock::{self, Clock, SystemClock};
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{Channel, Event, PasswordChangeReason, SubscribeEventsRequest, TokenPurpose, event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::metadata::MetadataValue;

use cursor::{Admit, Cursor, Ledger};
use deliver::{Delivery, Job, LANE_DEPTH, Senders, Work};
use render::{Kind, Renderer, context_for, link};
use send::{Envelope, MailSender, Text, TextSender};

#[derive(Debug, Parser)]
#[command(name = "pwreset-notify", version, about)]
struct Args {
    /// pwreset's gRPC address.
    #[arg(long, env = "PWRESET_NOTIFY_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    endpoint: String,
    /// Key of the `events` role, if the server requires one.
    #[arg(long, env = "PWRESET_NOTIFY_EVENTS_KEY", hide_env_values = true)]
    events_key: Option<Secret>,
    /// Where the position (the newest sequence read, and the messages not finished yet)
    /// is kept (without --cursor-database-url).
    #[arg(long, env = "PWRESET_NOTIFY_CURSOR_FILE", default_value = "pwreset-notify.cursor")]
    cursor_file: PathBuf,
    /// Keep the cursor in PostgreSQL instead: several notifier replicas may run, one
    /// active at a time (a session advisory lock), the others standing by.
    #[arg(long, env = "PWRESET_NOTIFY_CURSOR_DATABASE_URL", hide_env_values = true)]
    cursor_database_url: Option<Secret>,
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
    smtp_url: Option<Secret>,
    /// PEM file of the certificate authorities to trust for the SMTP relay's TLS (a
    /// private relay with an internal CA) instead of the public roots; needs a TLS URL.
    #[arg(long, env = "PWRESET_NOTIFY_SMTP_CA_FILE", requires = "smtp_url")]
    smtp_ca_file: Option<PathBuf>,
    /// How long one e-mail may take as a whole (connecting, TLS, every command, the
    /// data) before it counts as a transient failure.
    #[arg(long, env = "PWRESET_NOTIFY_SMTP_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    smtp_timeout: Duration,
    /// Development: write each e-mail (.eml) and text (.sms.json) to this folder.
    #[arg(long, env = "PWRESET_NOTIFY_OUT_DIR")]
    out_dir: Option<PathBuf>,
    /// Texts (channel SMS) are POSTed here as JSON (an SMS gateway, a chat tool). It may
    /// carry a key (`?api_key=…`): hidden like the other secrets.
    #[arg(long, env = "PWRESET_NOTIFY_SMS_WEBHOOK_URL", hide_env_values = true)]
    sms_webhook_url: Option<Secret>,
    /// Sent as `authorization: Bearer TOKEN` to the webhook.
    #[arg(long, env = "PWRESET_NOTIFY_SMS_WEBHOOK_TOKEN", hide_env_values = true)]
    sms_webhook_token: Option<Secret>,
    /// The webhook's JSON body, a minijinja template with `to`, `message` and `sequence`
    /// (it may carry a gateway's key: the environment's value is hidden).
    #[arg(
        long,
        env = "PWRESET_NOTIFY_SMS_WEBHOOK_BODY",
        hide_env_values = true,
        default_value = r#"{"to": {{ to|tojson }}, "message": {{ message|tojson }}, "reference": "{{ sequence }}"}"#
    )]
    sms_webhook_body: Secret,
    /// How long a webhook call may take as a whole (connecting, the answer and its body,
    /// read up to 64 KiB) before it counts as a transient failure.
    #[arg(long, env = "PWRESET_NOTIFY_SMS_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    sms_webhook_timeout: Duration,
    /// How long a message that fails transiently is retried in the background before it
    /// is given up (logged, counted); a link or code is given up when its token expires,
    /// if that comes first.
    #[arg(long, env = "PWRESET_NOTIFY_RETRY_FOR", default_value = "1h", value_parser = humantime::parse_duration)]
    retry_for: Duration,
    /// At most this many messages retry at once; past it one is given up: an
    /// unknown-account notice first, else the one whose retrying ends soonest.
    #[arg(long, env = "PWRESET_NOTIFY_MAX_RETRYING", default_value = "1000")]
    max_retrying: usize,
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
    /// Stop (exit 0) once caught up: no event for a second, and every message's first
    /// attempt made (messages still retrying stay in the cursor for the next run). For
    /// batch runs and the walkthrough.
    #[arg(long)]
    once: bool,
    /// `text` or `json` logs.
    #[arg(long, env = "PWRESET_NOTIFY_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

impl Args {
    /// Every secret setting's value, and the secret parts of the URLs.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        for url in [&self.cursor_database_url, &self.smtp_url, &self.sms_webhook_url].into_iter().flatten() {
            secrets.extend(pwreset::redact::secrets_of_url(url.expose()));
        }
        for key in [&self.events_key, &self.sms_webhook_token].into_iter().flatten() {
            secrets.push(key.expose().to_owned());
        }
        secrets
    }
}

/// What the loop shares with the health endpoint.
#[derive(Default)]
struct Health {
    subscribed: AtomicBool,
    handled: AtomicU64,
}

/// The reader's side: turns events into messages.
struct Notifier {
    args: Args,
    renderer: Renderer,
    webhook_body: minijinja::Environment<'static>,
    domain: String,
}

/// What one event asks for.
enum Plan {
    Send(Job),
    Nothing(&'static str),
    /// Never sent (logged and counted with this reason): a template failed, or the
    /// recipient is not a bare address.
    Refused(&'static str, anyhow::Error),
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
    let secrets = args.secrets();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            // Belt and braces: the errors that can quote a URL are redacted where they
            // arise; no secret setting's value leaves through any other.
            tracing::error!(error = pwreset::redact::scrub(&format!("{e:#}"), &secrets), "pwreset-notify failed");
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
            tracing::info!("stopping after the messages in hand");
            shutdown.cancel();
        });
    }
    let health = Arc::new(Health::default());
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, Arc::clone(&health)).await?;
    }
    let (notifier, senders) = Notifier::new(args)?;
    let cursor = match &notifier.args.cursor_database_url {
        Some(url) => {
            tokio::select! {
                cursor = Cursor::postgres(url.expose(), &notifier.args.cursor_name, Duration::from_secs(2)) => cursor?,
                _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
            }
        }
        None => Cursor::file(notifier.args.cursor_file.clone()),
    };
    let ledger = Ledger::new(cursor.load().await?);
    let (retry_for, max_retrying) = (notifier.args.retry_for, notifier.args.max_retrying);
    let delivery = Arc::new(Delivery::new(senders, ledger, cursor, retry_for, max_retrying, &shutdown));
    let (mail_lane, mail_jobs) = mpsc::channel(LANE_DEPTH);
    let (text_lane, text_jobs) = mpsc::channel(LANE_DEPTH);
    let lanes =
        [tokio::spawn(Arc::clone(&delivery).lane(mail_jobs)), tokio::spawn(Arc::clone(&delivery).lane(text_jobs))];
    let followed = notifier.follow(&delivery, [mail_lane, text_lane], &health, &shutdown).await;
    if followed.is_err() {
        // Failing: the queued messages stay pending for the next run.
        shutdown.cancel();
    }
    // The lanes end after their queues (--once) or the message in hand (shutdown).
    for lane in lanes {
        let _ = lane.await;
    }
    let closed = delivery.close().await;
    let code = followed?;
    closed?;
    Ok(code)
}

impl Notifier {
    fn new(args: Args) -> anyhow::Result<(Self, Senders)> {
        let renderer = Renderer::new(args.templates.clone(), &args.default_locale)?;
        let mail = match (&args.smtp_url, &args.out_dir) {
            (Some(url), _) => send::smtp(url.expose(), args.smtp_ca_file.as_deref(), args.smtp_timeout)?,
            (None, Some(dir)) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                MailSender::Folder(dir.clone())
            }
            (None, None) => anyhow::bail!("set --smtp-url, or --out-dir for development"),
        };
        let texts = match (&args.sms_webhook_url, &args.out_dir) {
            (Some(url), _) => TextSender::Webhook {
                // Checked here, so a bad URL stops the start (redacted) rather than every text.
                url: {
                    let raw = url.expose();
                    raw.parse::<hyper::Uri>().map_err(|e| pwreset::redact::url_error("--sms-webhook-url", raw, e))?;
                    raw.to_owned()
                },
                bearer: args.sms_webhook_token.as_ref().map(|t| t.expose().to_owned()),
                client: Box::new(send::webhook_client()?),
                timeout: args.sms_webhook_timeout,
            },
            (None, Some(dir)) => TextSender::Folder(dir.clone()),
            (None, None) => TextSender::None,
        };
        let mut webhook_body = minijinja::Environment::new();
        webhook_body
            .add_template_owned("body", args.sms_webhook_body.expose().to_owned())
            .context("--sms-webhook-body")?;
        let domain = args.from.email.domain().to_owned();
        let crash_after = std::env::var("PWRESET_NOTIFY_FAULT")
            .ok()
            .and_then(|v| v.strip_prefix("crash-after-send:").and_then(|n| n.parse().ok()));
        let senders = Senders { from: args.from.clone(), mail, texts, crash_after, sent: AtomicU64::new(0) };
        Ok((Notifier { args, renderer, webhook_body, domain }, senders))
    }

    /// Subscribes from the cursor and hands events to the lanes until shutdown (or, with
    /// --once, until caught up); reconnects after transient stream errors.
    async fn follow(
        &self,
        delivery: &Delivery,
        lanes: [mpsc::Sender<Job>; 2],
        health: &Health,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<ExitCode> {
        let [mail_lane, text_lane] = lanes;
        let stored = delivery.ledger().lock().await.resume_after();
        let mut after = match stored {
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
                let value: MetadataValue<_> = format!("Bearer {}", key.expose()).parse().context("--events-key")?;
                request.metadata_mut().insert("authorization", value);
            }
            let subscribed = tokio::select! {
                r = client.subscribe_events(request) => r,
                _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
            };
            let mut stream = match subscribed {
                Ok(stream) => stream.into_inner(),
                Err(status) => match self.stream_error(&status, &mut after, delivery).await? {
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
                        let occurred = event.occurred_at;
                        if !self.dispatch(event, delivery, &mail_lane, &text_lane, shutdown).await {
                            return Ok(ExitCode::SUCCESS);
                        }
                        health.handled.fetch_add(1, Ordering::Relaxed);
                        if let Some(t) = occurred {
                            let lag = SystemClock.now().timestamp() - t.seconds;
                            metrics::gauge!("pwreset_notify_lag_seconds").set(lag.max(0) as f64);
                        }
                    }
                    Ok(None) => break,
                    Err(status) => match self.stream_error(&status, &mut after, delivery).await? {
                        Some(code) => return Ok(code),
                        None => break,
                    },
                }
            }
            health.subscribed.store(false, Ordering::SeqCst);
            // Resume from the ledger: before any loaded message the replay has not
            // reached yet, else after the newest event read.
            after = delivery.ledger().lock().await.resume_after().or(after);
            if !pause(&mut backoff, shutdown).await {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }

    /// Admits one event to the ledger and hands its message to its lane; `false` if
    /// shutdown came while a lane was full.
    async fn dispatch(
        &self,
        event: Event,
        delivery: &Delivery,
        mail_lane: &mpsc::Sender<Job>,
        text_lane: &mpsc::Sender<Job>,
        shutdown: &CancellationToken,
    ) -> bool {
        let sequence = event.sequence;
        let (admit, gone) = delivery.ledger().lock().await.admit(sequence);
        for lost in gone {
            metrics::counter!("pwreset_notify_failed_total", "reason" => "purged").increment(1);
            tracing::error!(
                sequence = lost,
                "an unfinished message's event is no longer on the server (purged); given up"
            );
        }
        if admit == Admit::Skip {
            tracing::debug!(sequence, "finished before the restart");
            return true;
        }
        match self.plan(event) {
            Plan::Send(job) => {
                let lane = match job.work {
                    Work::Mail(_) => mail_lane,
                    Work::Text(_) => text_lane,
                };
                tokio::select! {
                    sent = lane.send(job) => return sent.is_ok(),
                    _ = shutdown.cancelled() => return false,
                }
            }
            Plan::Nothing(reason) => tracing::debug!(sequence, reason, "nothing to send"),
            Plan::Refused(reason, e) => {
                metrics::counter!("pwreset_notify_failed_total", "reason" => reason).increment(1);
                tracing::error!(sequence, reason, error = format!("{e:#}"), "the message cannot be sent; skipped");
            }
        }
        delivery.finish(sequence).await;
        true
    }

    /// `Some(exit code)` to stop; `None` to reconnect.
    async fn stream_error(
        &self,
        status: &tonic::Status,
        after: &mut Option<u64>,
        delivery: &Delivery,
    ) -> anyhow::Result<Option<ExitCode>> {
        if status.code() == Code::OutOfRange {
            if self.args.skip_gaps {
                tracing::error!(after = ?after, "the cursor is older than the server retains: events were missed; going on from the live stream (--skip-gaps)");
                let forgotten = delivery.ledger().lock().await.forget_replay();
                if forgotten > 0 {
                    metrics::counter!("pwreset_notify_failed_total", "reason" => "purged").increment(forgotten as u64);
                }
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

    fn plan(&self, event: Event) -> Plan {
        let sequence = event.sequence;
        let message_id = format!("<{sequence}.{}@{}>", self.args.server_id, self.domain);
        let mail = |to: &str, kind: Kind, locale: &str, ctx: minijinja::Value| -> Plan {
            let to = match send::recipient(to) {
                Ok(to) => to,
                Err(e) => return Plan::Refused("recipient", e),
            };
            match self.renderer.mail(kind, locale, ctx) {
                Ok(mail) => Plan::Send(Job {
                    sequence,
                    work: Work::Mail(Envelope { to, message_id: message_id.clone(), mail, sequence }),
                    expires_in: None,
                    unsolicited: false,
                }),
                Err(e) => Plan::Refused("render", e),
            }
        };
        match event.kind {
            Some(event::Kind::TokenCreated(t)) => {
                if t.token.is_empty() {
                    return Plan::Nothing("token no longer live");
                }
                let setup = t.purpose == TokenPurpose::AccountSetup as i32;
                let (kind, url) = if setup {
                    (Kind::Setup, self.args.setup_url.as_deref().unwrap_or(&self.args.reset_url))
                } else {
                    (Kind::Reset, self.args.reset_url.as_str())
                };
                let expires = t.expires_at.as_ref().map(format_time).unwrap_or_default();
                // Retrying a link or code ends when it stops working.
                let expires_in = t.expires_at.as_ref().map(|e| {
                    let left = e.seconds.saturating_sub(SystemClock.now().timestamp());
                    Duration::from_secs(left.max(0).unsigned_abs())
                });
                let mut plan = if t.channel == Channel::Sms as i32 {
                    let ctx = context_for(&t.email, &t.username, &t.phone, "", &t.token, &expires, "");
                    let text = self.renderer.sms(kind, &t.locale, ctx).and_then(|message| {
                        Ok(self
                            .webhook_body
                            .get_template("body")?
                            .render(minijinja::context! { to => &t.phone, message => &message, sequence })?)
                    });
                    match text {
                        Ok(json) => Plan::Send(Job {
                            sequence,
                            work: Work::Text(Text { to: t.phone.clone(), sequence, json }),
                            expires_in: None,
                            unsolicited: false,
                        }),
                        Err(e) => Plan::Refused("render", e),
                    }
                } else {
                    let link = link(url, &t.token);
                    let ctx = context_for(&t.email, &t.username, &t.phone, &link, "", &expires, "");
                    mail(&t.email, kind, &t.locale, ctx)
                };
                if let Plan::Send(job) = &mut plan {
                    job.expires_in = expires_in;
                }
                plan
            }
            Some(event::Kind::PasswordChanged(p)) => {
                let reason = match PasswordChangeReason::try_from(p.reason) {
                    Ok(PasswordChangeReason::AccountSetup) => "ACCOUNT_SETUP",
                    Ok(PasswordChangeReason::Change) => "CHANGE",
                    _ => "RESET",
                };
                let ctx = context_for(&p.email, "", "", "", "", "", reason);
                mail(&p.email, Kind::Changed, "", ctx)
            }
            Some(event::Kind::ResetRequestedForUnknownEmail(u)) if self.args.notify_unknown_accounts => {
                let ctx = context_for(&u.email, "", "", "", "", "", "");
                let mut plan = mail(&u.email, Kind::Unknown, &u.locale, ctx);
                // Anyone can ask for any address: given up first when too many retry.
                if let Plan::Send(job) = &mut plan {
                    job.unsolicited = true;
                }
                plan
            }
            Some(event::Kind::ResetRequestedForUnknownEmail(_)) => Plan::Nothing("unknown-account notices are off"),
            None => Plan::Nothing("an event kind this notifier does not know"),
        }
    }
}

fn format_time(t: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.seconds, 0).map(|d| d.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

/// Waits `delay` (with up to 50 % jitter), then doubles it up to a minute; `false` if
/// shutdown came first.
async fn pause(delay: &mut Duration, shutdown: &CancellationToken) -> bool {
    let wait = deliver::jittered(delay);
    tokio::select! {
        _ = clock::pause(wait) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// The health endpoint's limits: a request (head only) is at most this long, must
/// arrive within this time (a probe or a scraper sends it at once), and at most this
/// many connections are open at once. Past that the one that has waited longest for
/// its head is closed to admit the new one: idle connections cannot starve a probe.
const METRICS_REQUEST_CAP: usize = 8 * 1024;
const METRICS_READ_TIMEOUT: Duration = Duration::from_secs(1);
const METRICS_CONNECTIONS: usize = 64;

/// The health endpoint's open connections: those still waiting for their head (by
/// arrival, each closable), and how many are being answered.
#[derive(Default)]
struct MetricsConnections {
    waiting: std::collections::BTreeMap<u64, CancellationToken>,
    answering: usize,
    next: u64,
}

impl MetricsConnections {
    /// Admits a connection, closing the one waiting longest for its head if full;
    /// `None` if every slot is being answered.
    fn admit(&mut self) -> Option<(u64, CancellationToken)> {
        if self.waiting.len() + self.answering >= METRICS_CONNECTIONS {
            let (_, oldest) = self.waiting.pop_first()?;
            oldest.cancel();
        }
        let (id, closed) = (self.next, CancellationToken::new());
        self.next += 1;
        self.waiting.insert(id, closed.clone());
        Some((id, closed))
    }
}

/// A connection's slot, given back however its task ends.
struct MetricsSlot {
    connections: Arc<std::sync::Mutex<MetricsConnections>>,
    id: u64,
    answering: bool,
}

impl MetricsSlot {
    /// Its head arrived: it is answered unless it was closed meanwhile.
    fn answer(&mut self) -> bool {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if connections.waiting.remove(&self.id).is_none() {
            return false;
        }
        connections.answering += 1;
        self.answering = true;
        true
    }
}

impl Drop for MetricsSlot {
    fn drop(&mut self) {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if self.answering {
            connections.answering -= 1;
        } else {
            connections.waiting.remove(&self.id);
        }
    }
}

/// `/metrics` (Prometheus text) and `/healthz` (200 while subscribed, else 503).
async fn serve_metrics(addr: SocketAddr, health: Arc<Health>) -> anyhow::Result<()> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "metrics and health listening");
    let connections = Arc::new(std::sync::Mutex::new(MetricsConnections::default()));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { continue };
            let admitted = connections.lock().unwrap_or_else(|p| p.into_inner()).admit();
            // Every slot is being answered (each for a moment): closed rather than queued.
            let Some((id, closed)) = admitted else { continue };
            let mut slot = MetricsSlot { connections: Arc::clone(&connections), id, answering: false };
            let (handle, health) = (handle.clone(), Arc::clone(&health));
            tokio::spawn(async move {
                let deadline = clock::monotonic() + METRICS_READ_TIMEOUT;
                let path = tokio::select! {
                    path = read_request_path(&mut socket, deadline) => path,
                    _ = closed.cancelled() => None,
                };
                let Some(path) = path else { return };
                if !slot.answer() {
                    return;
                }
                let (status, body) = match path.as_str() {
                    "/metrics" => ("200 OK", handle.render()),
                    "/healthz" if health.subscribed.load(Ordering::SeqCst) => ("200 OK", "serving\n".to_owned()),
                    "/healthz" => ("503 Service Unavailable", "not subscribed\n".to_owned()),
                    "" => ("431 Request Header Fields Too Large", String::new()),
                    _ => ("404 Not Found", String::new()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let write = socket.write_all(response.as_bytes());
                let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
            });
        }
    });
    Ok(())
}

/// The path of a request whose head arrived whole by `deadline` (`""` if it is longer
/// than the cap); `None` if it did not arrive in time or the peer went away.
async fn read_request_path(socket: &mut tokio::net::TcpStream, deadline: tokio::time::Instant) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > METRICS_REQUEST_CAP {
            return Some(String::new());
        }
        let n = tokio::time::timeout_at(deadline, socket.read(&mut buf)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    Some(head.split_whitespace().nth(1).unwrap_or("/").to_owned())
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
