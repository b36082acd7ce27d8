//! Username and phone logins, and short codes bound to their login: lookups by
//! all three kinds, SMS codes, the binding, and the attempt cap against a guesser with
//! a thousand addresses.

use std::collections::HashSet;

use pwreset::domain::model::token::TokenGenerator;
use pwreset::domain::runtime::limits::{Rate, RateLimits};
use pwreset::proto::{
    Channel, ConfirmRequest, CreateAccountRequest, PasswordChangeReason, RequestTokenRequest, ValidateTokenRequest,
};
use pwreset::store::entity::reset_tokens;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::Code;

use crate::helpers::*;

const PHONE: &str = "+44 7911 123456";
const E164: &str = "+447911123456";

pub(crate) async fn ada(app: &TestApp) -> pwreset::proto::Account {
    app.accounts()
        .create_account(CreateAccountRequest {
            email: "ada@example.com".into(),
            password: Some(STRONG.into()),
            username: "Ada.Lovelace".into(),
            phone: PHONE.into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
}

fn by_username(username: &str) -> RequestTokenRequest {
    RequestTokenRequest { username: username.into(), ..Default::default() }
}

pub(crate) fn by_phone(phone: &str) -> RequestTokenRequest {
    RequestTokenRequest { phone: phone.into(), ..Default::default() }
}

pub(crate) fn validate(token: &str, login: &str) -> ValidateTokenRequest {
    ValidateTokenRequest { token: token.into(), login: login.into() }
}

/// Requests a token with `request` and takes its event from the stream.
pub(crate) async fn harvest(app: &TestApp, request: RequestTokenRequest) -> pwreset::proto::TokenCreated {
    let mut events = app.subscribe(None).await;
    app.reset().request_token(request).await.expect("request");
    token_created(next_event(&mut events).await)
}

#[tokio::test]
async fn usernames_and_phones_are_normalised_unique_and_validated() {
    let app = TestApp::spawn().await;
    let account = ada(&app).await;
    assert_eq!((account.username.as_str(), account.phone.as_str()), ("ada.lovelace", E164));
    let mut accounts = app.accounts();
    let taken = |email: &str, username: &str, phone: &str| CreateAccountRequest {
        email: email.into(),
        username: username.into(),
        phone: phone.into(),
        ..Default::default()
    };
    let same_name = accounts.create_account(taken("bob@example.com", "ADA.LOVELACE", "")).await;
    assert_eq!(code(same_name), Code::AlreadyExists, "usernames are case-insensitive");
    let same_phone = accounts.create_account(taken("bob@example.com", "", "+447911 123 456")).await;
    assert_eq!(code(same_phone), Code::AlreadyExists);
    let bad_phone = accounts.create_account(taken("bob@example.com", "", "07911 123456")).await.unwrap_err();
    assert_eq!(bad_request_fields(&bad_phone), ["phone"]);
    let bad_name = accounts.create_account(taken("bob@example.com", "bob smith", "")).await.unwrap_err();
    assert_eq!(bad_request_fields(&bad_name), ["username"]);
    let none = app.reset().request_token(RequestTokenRequest::default()).await.unwrap_err();
    assert_eq!(code::<()>(Err(none)), Code::InvalidArgument);
    let two = RequestTokenRequest { email: "ada@example.com".into(), phone: PHONE.into(), ..Default::default() };
    assert_eq!(code(app.reset().request_token(two).await), Code::InvalidArgument);
}

#[tokio::test]
async fn a_reset_by_username_is_mailed_and_a_long_token_needs_no_login() {
    let app = TestApp::spawn().await;
    let account = ada(&app).await;
    let created = harvest(&app, by_username("ADA.lovelace")).await;
    assert_eq!(created.channel, Channel::Email as i32);
    assert_eq!(
        (created.username.as_str(), created.email.as_str(), created.phone.as_str()),
        ("ada.lovelace", "ada@example.com", "")
    );
    assert_eq!(created.token.len(), 43, "a long token");
    let mut reset = app.reset();
    assert!(reset.validate_token(validate(&created.token, "")).await.is_ok(), "no login needed");
    assert!(reset.validate_token(validate(&created.token, "ada.lovelace")).await.is_ok());
    app.create_account("bob@example.com", Some(STRONG)).await;
    let wrong = reset.validate_token(validate(&created.token, "bob@example.com")).await;
    assert_eq!(code(wrong), Code::NotFound, "a login, when given, must match");
    let confirm = ConfirmRequest { token: created.token, new_password: OTHER_STRONG.into(), login: E164.into() };
    reset.confirm(confirm).await.unwrap();
    assert!(app.verify("ada@example.com", OTHER_STRONG).await);
    let _ = account;
}

#[tokio::test]
async fn a_reset_by_phone_is_a_short_code_bound_to_its_login() {
    let app = TestApp::spawn().await;
    let account = ada(&app).await;
    let mut events = app.subscribe(None).await;
    app.reset().request_token(by_phone("+44 (0) 7911 123456".replace(" (0)", "").as_str())).await.unwrap();
    let created = token_created(next_event(&mut events).await);
    assert_eq!(created.channel, Channel::Sms as i32);
    assert_eq!(created.phone, E164);
    let number: u64 = created.token.parse().expect("a numeric code");
    assert!((10_000..=99_999).contains(&number), "from --token-min-number..--token-max-number");

    let mut reset = app.reset();
    assert_eq!(code(reset.validate_token(validate(&created.token, "")).await), Code::NotFound, "no login");
    for login in [E164, "ada@example.com", "ada.lovelace"] {
        assert!(reset.validate_token(validate(&created.token, login)).await.is_ok(), "{login}");
    }
    app.create_account("bob@example.com", Some(STRONG)).await;
    let other = reset.validate_token(validate(&created.token, "bob@example.com")).await;
    assert_eq!(code(other), Code::NotFound);
    let confirm =
        ConfirmRequest { token: created.token.clone(), new_password: OTHER_STRONG.into(), login: String::new() };
    assert_eq!(code(reset.confirm(confirm).await), Code::NotFound, "Confirm needs the login too");
    let confirm = ConfirmRequest { token: created.token, new_password: OTHER_STRONG.into(), login: PHONE.into() };
    reset.confirm(confirm).await.unwrap();
    let changed = password_changed(next_event(&mut events).await);
    assert_eq!((changed.account_id, changed.reason), (account.account_id, PasswordChangeReason::Reset as i32));
}

#[tokio::test]
async fn unknown_usernames_and_phones_get_the_same_answer_and_nothing_is_sent() {
    let app = TestApp::spawn().await;
    ada(&app).await;
    let mut replay = app.subscribe(None).await;
    app.reset().request_token(by_username("nobody.here")).await.unwrap();
    app.reset().request_token(by_phone("+16502530000")).await.unwrap();
    // A marker: the first event after them is this one.
    app.reset().request_token(by_username("ada.lovelace")).await.unwrap();
    assert_eq!(token_created(next_event(&mut replay).await).email, "ada@example.com");
}

#[tokio::test]
async fn the_numeric_generator_binds_mailed_codes_too() {
    let app = TestApp::spawn_with(|mut c| {
        c.tokens.generator = TokenGenerator::Numeric { min: 10_000, max: 99_999 };
        c
    })
    .await;
    ada(&app).await;
    let created = harvest(&app, RequestTokenRequest { email: "ada@example.com".into(), ..Default::default() }).await;
    assert_eq!(created.channel, Channel::Email as i32);
    let mut reset = app.reset();
    assert_eq!(code(reset.validate_token(validate(&created.token, "")).await), Code::NotFound);
    assert!(reset.validate_token(validate(&created.token, "ada@example.com")).await.is_ok());
}

async fn failed_attempts(app: &TestApp, account_id: &str) -> Vec<(i32, bool)> {
    let db = sea_orm::Database::connect(app.db.url()).await.unwrap();
    reset_tokens::Entity::find()
        .filter(reset_tokens::Column::AccountId.eq(uuid::Uuid::parse_str(account_id).unwrap()))
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.failed_attempts, t.revoked_at.is_some()))
        .collect()
}

