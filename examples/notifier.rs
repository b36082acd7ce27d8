//! A reference notification service for pwreset.
//!
//! Subscribes to `SubscribeEvents`, keeps its cursor in a local file so a restart
//! resumes where it left off, renders a plain-text e-mail for each event and either
//! writes it to a folder (development) or sends it over SMTP.
//!
//! ```sh
//! cargo run --features notifier --example notifier -- \
//!   --reset-url 'https://app.example/reset?token={token}' --out-dir outbox
//! ```
#![allow(clippy::disallowed_methods)] // an outside consumer of the stream, with its own timers: the service's clock rule is not its.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{Event, PasswordChangeReason, SubscribeEventsRequest, TokenPurpose, event};
use tonic::Code;
use tonic::metadata::MetadataValue;

#[derive(Debug, Parser)]
struct Args {
    /// pwreset's address.
    #[arg(long, env = "NOTIFIER_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    endpoint: String,
    /// Key of the `events` role, if the server requires one.
    #[arg(long, env = "NOTIFIER_EVENTS_KEY", hide_env_values = true)]
    events_key: Option<String>,
    /// Where the last handled sequence is kept.
    #[arg(long, env = "NOTIFIER_CURSOR_FILE", default_value = "notifier.cursor")]
    cursor_file: PathBuf,
    /// Reset link; `{token}` is replaced by the token (URL-safe already).
    #[arg(long, env = "NOTIFIER_RESET_URL")]
    reset_url: String,
    /// Account-setup (invitation) link; `{token}` as above. Defaults to the reset link.
    #[arg(long, env = "NOTIFIER_SETUP_URL")]
    setup_url: Option<String>,
    /// Sender address.
    #[arg(long, env = "NOTIFIER_FROM", default_value = "Accounts <no-reply@example.com>")]
    from: Mailbox,
    /// Development mode: write each message to this folder instead of sending it.
    #[arg(long, env = "NOTIFIER_OUT_DIR", conflicts_with = "smtp_url")]
    out_dir: Option<PathBuf>,
    /// SMTP relay, e.g. smtps://user:pass@smtp.example.com or smtp://localhost:25.
    #[arg(long, env = "NOTIFIER_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
}

