//! The whole credential lifecycle: invitations (account-setup tokens), tokens
//! issued by a backend, ChangePassword, GetAccount and RevokeTokens, each through the
//! generated client, with the attacks on them (racing issues and changes, the lockout,
//! a returned token looked for in the database).

use std::time::Duration;

use pwreset::domain::runtime::guard::FailureLimit;
use pwreset::domain::runtime::limits::RateLimits;
use pwreset::grpc::auth::CallerKey;
use pwreset::proto::{
    ChangePasswordRequest, ConfirmRequest, CreateAccountRequest, GetAccountRequest, IssueTokenRequest,
    PasswordChangeReason, RevokeTokensRequest, SetActiveRequest, TokenDelivery, TokenPurpose, ValidateTokenRequest,
    event, get_account_request,
};
use sea_orm::{ConnectionTrait, Database, Statement};
use tonic::{Code, Status};

use crate::helpers::*;

const RESET: i32 = TokenPurpose::PasswordReset as i32;
const SETUP: i32 = TokenPurpose::AccountSetup as i32;
const RETURN: i32 = TokenDelivery::Return as i32;
const EVENT: i32 = TokenDelivery::Event as i32;

fn issue(account_id: &str, purpose: i32, delivery: i32) -> IssueTokenRequest {
    IssueTokenRequest { account_id: account_id.into(), purpose, delivery, ..Default::default() }
}

fn change(account_id: &str, current: &str, new: &str) -> ChangePasswordRequest {
    ChangePasswordRequest { account_id: account_id.into(), current_password: current.into(), new_password: new.into() }
}

impl TestApp {
    async fn invite(&self, email: &str) -> pwreset::proto::Account {
        self.accounts()
            .create_account(CreateAccountRequest {
                email: email.into(),
                send_setup_token: true,
                locale: "de-AT".into(),
                ..Default::default()
            })
            .await
            .expect("invite")
            .into_inner()
    }

    async fn validate(&self, token: &str) -> Result<pwreset::proto::ValidateTokenResponse, Status> {
        self.reset()
            .validate_token(ValidateTokenRequest { token: token.into(), ..Default::default() })
            .await
            .map(|r| r.into_inner())
    }

    async fn confirm(&self, token: &str, password: &str) -> Result<(), Status> {
        self.reset()
            .confirm(ConfirmRequest { token: token.into(), new_password: password.into(), ..Default::default() })
            .await
            .map(|_| ())
    }

    async fn issued(&self, account_id: &str, purpose: i32) -> String {
        self.accounts().issue_token(issue(account_id, purpose, RETURN)).await.expect("issue").into_inner().token
    }

    async fn get(&self, account_id: &str) -> Result<pwreset::proto::Account, Status> {
        let key = Some(get_account_request::Key::AccountId(account_id.into()));
        self.accounts().get_account(GetAccountRequest { key }).await.map(|r| r.into_inner())
    }

    async fn revoke(&self, account_id: &str, purpose: i32) -> Result<u32, Status> {
        self.accounts()
            .revoke_tokens(RevokeTokensRequest { account_id: account_id.into(), purpose })
            .await
            .map(|r| r.into_inner().revoked)
    }
}

