//! PasswordResetService: RequestToken, ValidateToken, Confirm.

use std::time::Duration;

use prost::Message;
use pwreset::domain::runtime::limits::RateLimits;
use pwreset::proto::{
    ConfirmRequest, RequestTokenRequest, RequestTokenResponse, SetActiveRequest, ValidateTokenRequest,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

fn validate(token: &str) -> ValidateTokenRequest {
    ValidateTokenRequest { token: token.into(), ..Default::default() }
}

fn confirm(token: &str, password: &str) -> ConfirmRequest {
    ConfirmRequest { token: token.into(), new_password: password.into(), ..Default::default() }
}

#[tokio::test]
async fn a_real_account_gets_a_token_through_the_event_stream() {
    let app = TestApp::spawn().await;
    let account = app.create_account("ada@example.com", Some(STRONG)).await;
    let mut events = app.subscribe(None).await;
    let mut request = with_ip(
        RequestTokenRequest { email: " Ada@Example.com ".into(), locale: "fr-CA".into(), ..Default::default() },
        "203.0.113.9",
    );
    request.metadata_mut().insert("x-forwarded-user-agent", "Firefox/140".parse().unwrap());
    app.reset().request_token(request).await.unwrap();

    let event = next_event(&mut events).await;
    assert!(event.sequence > 0);
    let created = token_created(event);
    assert_eq!(created.account_id, account.account_id);
    assert_eq!(created.email, "ada@example.com");
    assert_eq!(created.token.len(), 43, "32 random bytes, base64url");
    assert_eq!(
        (created.client_ip.as_str(), created.user_agent.as_str(), created.locale.as_str()),
        ("203.0.113.9", "Firefox/140", "fr-CA")
    );

    let valid = app.reset().validate_token(validate(&created.token)).await.unwrap().into_inner();
    let expires = valid.expires_at.unwrap();
    let expected = app.clock_now() + chrono::Duration::minutes(30);
    assert!((expires.seconds - expected.timestamp()).abs() <= 1);
    assert_eq!(Some(expires), created.expires_at);
}

#[tokio::test]
async fn unknown_inactive_passwordless_and_real_accounts_look_the_same() {
    let app = TestApp::spawn().await;
    app.create_account("real@example.com", Some(STRONG)).await;
    let inactive = app.create_account("inactive@example.com", Some(STRONG)).await;
    app.accounts().set_active(SetActiveRequest { account_id: inactive.account_id, active: false }).await.unwrap();
    app.create_account("nopassword@example.com", None).await;
    let mut events = app.subscribe(None).await;

    let mut answers = Vec::new();
    for email in ["unknown@example.com", "inactive@example.com", "nopassword@example.com", "real@example.com"] {
        let response = app
            .reset()
            .request_token(RequestTokenRequest { email: email.into(), locale: String::new(), ..Default::default() })
            .await;
        let response = response.unwrap_or_else(|s| panic!("{email}: {s:?}"));
        answers.push(response.into_inner().encode_to_vec());
    }
    assert!(answers.iter().all(|a| *a == RequestTokenResponse {}.encode_to_vec()), "same bytes for every address");
    // Only the real account produced an event: it is the first one on the stream.
    assert_eq!(token_created(next_event(&mut events).await).email, "real@example.com");
}

/// The answer floor counts from each request's arrival and holds for every address,
/// alone or racing others (a lower bound: when the server answers is the guarantee).
#[tokio::test]
async fn no_reset_answer_comes_before_the_floor() {
    const FLOOR: Duration = Duration::from_millis(40);
    let app = TestApp::spawn_with(|mut c| {
        c.limits.reset_answer_floor = FLOOR;
        c
    })
    .await;
    app.create_account("real@example.com", Some(STRONG)).await;
    let timed = |email: &'static str| {
        let mut client = app.reset();
        async move {
            let sent = pwreset::domain::runtime::clock::monotonic();
            let request = RequestTokenRequest { email: email.into(), ..Default::default() };
            client.request_token(request).await.unwrap();
            (email, sent.elapsed())
        }
    };
    for email in ["real@example.com", "unknown@example.com"] {
        let (_, took) = timed(email).await;
        assert!(took >= FLOOR, "{email} answered after {took:?}");
    }
    let mut racing = tokio::task::JoinSet::new();
    for email in ["real@example.com", "unknown@example.com"].repeat(10) {
        racing.spawn(timed(email));
    }
    while let Some(answered) = racing.join_next().await {
        let (email, took) = answered.unwrap();
        assert!(took >= FLOOR, "{email} answered after {took:?}");
    }
}

