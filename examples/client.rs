//! A Rust client walking through the whole flow against a running pwreset, printing the
//! standard error details (`BadRequest`, `RetryInfo`) the way a caller would use them.
//!
//! ```sh
//! cargo run -- serve                      # in one shell
//! cargo run --example client              # in another
//! ```
#![allow(clippy::disallowed_methods)] // an outside caller, with its own timers: the service's clock rule is not its.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result};
use pwreset::proto::account_service_client::AccountServiceClient;
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{
    ConfirmRequest, CreateAccountRequest, RequestTokenRequest, SubscribeEventsRequest, ValidateTokenRequest,
    VerifyPasswordRequest, event,
};
use tonic::{Code, Status};
use tonic_types::StatusExt;

fn explain(what: &str, status: &Status) {
    println!("{what}: {:?}: {}", status.code(), status.message());
    if let Some(bad) = status.get_details_bad_request() {
        for v in bad.field_violations {
            println!("  field {} [{}]: {}", v.field, v.reason, v.description);
        }
    }
    if let Some(retry) = status.get_details_retry_info().and_then(|r| r.retry_delay) {
        println!("  retry after {retry:?}");
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let endpoint = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let mut reset = PasswordResetServiceClient::connect(endpoint.clone()).await.context("connecting")?;
    let mut accounts = AccountServiceClient::connect(endpoint).await?;
    let email = format!("client-{}@example.com", uuid::Uuid::new_v4().simple());

    let account = accounts
        .create_account(CreateAccountRequest {
            email: email.clone(),
            password: Some("correct horse battery staple orbit".into()),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!("created {} ({})", account.email, account.account_id);

    // A notifier's view: subscribe first, then the token arrives as an event.
    let mut events = reset.subscribe_events(SubscribeEventsRequest { after_sequence: None }).await?.into_inner();
    reset
        .request_token(RequestTokenRequest { email: email.clone(), locale: "en".into(), ..Default::default() })
        .await?;
    let token = loop {
        let event = events.message().await?.context("stream ended")?;
        if let Some(event::Kind::TokenCreated(created)) = event.kind
            && created.email == email
        {
            println!("event {}: TokenCreated for {}", event.sequence, created.email);
            break created.token;
        }
    };

    let valid =
        reset.validate_token(ValidateTokenRequest { token: token.clone(), ..Default::default() }).await?.into_inner();
    println!("token valid until {:?}", valid.expires_at);

    let weak = reset
        .confirm(ConfirmRequest { token: token.clone(), new_password: "password123".into(), ..Default::default() })
        .await;
    if let Err(status) = weak {
        explain("weak password", &status);
    }
    reset
        .confirm(ConfirmRequest {
            token: token.clone(),
            new_password: "violet kettle marathon quietly glows".into(),
            ..Default::default()
        })
        .await?;
    println!("password changed");
    if let Err(status) = reset.validate_token(ValidateTokenRequest { token, ..Default::default() }).await {
        explain("spent token", &status);
    }
    let verified = accounts
        .verify_password(VerifyPasswordRequest {
            email: email.clone(),
            password: "violet kettle marathon quietly glows".into(),
        })
        .await?
        .into_inner();
    println!("new password verifies: {}", verified.valid);

    // Keep asking until the per-IP limit answers, to show RetryInfo.
    for _ in 0..50 {
        if let Err(status) =
            reset.request_token(RequestTokenRequest { email: email.clone(), ..Default::default() }).await
        {
            if status.code() == Code::ResourceExhausted {
                explain("rate limited", &status);
                break;
            }
            return Err(status.into());
        }
    }
    Ok(())
}