#[tokio::test]
async fn an_invited_account_sets_its_first_password_with_its_setup_token() {
    let app = TestApp::spawn().await;
    let mut events = app.subscribe(None).await;
    let account = app.invite("ada@example.com").await;
    assert!(!account.has_usable_password);
    assert_eq!(account.password_changed_at, None);

    let created = token_created(next_event(&mut events).await);
    assert_eq!(created.purpose, SETUP);
    assert_eq!(created.channel, pwreset::proto::Channel::Email as i32);
    assert_eq!((created.email.as_str(), created.locale.as_str()), ("ada@example.com", "de-AT"));
    let expected = app.clock_now() + chrono::Duration::days(7);
    assert_eq!(created.expires_at.map(|t| t.seconds), Some(expected.timestamp()), "--setup-token-ttl default 7d");

    let valid = app.validate(&created.token).await.expect("a setup token is live");
    assert_eq!(valid.purpose, SETUP);
    app.confirm(&created.token, STRONG).await.expect("setup");
    let changed = password_changed(next_event(&mut events).await);
    assert_eq!(changed.reason, PasswordChangeReason::AccountSetup as i32);
    assert_eq!(changed.account_id, account.account_id);

    let after = app.get(&account.account_id).await.unwrap();
    assert!(after.has_usable_password);
    assert_eq!(after.password_changed_at.map(|t| t.seconds), Some(app.clock_now().timestamp()));
    assert!(app.verify("ada@example.com", STRONG).await);
    assert_eq!(code(app.confirm(&created.token, OTHER_STRONG).await), Code::NotFound, "single use");
    let again = app.accounts().issue_token(issue(&account.account_id, SETUP, RETURN)).await;
    assert_eq!(code(again), Code::FailedPrecondition, "no setup token once a password is set");
}

#[tokio::test]
async fn a_setup_token_is_refused_with_a_password_and_nothing_is_created() {
    let app = TestApp::spawn().await;
    let status = app
        .accounts()
        .create_account(CreateAccountRequest {
            email: "ada@example.com".into(),
            password: Some(STRONG.into()),
            send_setup_token: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&status), ["send_setup_token"]);
    let key = Some(get_account_request::Key::Email("ada@example.com".into()));
    assert_eq!(code(app.accounts().get_account(GetAccountRequest { key }).await), Code::NotFound);
    let bad_locale = app
        .accounts()
        .create_account(CreateAccountRequest {
            email: "ada@example.com".into(),
            send_setup_token: true,
            locale: "not a tag".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&bad_locale), ["locale"]);
}

#[tokio::test]
async fn an_issued_token_by_event_is_a_reset_like_any_other() {
    let app = TestApp::spawn().await;
    let account = app.create_account("ada@example.com", Some(STRONG)).await;
    let mut events = app.subscribe(None).await;
    let request = IssueTokenRequest { account_id: account.account_id.clone(), ..Default::default() };
    let answer = app.accounts().issue_token(request).await.unwrap().into_inner();
    assert_eq!(answer.token, "", "EVENT delivery returns no token");
    let created = token_created(next_event(&mut events).await);
    assert_eq!(created.purpose, RESET, "UNSPECIFIED purpose is a reset");
    assert_eq!(created.expires_at, answer.expires_at);
    assert_eq!(app.validate(&created.token).await.unwrap().purpose, RESET);
    app.confirm(&created.token, OTHER_STRONG).await.unwrap();
    assert_eq!(password_changed(next_event(&mut events).await).reason, PasswordChangeReason::Reset as i32);
    // RequestToken's tokens are resets too.
    let token = app.new_token("ada@example.com").await;
    assert_eq!(app.validate(&token).await.unwrap().purpose, RESET);
}

