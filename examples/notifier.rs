//! A custom consumer of the event stream in 30 lines: print what a notifier would
//! send. For delivery, run `pwreset-notify` (the `notify/` workspace member) instead.
//!
//! `cargo run --example notifier -- http://127.0.0.1:50051`

use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{SubscribeEventsRequest, event};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let endpoint = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let mut client = PasswordResetServiceClient::connect(endpoint).await?;
    // Keep the last sequence handled and pass it back here after a restart.
    let request = SubscribeEventsRequest { after_sequence: Some(0) };
    let mut events = client.subscribe_events(request).await?.into_inner();
    while let Some(e) = events.message().await? {
        match e.kind {
            Some(event::Kind::TokenCreated(t)) if !t.token.is_empty() => {
                let to = if t.phone.is_empty() { &t.email } else { &t.phone };
                println!("#{} token for {to} (purpose {}, locale {:?})", e.sequence, t.purpose, t.locale);
            }
            Some(event::Kind::PasswordChanged(p)) => println!("#{} password changed: {}", e.sequence, p.email),
            Some(event::Kind::ResetRequestedForUnknownEmail(u)) => println!("#{} no account: {}", e.sequence, u.email),
            _ => {}
        }
    }
    Ok(())
}