enum Delivery {
    Folder(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let delivery = match (&args.out_dir, &args.smtp_url) {
        (Some(dir), _) => {
            std::fs::create_dir_all(dir)?;
            Delivery::Folder(dir.clone())
        }
        (None, Some(url)) => Delivery::Smtp(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build()),
        (None, None) => anyhow::bail!("give --out-dir (development) or --smtp-url"),
    };
    loop {
        match follow(&args, &delivery).await {
            Ok(()) => println!("stream ended; reconnecting"),
            Err(e) => println!("stream failed: {e:#}; reconnecting in 1 s"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One subscription: from the saved cursor (or every retained event on first start).
async fn follow(args: &Args, delivery: &Delivery) -> Result<()> {
    let mut client = PasswordResetServiceClient::connect(args.endpoint.clone()).await?;
    let cursor = read_cursor(&args.cursor_file)?;
    let mut request = tonic::Request::new(SubscribeEventsRequest { after_sequence: Some(cursor.unwrap_or(0)) });
    if let Some(key) = &args.events_key {
        request.metadata_mut().insert("authorization", MetadataValue::try_from(format!("Bearer {key}"))?);
    }
    let mut stream = match client.subscribe_events(request).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == Code::OutOfRange => {
            // Events were purged before we saw them; nothing can bring them back.
            println!("cursor {cursor:?} is older than the server's retention; continuing with live events");
            let live = client.subscribe_events(SubscribeEventsRequest { after_sequence: None }).await?;
            live.into_inner()
        }
        Err(status) => return Err(status.into()),
    };
    while let Some(event) = stream.message().await? {
        let sequence = event.sequence;
        if let Some(message) = render(args, event)? {
            deliver(delivery, sequence, message).await?;
        }
        // At-least-once: the cursor moves only after delivery.
        write_cursor(&args.cursor_file, sequence)?;
    }
    Ok(())
}

fn render(args: &Args, event: Event) -> Result<Option<Message>> {
    let Some((to, subject, body)) = compose(args, event) else { return Ok(None) };
    let message = Message::builder()
        .from(args.from.clone())
        .to(to.parse().with_context(|| format!("recipient {to}"))?)
        .subject(subject)
        .body(body)?;
    Ok(Some(message))
}

/// The recipient, subject and body of an event's message, if it has one.
fn compose(args: &Args, event: Event) -> Option<(String, &'static str, String)> {
    Some(match event.kind {
        Some(event::Kind::TokenCreated(t)) if !t.token.is_empty() => {
            let expires = t.expires_at.map(|e| format!(" It expires at {e} (UTC).")).unwrap_or_default();
            if t.purpose == TokenPurpose::AccountSetup as i32 {
                let url = args.setup_url.as_deref().unwrap_or(&args.reset_url);
                let link = url.replace("{token}", &t.token);
                let body = format!(
                    "An account was created for you: {email}.\n\n\
                     To choose your password and start using it, open:\n\n  {link}\n\n\
                     The link works once.{expires}\n\n\
                     If you did not expect this invitation, ignore this message.\n",
                    email = t.email
                );
                (t.email, "Set up your account", body)
            } else {
                let link = args.reset_url.replace("{token}", &t.token);
                let body = format!(
                    "Someone (hopefully you) asked to reset the password of the account {email}.\n\n\
                     To choose a new password, open:\n\n  {link}\n\n\
                     The link works once.{expires}\n\n\
                     If you did not ask for this, ignore this message: your password stays as it is.\n",
                    email = t.email
                );
                (t.email, "Reset your password", body)
            }
        }
        Some(event::Kind::PasswordChanged(p)) => {
            let how = match PasswordChangeReason::try_from(p.reason) {
                Ok(PasswordChangeReason::AccountSetup) => "was set for the first time",
                Ok(PasswordChangeReason::Change) => "was changed by its owner",
                _ => "was reset",
            };
            let body = format!(
                "The password of the account {} {how}.\n\n\
                 If this was not you, contact support at once.\n",
                p.email
            );
            (p.email, "Your password was changed", body)
        }
        Some(event::Kind::ResetRequestedForUnknownEmail(u)) => {
            let body = "Someone asked to reset a password for this e-mail address, but there is no account \
                        with it. If this was you, you may have signed up with another address. \
                        If not, ignore this message.\n"
                .to_owned();
            (u.email, "Password reset request", body)
        }
        // A token that is no longer live, or a kind this notifier does not know.
        _ => return None,
    })
}

async fn deliver(delivery: &Delivery, sequence: u64, message: Message) -> Result<()> {
    match delivery {
        Delivery::Folder(dir) => {
            let path = dir.join(format!("{sequence:020}.eml"));
            std::fs::write(&path, message.formatted())?;
            println!("event {sequence}: wrote {}", path.display());
        }
        Delivery::Smtp(smtp) => {
            smtp.send(message).await?;
            println!("event {sequence}: sent");
        }
    }
    Ok(())
}

fn read_cursor(path: &Path) -> Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().parse().with_context(|| format!("cursor file {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Write-then-rename, so a crash never leaves a half-written cursor.
fn write_cursor(path: &Path, sequence: u64) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, sequence.to_string())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args() -> Args {
        Args::parse_from([
            "notifier",
            "--reset-url",
            "https://app.example/reset?token={token}",
            "--setup-url",
            "https://app.example/welcome?token={token}",
            "--out-dir",
            "outbox",
        ])
    }

    fn created(purpose: TokenPurpose) -> Event {
        Event {
            sequence: 1,
            occurred_at: None,
            kind: Some(event::Kind::TokenCreated(pwreset::proto::TokenCreated {
                email: "ada@example.com".into(),
                token: "TOKEN".into(),
                purpose: purpose as i32,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn each_purpose_has_its_own_message_and_link() -> Result<()> {
        let (to, subject, body) = compose(&args(), created(TokenPurpose::PasswordReset)).context("a message")?;
        assert_eq!((to.as_str(), subject), ("ada@example.com", "Reset your password"));
        assert!(body.contains("https://app.example/reset?token=TOKEN"), "{body}");
        let (_, subject, body) = compose(&args(), created(TokenPurpose::AccountSetup)).context("a message")?;
        assert_eq!(subject, "Set up your account");
        assert!(body.contains("https://app.example/welcome?token=TOKEN"), "{body}");
        assert!(!body.contains("/reset?"));
        assert!(render(&args(), created(TokenPurpose::AccountSetup))?.is_some(), "a valid message");
        Ok(())
    }
}