#[tokio::test]
async fn accounts_without_a_usable_password_may_reset_when_configured() {
    let app = TestApp::spawn_with(|mut c| {
        c.tokens.allow_without_usable_password = true;
        c
    })
    .await;
    app.create_account("invited@example.com", None).await;
    let mut events = app.subscribe(None).await;
    app.request_token("invited@example.com").await.unwrap();
    let token = token_created(next_event(&mut events).await).token;
    app.reset().confirm(confirm(&token, STRONG)).await.unwrap();
    assert!(app.verify("invited@example.com", STRONG).await);
}

#[tokio::test]
async fn malformed_and_oversized_emails_are_invalid_arguments() {
    let app = TestApp::spawn().await;
    for email in ["", "not-an-email", "a@b", &format!("{}@example.com", "a".repeat(300))] {
        let status = app.request_token(email).await.unwrap_err();
        assert_eq!(bad_request_fields(&status), ["email"], "{email:?}");
    }
    let status = app
        .reset()
        .request_token(RequestTokenRequest {
            email: "ada@example.com".into(),
            locale: "x".repeat(100),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&status), ["locale"]);
}

#[tokio::test]
async fn empty_and_oversized_tokens_are_invalid_arguments() {
    let app = TestApp::spawn().await;
    for token in [String::new(), "x".repeat(257)] {
        let status = app.reset().validate_token(validate(&token)).await.unwrap_err();
        assert_eq!(bad_request_fields(&status), ["token"]);
        let status = app.reset().confirm(confirm(&token, STRONG)).await.unwrap_err();
        assert_eq!(bad_request_fields(&status), ["token"]);
    }
}