/// Every table's rows as text, to look for a value in clear.
async fn database_text(app: &TestApp) -> String {
    if app_is_postgres() {
        let db = Database::connect(app.db.url()).await.unwrap();
        let mut text = String::new();
        for table in ["accounts", "reset_tokens", "events", "verify_failures", "event_retention"] {
            let sql = format!("SELECT coalesce(string_agg(t::text, ' '), '') AS rows FROM {table} t");
            let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
            text.push_str(&row.try_get::<String>("", "rows").unwrap());
        }
        text
    } else {
        let path = app.db.url().trim_start_matches("sqlite://").trim_end_matches("?mode=rwc").to_owned();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[tokio::test]
async fn a_returned_token_is_never_in_the_database_or_the_event_stream() {
    let app = TestApp::spawn().await;
    let ada = app.create_account("ada@example.com", Some(STRONG)).await;
    let bob = app.create_account("bob@example.com", Some(STRONG)).await;
    let answer = app.accounts().issue_token(issue(&ada.account_id, RESET, RETURN)).await.unwrap().into_inner();
    assert_eq!(answer.token.len(), 43, "a default token");
    // A marker after it: the stream's first event must be Bob's.
    app.accounts().issue_token(issue(&bob.account_id, RESET, EVENT)).await.unwrap();
    let mut replay = app.subscribe(Some(0)).await;
    let first = token_created(next_event(&mut replay).await);
    assert_eq!(first.email, "bob@example.com", "no event carries Ada's returned token");
    assert_ne!(first.token, answer.token);

    assert!(app.validate(&answer.token).await.is_ok());
    assert!(!database_text(&app).await.contains(&answer.token), "the raw token is in the database");
    app.confirm(&answer.token, OTHER_STRONG).await.unwrap();
    assert!(app.verify("ada@example.com", OTHER_STRONG).await);
}

#[tokio::test]
async fn issue_token_refuses_what_it_cannot_issue() {
    let app = TestApp::spawn().await;
    let ada = app.create_account("ada@example.com", Some(STRONG)).await;
    let mut accounts = app.accounts();
    let unknown = issue(&uuid::Uuid::now_v7().to_string(), RESET, RETURN);
    assert_eq!(code(accounts.issue_token(unknown).await), Code::NotFound);
    let malformed = accounts.issue_token(issue("not-a-uuid", RESET, RETURN)).await.unwrap_err();
    assert_eq!(bad_request_fields(&malformed), ["account_id"]);
    let setup = accounts.issue_token(issue(&ada.account_id, SETUP, RETURN)).await;
    assert_eq!(code(setup), Code::FailedPrecondition, "setup for an account with a password");
    let bad_purpose = accounts.issue_token(issue(&ada.account_id, 9, RETURN)).await.unwrap_err();
    assert_eq!(bad_request_fields(&bad_purpose), ["purpose"]);
    let bad_delivery = accounts.issue_token(issue(&ada.account_id, RESET, 9)).await.unwrap_err();
    assert_eq!(bad_request_fields(&bad_delivery), ["delivery"]);

    for seconds in [59, -5, 30 * 24 * 3600 + 1] {
        let request = IssueTokenRequest {
            ttl: Some(prost_types::Duration { seconds, nanos: 0 }),
            ..issue(&ada.account_id, RESET, RETURN)
        };
        let status = accounts.issue_token(request).await.unwrap_err();
        assert_eq!(bad_request_fields(&status), ["ttl"], "ttl {seconds}s");
    }
    let request = IssueTokenRequest {
        ttl: Some(prost_types::Duration { seconds: 2 * 3600, nanos: 0 }),
        ..issue(&ada.account_id, RESET, RETURN)
    };
    let answer = accounts.issue_token(request).await.unwrap().into_inner();
    let expected = app.clock_now() + chrono::Duration::hours(2);
    assert_eq!(answer.expires_at.map(|t| t.seconds), Some(expected.timestamp()));
    app.clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(code(app.validate(&answer.token).await), Code::NotFound, "expired at its own ttl");

    accounts.set_active(SetActiveRequest { account_id: ada.account_id.clone(), active: false }).await.unwrap();
    let inactive = accounts.issue_token(issue(&ada.account_id, RESET, RETURN)).await;
    assert_eq!(code(inactive), Code::FailedPrecondition);
}

#[tokio::test]
async fn a_new_token_revokes_the_earlier_ones_of_its_purpose_and_confirm_revokes_all() {
    let app = TestApp::spawn().await;
    let mut events = app.subscribe(None).await;
    let ada = app.invite("ada@example.com").await;
    let setup = token_created(next_event(&mut events).await).token;
    let reset = app.issued(&ada.account_id, RESET).await;
    assert!(app.validate(&setup).await.is_ok(), "a reset does not revoke the invitation");
    let setup_again = app.issued(&ada.account_id, SETUP).await;
    assert_eq!(code(app.validate(&setup).await), Code::NotFound, "the new invitation revokes the old");
    assert!(app.validate(&reset).await.is_ok(), "an invitation does not revoke a reset");
    let reset_again = app.issued(&ada.account_id, RESET).await;
    assert_eq!(code(app.validate(&reset).await), Code::NotFound);
    app.confirm(&reset_again, STRONG).await.unwrap();
    assert_eq!(code(app.validate(&setup_again).await), Code::NotFound, "Confirm revokes every purpose");
    loop {
        if let Some(event::Kind::PasswordChanged(changed)) = next_event(&mut events).await.kind {
            assert_eq!(changed.reason, PasswordChangeReason::Reset as i32);
            break;
        }
    }
}

#[tokio::test]
async fn racing_issues_leave_exactly_one_live_token_of_the_purpose() {
    let app = TestApp::spawn().await;
    let ada = app.create_account("ada@example.com", Some(STRONG)).await;
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let mut accounts = app.accounts();
            let request = issue(&ada.account_id, RESET, RETURN);
            tokio::spawn(async move { accounts.issue_token(request).await.map(|r| r.into_inner().token) })
        })
        .collect();
    let mut tokens = Vec::new();
    for call in calls {
        tokens.push(call.await.unwrap().expect("every issue succeeds"));
    }
    let mut live = 0;
    for token in &tokens {
        if app.validate(token).await.is_ok() {
            live += 1;
        }
    }
    assert_eq!(live, 1, "{live} of 12 racing tokens are live");
}

