//! Caller authentication per role.

use pwreset::grpc::auth::CallerKey;
use pwreset::proto::account_service_client::AccountServiceClient;
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{CreateAccountRequest, SubscribeEventsRequest, ValidateTokenRequest};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::*;

const RESET_KEY: &str = "reset-key-0123456789";
const EVENTS_KEY: &str = "events-key-0123456789";
const ACCOUNTS_KEY: &str = "accounts-key-0123456789";

async fn keyed_app() -> TestApp {
    TestApp::spawn_with(|mut c| {
        c.server.caller_keys = [("reset", RESET_KEY), ("events", EVENTS_KEY), ("accounts", ACCOUNTS_KEY)]
            .iter()
            .map(|(role, key)| format!("{role}={key}").parse::<CallerKey>().unwrap())
            .collect();
        c
    })
    .await
}

#[tokio::test]
async fn each_role_needs_its_own_key() {
    let app = keyed_app().await;
    let mut reset = PasswordResetServiceClient::new(app.channel.clone());
    let mut accounts = AccountServiceClient::new(app.channel.clone());
    let validate = || ValidateTokenRequest { token: "unknown".into(), ..Default::default() };
    let create = || CreateAccountRequest { email: "ada@example.com".into(), password: None, ..Default::default() };
    let subscribe = || SubscribeEventsRequest { after_sequence: None };

    // reset role
    assert_eq!(code(reset.validate_token(validate()).await), Code::Unauthenticated);
    assert_eq!(code(reset.validate_token(with_key(validate(), "wrong-key-0123456789")).await), Code::Unauthenticated);
    assert_eq!(code(reset.validate_token(with_key(validate(), ACCOUNTS_KEY)).await), Code::PermissionDenied);
    assert_eq!(code(reset.validate_token(with_key(validate(), RESET_KEY)).await), Code::NotFound, "authorised");

    // events role
    assert_eq!(code(reset.subscribe_events(subscribe()).await), Code::Unauthenticated);
    assert_eq!(code(reset.subscribe_events(with_key(subscribe(), RESET_KEY)).await), Code::PermissionDenied);
    assert_eq!(code(reset.subscribe_events(with_key(subscribe(), EVENTS_KEY)).await), Code::Ok);

    // accounts role
    assert_eq!(code(accounts.create_account(create()).await), Code::Unauthenticated);
    assert_eq!(code(accounts.create_account(with_key(create(), EVENTS_KEY)).await), Code::PermissionDenied);
    assert_eq!(code(accounts.create_account(with_key(create(), ACCOUNTS_KEY)).await), Code::Ok);
}

#[tokio::test]
async fn health_needs_no_key() {
    let app = keyed_app().await;
    let status = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

#[tokio::test]
async fn roles_without_a_key_are_open_on_loopback() {
    let app = TestApp::spawn_with(|mut c| {
        c.server.caller_keys = vec![format!("accounts={ACCOUNTS_KEY}").parse().unwrap()];
        c
    })
    .await;
    app.reset().validate_token(ValidateTokenRequest { token: "x".into(), ..Default::default() }).await.unwrap_err();
    let status = app
        .accounts()
        .create_account(CreateAccountRequest { email: "a@example.com".into(), password: None, ..Default::default() })
        .await;
    assert_eq!(code(status), Code::Unauthenticated);
}