/// 1,000 guesses from 1,000 addresses (each under its per-IP limit) against one
/// account's code, from a range of 100 codes so that guessing would surely succeed
/// without the cap: the code is revoked after 5 failures, and the right code presented
/// after them is refused like any other.
#[tokio::test]
async fn a_thousand_addresses_cannot_guess_a_short_code() {
    let app = TestApp::spawn_with(|mut c| {
        c.tokens.sms_codes = TokenGenerator::Numeric { min: 100, max: 199 };
        c.limits = RateLimits { validate_token: Some("5/1h".parse::<Rate>().unwrap()), ..RateLimits::default() };
        c
    })
    .await;
    let account = ada(&app).await;
    let real = harvest(&app, by_phone(PHONE)).await.token;
    let wrong: Vec<String> = (100..=199).map(|n: u32| n.to_string()).filter(|c| *c != real).collect();
    // The first hundred guesses, all wrong, at once: racing failures must each count.
    let first: Vec<_> = (0..100)
        .map(|n| {
            let mut reset = app.reset();
            let request =
                with_ip(validate(&wrong[n % wrong.len()], E164), &format!("198.51.{}.{}", n / 250, n % 250 + 1));
            tokio::spawn(async move { reset.validate_token(request).await })
        })
        .collect();
    for guess in first {
        assert_eq!(code(guess.await.unwrap()), Code::NotFound);
    }
    assert_eq!(failed_attempts(&app, &account.account_id).await, [(5, true)], "revoked at exactly 5");
    // 900 more, from 900 other addresses, the right code among them.
    let mut succeeded = HashSet::new();
    for n in 100..1000 {
        let guess = if n == 555 { real.clone() } else { wrong[n % wrong.len()].clone() };
        let request = with_ip(validate(&guess, E164), &format!("203.0.{}.{}", n / 250, n % 250 + 1));
        if app.reset().validate_token(request).await.is_ok() {
            succeeded.insert(guess);
        }
    }
    assert!(succeeded.is_empty(), "a guess succeeded: {succeeded:?}");
    let confirm = ConfirmRequest { token: real, new_password: OTHER_STRONG.into(), login: E164.into() };
    assert_eq!(code(app.reset().confirm(confirm).await), Code::NotFound);
}