#[tokio::test]
async fn change_password_sets_the_new_one_and_revokes_live_tokens() {
    let app = TestApp::spawn().await;
    let (account_id, token) = app.account_with_token("ada@example.com").await;
    let mut events = app.subscribe(None).await;
    app.accounts().change_password(change(&account_id, STRONG, OTHER_STRONG)).await.unwrap();
    let changed = password_changed(next_event(&mut events).await);
    assert_eq!(changed.reason, PasswordChangeReason::Change as i32);
    assert_eq!(changed.account_id, account_id);
    assert_eq!(code(app.validate(&token).await), Code::NotFound, "the live reset token is revoked");
    assert!(app.verify("ada@example.com", OTHER_STRONG).await);
    assert!(!app.verify("ada@example.com", STRONG).await);
    let account = app.get(&account_id).await.unwrap();
    assert_eq!(account.password_changed_at.map(|t| t.seconds), Some(app.clock_now().timestamp()));
}

#[tokio::test]
async fn change_password_refusals_name_their_field_and_reason() {
    let app = TestApp::spawn().await;
    let ada = app.create_account("ada@example.com", Some(STRONG)).await;
    let mut accounts = app.accounts();
    let wrong = accounts.change_password(change(&ada.account_id, OTHER_STRONG, OTHER_STRONG)).await.unwrap_err();
    assert_eq!(bad_request_fields(&wrong), ["current_password"]);
    assert_eq!(bad_request_reasons(&wrong), ["INCORRECT"]);
    let same = accounts.change_password(change(&ada.account_id, STRONG, STRONG)).await.unwrap_err();
    assert_eq!(bad_request_fields(&same), ["new_password"]);
    assert_eq!(bad_request_reasons(&same), ["SAME_AS_CURRENT"]);
    let short = accounts.change_password(change(&ada.account_id, STRONG, "short")).await.unwrap_err();
    assert_eq!(bad_request_fields(&short)[0], "new_password");
    assert!(bad_request_reasons(&short).contains(&"MIN_LENGTH".to_owned()), "{short:?}");
    assert!(app.verify("ada@example.com", STRONG).await, "nothing changed");

    let invited = app.invite("bob@example.com").await;
    let none = accounts.change_password(change(&invited.account_id, STRONG, OTHER_STRONG)).await.unwrap_err();
    assert_eq!(bad_request_reasons(&none), ["INCORRECT"], "an account without a password");
    let unknown = change(&uuid::Uuid::now_v7().to_string(), STRONG, OTHER_STRONG);
    assert_eq!(code(accounts.change_password(unknown).await), Code::NotFound);
    accounts.set_active(SetActiveRequest { account_id: ada.account_id.clone(), active: false }).await.unwrap();
    let inactive = accounts.change_password(change(&ada.account_id, STRONG, OTHER_STRONG)).await;
    assert_eq!(code(inactive), Code::FailedPrecondition);
}