#[tokio::test]
async fn confirm_sets_the_password_and_the_token_is_single_use() {
    let app = TestApp::spawn().await;
    let (account_id, token) = app.account_with_token("ada@example.com").await;
    let mut events = app.subscribe(None).await;

    app.reset().confirm(with_ip(confirm(&token, OTHER_STRONG), "198.51.100.4")).await.unwrap();

    assert!(app.verify("ada@example.com", OTHER_STRONG).await);
    assert!(!app.verify("ada@example.com", STRONG).await);
    let changed = password_changed(next_event(&mut events).await);
    assert_eq!((changed.account_id.as_str(), changed.email.as_str()), (account_id.as_str(), "ada@example.com"));
    assert_eq!(changed.client_ip, "198.51.100.4");

    let again = app.reset().confirm(confirm(&token, STRONG)).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    let status = app.reset().validate_token(validate(&token)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn unknown_expired_used_and_revoked_tokens_get_one_identical_not_found() {
    let app = TestApp::spawn().await;
    let (_, used) = app.account_with_token("used@example.com").await;
    app.reset().confirm(confirm(&used, OTHER_STRONG)).await.unwrap();
    let (_, revoked) = app.account_with_token("revoked@example.com").await;
    app.new_token("revoked@example.com").await;
    let (_, expired) = app.account_with_token("expired@example.com").await;
    app.clock.advance(Duration::from_secs(30 * 60 + 1));

    let mut seen = Vec::new();
    for token in ["no-such-token", used.as_str(), revoked.as_str(), expired.as_str()] {
        let status = app.reset().validate_token(validate(token)).await.unwrap_err();
        seen.push((status.code(), status.message().to_owned(), status.details().to_vec()));
    }
    assert_eq!(seen[0].0, Code::NotFound);
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
}

#[tokio::test]
async fn a_token_expires_after_its_ttl() {
    let app = TestApp::spawn_with(|mut c| {
        c.tokens.ttl = Duration::from_secs(600);
        c
    })
    .await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    app.clock.advance(Duration::from_secs(599));
    app.reset().validate_token(validate(&token)).await.expect("live just before expiry");
    app.clock.advance(Duration::from_secs(1));
    let status = app.reset().confirm(confirm(&token, OTHER_STRONG)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(app.verify("ada@example.com", STRONG).await, "password unchanged");
}

#[tokio::test]
async fn a_new_request_revokes_the_earlier_token() {
    let app = TestApp::spawn().await;
    let (_, first) = app.account_with_token("ada@example.com").await;
    let mut events = app.subscribe(None).await;
    app.request_token("ada@example.com").await.unwrap();
    let second = token_created(next_event(&mut events).await).token;
    assert_ne!(first, second);
    assert_eq!(app.reset().validate_token(validate(&first)).await.unwrap_err().code(), Code::NotFound);
    app.reset().validate_token(validate(&second)).await.expect("newest token is live");
}

#[tokio::test]
async fn deactivation_revokes_tokens_and_reactivation_does_not_restore_them() {
    let app = TestApp::spawn().await;
    let (account_id, token) = app.account_with_token("ada@example.com").await;
    app.accounts().set_active(SetActiveRequest { account_id: account_id.clone(), active: false }).await.unwrap();
    assert_eq!(app.reset().validate_token(validate(&token)).await.unwrap_err().code(), Code::NotFound);
    app.accounts().set_active(SetActiveRequest { account_id, active: true }).await.unwrap();
    assert_eq!(app.reset().validate_token(validate(&token)).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(app.reset().confirm(confirm(&token, OTHER_STRONG)).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn weak_password_is_rejected_and_the_token_stays_usable() {
    let app = TestApp::spawn().await;
    let (_, token) = app.account_with_token("ada.lovelace@example.com").await;
    let status = app.reset().confirm(confirm(&token, "short")).await.unwrap_err();
    assert_eq!(bad_request_fields(&status), ["new_password", "new_password"]);
    assert_eq!(bad_request_reasons(&status), ["MIN_LENGTH", "TOO_GUESSABLE"]);

    let status = app.reset().confirm(confirm(&token, "ada.lovelace-1815-x9!Qz")).await.unwrap_err();
    assert_eq!(bad_request_reasons(&status), ["CONTAINS_EMAIL"]);

    app.reset().validate_token(validate(&token)).await.expect("token is still live");
    app.reset().confirm(confirm(&token, OTHER_STRONG)).await.expect("and still exchangeable");
}

#[tokio::test]
async fn oversized_password_is_rejected_and_the_token_stays_usable() {
    let app = TestApp::spawn().await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    for password in ["x".repeat(129), "y".repeat(2000)] {
        let status = app.reset().confirm(confirm(&token, &password)).await.unwrap_err();
        assert_eq!(bad_request_fields(&status), ["new_password"]);
        assert_eq!(bad_request_reasons(&status), ["MAX_LENGTH"]);
    }
    app.reset().validate_token(validate(&token)).await.expect("token is still live");
}

#[tokio::test]
async fn composed_and_decomposed_passwords_are_the_same_password() {
    let app = TestApp::spawn().await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    let decomposed = "cre\u{300}me bru\u{302}le\u{301}e pour quatorze";
    let composed = "cr\u{e8}me br\u{fb}l\u{e9}e pour quatorze";
    app.reset().confirm(confirm(&token, decomposed)).await.unwrap();
    assert!(app.verify("ada@example.com", composed).await);
    assert!(app.verify("ada@example.com", decomposed).await);
}

#[tokio::test]
async fn of_two_racing_confirms_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    let (mut a, mut b) = (app.reset(), app.reset());
    let (ra, rb) =
        tokio::join!(a.confirm(confirm(&token, STRONG.repeat(2).as_str())), b.confirm(confirm(&token, OTHER_STRONG)));
    let codes = [
        ra.as_ref().map(|_| Code::Ok).unwrap_or_else(|s| s.code()),
        rb.as_ref().map(|_| Code::Ok).unwrap_or_else(|s| s.code()),
    ];
    let mut sorted = codes;
    sorted.sort_by_key(|c| *c as i32);
    assert_eq!(sorted, [Code::Ok, Code::NotFound], "{ra:?} {rb:?}");
    let winner = if ra.is_ok() { STRONG.repeat(2) } else { OTHER_STRONG.to_owned() };
    assert!(app.verify("ada@example.com", &winner).await, "the winner's password is the one stored");
}

#[tokio::test]
async fn rate_limits_trip_per_client_ip_with_retry_info() {
    let app = TestApp::spawn_with(|mut c| {
        c.limits = RateLimits {
            request_token: "2/1h".parse().ok(),
            validate_token: "1/1h".parse().ok(),
            ..RateLimits::default()
        };
        c
    })
    .await;
    let request =
        || RequestTokenRequest { email: "someone@example.com".into(), locale: String::new(), ..Default::default() };
    for _ in 0..2 {
        app.reset().request_token(with_ip(request(), "192.0.2.1")).await.unwrap();
    }
    let status = app.reset().request_token(with_ip(request(), "192.0.2.1")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = status.get_details_retry_info().and_then(|r| r.retry_delay).expect("RetryInfo");
    assert!(retry > Duration::from_secs(60) && retry <= Duration::from_secs(1800), "{retry:?}");
    app.reset().request_token(with_ip(request(), "192.0.2.2")).await.expect("another address is unaffected");

    app.reset().validate_token(with_ip(validate("t"), "192.0.2.1")).await.unwrap_err();
    let status = app.reset().validate_token(with_ip(validate("t"), "192.0.2.1")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}
