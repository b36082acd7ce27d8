//! Measures `Confirm` against a running server, sequentially, once the account's
//! password history is full: the cost of `--password-history N` (BENCHMARKS.md).
//! Each round requests a token, takes it from the event stream and times the Confirm
//! call alone, with a password never used before.
//!
//! `cargo run --release --example confirm_cost -- http://127.0.0.1:50061 [ROUNDS]`

// A measuring tool: it reads the wall clock itself.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pwreset::proto::account_service_client::AccountServiceClient;
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{ConfirmRequest, CreateAccountRequest, RequestTokenRequest, SubscribeEventsRequest, event};

#[tokio::main]
async fn main() -> Result<()> {
    let endpoint = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:50061".into());
    let rounds: usize = std::env::args().nth(2).and_then(|n| n.parse().ok()).unwrap_or(30);
    let mut reset = PasswordResetServiceClient::connect(endpoint.clone()).await.context("connecting")?;
    let mut accounts = AccountServiceClient::connect(endpoint).await?;
    let email = format!("cost-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = |i: usize| format!("violet kettle marathon quietly glows {i} {}", email.len());
    accounts
        .create_account(CreateAccountRequest {
            email: email.clone(),
            password: Some(password(0)),
            ..Default::default()
        })
        .await?;
    let mut events = reset.subscribe_events(SubscribeEventsRequest { after_sequence: None }).await?.into_inner();
    let mut times = Vec::new();
    // The first 5 rounds fill a history of up to 24 entries' worth of the N measured.
    for i in 1..=rounds + 5 {
        reset.request_token(RequestTokenRequest { email: email.clone(), ..Default::default() }).await?;
        let token = loop {
            let e = events.message().await?.context("stream ended")?;
            if let Some(event::Kind::TokenCreated(t)) = e.kind
                && t.email == email
            {
                break t.token;
            }
        };
        let start = Instant::now();
        reset.confirm(ConfirmRequest { token, new_password: password(i), ..Default::default() }).await?;
        if i > 5 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    println!(
        "confirm x{}: p50 {:.1} ms, p90 {:.1} ms, mean {:.1} ms",
        times.len(),
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
        mean
    );
    Ok(())
}