#[tokio::test]
async fn change_password_is_under_the_same_lockout_as_verify_password() {
    let app = TestApp::spawn_with(|mut c| {
        c.limits = RateLimits {
            verify_failures: Some(FailureLimit { failures: 3, lockout: Duration::from_secs(900) }),
            ..RateLimits::default()
        };
        c
    })
    .await;
    let ada = app.create_account("ada@example.com", Some(STRONG)).await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut accounts = app.accounts();
            let request = change(&ada.account_id, OTHER_STRONG, "a brand new passphrase here");
            tokio::spawn(async move { accounts.change_password(request).await })
        })
        .collect();
    let (mut evaluated, mut locked) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Err(s) if s.code() == Code::InvalidArgument => evaluated += 1,
            Err(s) if s.code() == Code::ResourceExhausted => locked += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(evaluated <= 3, "{evaluated} of 20 racing guesses were evaluated");
    assert_eq!(evaluated + locked, 20);
    let right = app.accounts().change_password(change(&ada.account_id, STRONG, OTHER_STRONG)).await;
    assert_eq!(code(right), Code::ResourceExhausted, "locked even with the right password");
    let verify = app
        .accounts()
        .verify_password(pwreset::proto::VerifyPasswordRequest {
            email: "ada@example.com".into(),
            password: STRONG.into(),
        })
        .await;
    assert_eq!(code(verify), Code::ResourceExhausted, "one lockout for both RPCs");
}