#[tokio::test]
async fn the_attempt_count_is_shared_by_replicas() {
    let app = TestApp::spawn().await;
    let replica = app.sibling(|c| c).await;
    let account = ada(&app).await;
    let real = harvest(&app, by_phone(PHONE)).await.token;
    let wrong = if real == "10000" { "10001" } else { "10000" };
    for (n, server) in [&app, &replica, &app, &replica, &app].into_iter().enumerate() {
        let result = server.reset().validate_token(validate(wrong, E164)).await;
        assert_eq!(code(result), Code::NotFound, "guess {n}");
    }
    assert_eq!(failed_attempts(&app, &account.account_id).await, [(5, true)]);
    for server in [&app, &replica] {
        assert_eq!(code(server.reset().validate_token(validate(&real, E164)).await), Code::NotFound);
    }
}

#[tokio::test]
async fn the_global_sms_rate_answers_every_number_alike() {
    let app = TestApp::spawn_with(|mut c| {
        c.limits = RateLimits { sms: Some("2/1h".parse::<Rate>().unwrap()), ..RateLimits::default() };
        c
    })
    .await;
    ada(&app).await;
    let mut reset = app.reset();
    assert!(reset.request_token(by_phone(PHONE)).await.is_ok());
    assert!(reset.request_token(by_phone("+16502530000")).await.is_ok(), "an unknown number counts too");
    for phone in [PHONE, "+16502530000"] {
        assert_eq!(code(reset.request_token(by_phone(phone)).await), Code::ResourceExhausted, "{phone}");
    }
    assert!(app.request_token("ada@example.com").await.is_ok(), "e-mail requests are not texts");
}
