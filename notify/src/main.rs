//! pwreset-notify: subscribes to pwreset's event stream and sends what each event
//! calls for (reset and setup links by e-mail, codes by text, password-changed notices,
//! and optionally "no account here" notices). Events are read in order (`follow.rs`)
//! and each becomes a message (`compose.rs`, `render.rs`) on its lane (`dispatch.rs`);
//! e-mail and texts each go out in order through their own lane, and a message that
//! fails transiently is retried in the background so it holds up no other
//! (`deliver.rs`, `send.rs`). The cursor records which messages are not finished yet,
//! so a restart resumes with no message lost (`cursor.rs`). A message sent twice after
//! a crash carries the same `Message-ID`, so mail systems can drop the duplicate.
//!
//! This file parses the flags and wires the parts together.

mod cli;
mod compose;
mod cursor;
mod deliver;
mod dispatch;
mod follow;
mod health;
mod logging;
mod render;
mod send;
mod signal;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pwreset_proto::redact;
use pwreset_proto::secret::Secret;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use cli::Args;
use compose::Composer;
use cursor::{Cursor, Ledger};
use deliver::{Delivery, LANE_DEPTH, Senders};
use dispatch::Dispatcher;
use follow::Follower;
use health::Health;
use render::Renderer;
use send::{MailSender, TextSender};

/// How often a standby replica asks for the PostgreSQL cursor's lock.
const CURSOR_LOCK_POLL: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(&args.log_format);
    let secrets = args.secrets();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            // Belt and braces: the errors that can quote a URL are redacted where they
            // arise; no secret setting's value leaves through any other.
            tracing::error!(error = redact::scrub(&format!("{e:#}"), &secrets), "pwreset-notify failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let shutdown = signal::shutdown_on_signal();
    let health = Arc::new(Health::default());
    if let Some(addr) = args.metrics_listen {
        health::serve(addr, Arc::clone(&health)).await?;
    }
    let composer = composer(&args)?;
    let (mail, texts) = (mail_sender(&args)?, text_sender(&args)?);
    let senders = Senders { from: args.from.clone(), mail, texts, crash_after: crash_after(), sent: AtomicU64::new(0) };
    let Some(cursor) = cursor(&args, &shutdown).await? else { return Ok(ExitCode::SUCCESS) };
    let ledger = Ledger::new(cursor.load().await?);
    let delivery = Arc::new(Delivery::new(senders, ledger, cursor, args.retry_for, args.max_retrying, &shutdown));
    let (mail_lane, mail_jobs) = mpsc::channel(LANE_DEPTH);
    let (text_lane, text_jobs) = mpsc::channel(LANE_DEPTH);
    let lanes =
        [tokio::spawn(Arc::clone(&delivery).lane(mail_jobs)), tokio::spawn(Arc::clone(&delivery).lane(text_jobs))];
    let dispatcher = Dispatcher { composer, delivery: Arc::clone(&delivery), mail_lane, text_lane };
    let followed = follower(args).follow(dispatcher, &health, &shutdown).await;
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

fn composer(args: &Args) -> anyhow::Result<Composer> {
    let renderer = Renderer::new(args.templates.clone(), &args.default_locale)?;
    let mut webhook_body = minijinja::Environment::new();
    webhook_body.add_template_owned("body", args.sms_webhook_body.expose().to_owned()).context("--sms-webhook-body")?;
    Ok(Composer {
        renderer,
        webhook_body,
        reset_url: args.reset_url.clone(),
        setup_url: args.setup_url.clone().unwrap_or_else(|| args.reset_url.clone()),
        server_id: args.server_id.clone(),
        domain: args.from.email.domain().to_owned(),
        notify_unknown_accounts: args.notify_unknown_accounts,
    })
}

fn mail_sender(args: &Args) -> anyhow::Result<MailSender> {
    match (&args.smtp_url, &args.out_dir) {
        (Some(url), _) => send::smtp(url.expose(), args.smtp_ca_file.as_deref(), args.smtp_timeout),
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(MailSender::Folder(dir.clone()))
        }
        (None, None) => anyhow::bail!("set --smtp-url, or --out-dir for development"),
    }
}

fn text_sender(args: &Args) -> anyhow::Result<TextSender> {
    match (&args.sms_webhook_url, &args.out_dir) {
        (Some(url), _) => TextSender::webhook(
            url.expose(),
            args.sms_webhook_token.as_ref().map(Secret::expose),
            args.sms_webhook_timeout,
        ),
        (None, Some(dir)) => Ok(TextSender::Folder(dir.clone())),
        (None, None) => Ok(TextSender::None),
    }
}

/// The test hook `PWRESET_NOTIFY_FAULT=crash-after-send:N`: abort after the Nth send,
/// before the cursor is stored.
fn crash_after() -> Option<u64> {
    let fault = std::env::var("PWRESET_NOTIFY_FAULT").ok()?;
    fault.strip_prefix("crash-after-send:")?.parse().ok()
}

/// The cursor the flags ask for; `None` if shutdown came while waiting for the
/// PostgreSQL cursor's lock.
async fn cursor(args: &Args, shutdown: &CancellationToken) -> anyhow::Result<Option<Cursor>> {
    let Some(url) = &args.cursor_database_url else { return Ok(Some(Cursor::file(args.cursor_file.clone()))) };
    tokio::select! {
        cursor = Cursor::postgres(url.expose(), &args.cursor_name, CURSOR_LOCK_POLL) => cursor.map(Some),
        _ = shutdown.cancelled() => Ok(None),
    }
}

fn follower(args: Args) -> Follower {
    Follower {
        endpoint: args.endpoint,
        events_key: args.events_key,
        start_now: args.start == "now",
        once: args.once,
        skip_gaps: args.skip_gaps,
    }
}