#[tokio::test]
async fn racing_changes_with_the_right_password_let_exactly_one_win() {
    let app = TestApp::spawn().await;
    let ada = app.create_account("ada@example.com", Some(STRONG)).await;
    let candidates: Vec<String> = (0..6).map(|i| format!("{OTHER_STRONG} number {i}")).collect();
    let calls: Vec<_> = candidates
        .iter()
        .map(|new| {
            let mut accounts = app.accounts();
            let request = change(&ada.account_id, STRONG, new);
            tokio::spawn(async move { accounts.change_password(request).await })
        })
        .collect();
    let mut winners = Vec::new();
    for (call, new) in calls.into_iter().zip(&candidates) {
        match call.await.unwrap() {
            Ok(_) => winners.push(new.clone()),
            // Lost the race: either checked against the winner's new hash, or its write
            // found the hash changed.
            Err(s) => assert!(matches!(s.code(), Code::Aborted | Code::InvalidArgument), "{s:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{} racing changes succeeded", winners.len());
    assert!(app.verify("ada@example.com", &winners[0]).await);
}

#[tokio::test]
async fn get_account_by_id_or_email() {
    let app = TestApp::spawn().await;
    let ada = app.create_account("ada@example.com", Some(STRONG)).await;
    assert!(ada.password_changed_at.is_some(), "created with a password");
    assert_eq!(app.get(&ada.account_id).await.unwrap(), ada);
    let key = Some(get_account_request::Key::Email("ADA@example.com ".into()));
    assert_eq!(app.accounts().get_account(GetAccountRequest { key }).await.unwrap().into_inner(), ada);
    assert_eq!(code(app.get(&uuid::Uuid::now_v7().to_string()).await), Code::NotFound);
    let none = app.accounts().get_account(GetAccountRequest { key: None }).await.unwrap_err();
    assert_eq!(bad_request_fields(&none), ["key"]);
}

#[tokio::test]
async fn revoke_tokens_by_purpose_or_all() {
    let app = TestApp::spawn().await;
    let mut events = app.subscribe(None).await;
    let ada = app.invite("ada@example.com").await;
    let setup = token_created(next_event(&mut events).await).token;
    let reset = app.issued(&ada.account_id, RESET).await;
    // Both cached by this replica now: revocation must reach the cache.
    assert!(app.validate(&setup).await.is_ok() && app.validate(&reset).await.is_ok());
    assert_eq!(app.revoke(&ada.account_id, SETUP).await.unwrap(), 1);
    assert_eq!(code(app.validate(&setup).await), Code::NotFound);
    assert!(app.validate(&reset).await.is_ok(), "another purpose stays live");
    assert_eq!(app.revoke(&ada.account_id, 0).await.unwrap(), 1, "UNSPECIFIED revokes every purpose");
    assert_eq!(code(app.validate(&reset).await), Code::NotFound);
    assert_eq!(app.revoke(&ada.account_id, 0).await.unwrap(), 0);
    assert_eq!(code(app.revoke(&uuid::Uuid::now_v7().to_string(), 0).await), Code::NotFound);
    assert_eq!(code(app.confirm(&reset, STRONG).await), Code::NotFound);
}

#[tokio::test]
async fn a_revocation_reaches_another_replicas_cache() {
    if !app_is_postgres() {
        return; // Replicas share PostgreSQL; on SQLite there is one process.
    }
    let app = TestApp::spawn().await;
    let replica = app.sibling(|c| c).await;
    let ada = app.create_account("ada@example.com", Some(STRONG)).await;
    let token = app.issued(&ada.account_id, RESET).await;
    assert!(replica.validate(&token).await.is_ok(), "cached by the replica");
    let newer = app.issued(&ada.account_id, RESET).await;
    eventually("the replica drops the token a RETURN issue revoked", || async {
        replica.validate(&token).await.is_err()
    })
    .await;
    assert!(replica.validate(&newer).await.is_ok());
    app.revoke(&ada.account_id, 0).await.unwrap();
    eventually("the replica drops the revoked token", || async { replica.validate(&newer).await.is_err() }).await;
}

#[tokio::test]
async fn the_new_rpcs_need_the_accounts_role() {
    const RESET_KEY: &str = "reset-key-0123456789";
    const ACCOUNTS_KEY: &str = "accounts-key-0123456789";
    let app = TestApp::spawn_with(|mut c| {
        c.server.caller_keys = [("reset", RESET_KEY), ("accounts", ACCOUNTS_KEY)]
            .iter()
            .map(|(role, key)| format!("{role}={key}").parse::<CallerKey>().unwrap())
            .collect();
        c
    })
    .await;
    let id = uuid::Uuid::now_v7().to_string();
    let mut accounts = app.accounts();
    let with = |key| with_key(issue(&id, RESET, RETURN), key);
    assert_eq!(code(accounts.issue_token(with(RESET_KEY)).await), Code::PermissionDenied);
    assert_eq!(code(accounts.issue_token(issue(&id, RESET, RETURN)).await), Code::Unauthenticated);
    assert_eq!(code(accounts.issue_token(with(ACCOUNTS_KEY)).await), Code::NotFound, "authorised, unknown id");
    let revoke = RevokeTokensRequest { account_id: id.clone(), purpose: 0 };
    assert_eq!(code(accounts.revoke_tokens(with_key(revoke, RESET_KEY)).await), Code::PermissionDenied);
    let get = GetAccountRequest { key: Some(get_account_request::Key::AccountId(id.clone())) };
    assert_eq!(code(accounts.get_account(with_key(get, RESET_KEY)).await), Code::PermissionDenied);
    let changing = change(&id, STRONG, OTHER_STRONG);
    assert_eq!(code(accounts.change_password(with_key(changing, RESET_KEY)).await), Code::PermissionDenied);
}
