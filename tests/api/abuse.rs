//! Abuse resistance: per-account caps, the VerifyPassword guard, the hashing queue.

use std::time::Duration;

use pwreset::domain::runtime::guard::FailureLimit;
use pwreset::domain::runtime::limits::RateLimits;
use pwreset::proto::{RequestTokenRequest, ValidateTokenRequest, VerifyPasswordRequest};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

use crate::helpers::*;

#[tokio::test]
async fn the_per_account_token_cap_is_silent() {
    let app = TestApp::spawn_with(|mut c| {
        c.limits = RateLimits { account_tokens: "2/1h".parse().ok(), ..RateLimits::default() };
        c
    })
    .await;
    app.account_with_token("ada@example.com").await;
    let second = app.new_token("ada@example.com").await;

    // Over the cap: the same answer, but no token and no event, and the latest token
    // stays live. Restarting waits for the work left after the reply.
    app.request_token("ada@example.com").await.expect("answers OK over the cap");
    let app = app.restart().await;
    app.reset()
        .validate_token(ValidateTokenRequest { token: second.clone(), ..Default::default() })
        .await
        .expect("still live");
    app.create_account("marker@example.com", Some(STRONG)).await;
    app.request_token("marker@example.com").await.unwrap();
    let mut all = app.subscribe(Some(0)).await;
    let mut for_ada = 0;
    loop {
        let created = token_created(next_event(&mut all).await);
        if created.email == "marker@example.com" {
            break;
        }
        for_ada += 1;
    }
    assert_eq!(for_ada, 2, "nothing was created for the capped request");

    app.clock.advance(Duration::from_secs(3600));
    assert_ne!(app.new_token("ada@example.com").await, second, "the cap frees up after its period");
}

#[tokio::test]
async fn verify_password_locks_any_address_after_consecutive_failures() {
    let app = TestApp::spawn_with(|mut c| {
        c.limits = RateLimits {
            verify_failures: Some(FailureLimit { failures: 3, lockout: Duration::from_secs(900) }),
            ..RateLimits::default()
        };
        c
    })
    .await;
    app.create_account("ada@example.com", Some(STRONG)).await;
    let attempt =
        |email: &str, password: &str| VerifyPasswordRequest { email: email.into(), password: password.into() };
    let mut locked = Vec::new();
    for email in ["ada@example.com", "nobody@example.com"] {
        for _ in 0..3 {
            let answer = app.accounts().verify_password(attempt(email, OTHER_STRONG)).await.unwrap();
            assert!(!answer.into_inner().valid);
        }
        let status = app.accounts().verify_password(attempt(email, STRONG)).await.unwrap_err();
        assert!(status.get_details_retry_info().is_some());
        locked.push((status.code(), status.message().to_owned()));
    }
    assert_eq!(locked[0], locked[1], "an existing and an unknown address look the same when locked");
    assert_eq!(locked[0].0, Code::ResourceExhausted);

    app.clock.advance(Duration::from_secs(900));
    assert!(app.verify("ada@example.com", STRONG).await, "unlocked after the lockout");
}

#[tokio::test]
async fn a_full_hashing_queue_answers_at_once_and_the_server_stays_healthy() {
    let app = TestApp::spawn_with(|mut c| {
        // One worker, one waiting job, hashes slow enough that concurrent calls overlap.
        c.hasher.workers = 1;
        c.hasher.queue_depth = 1;
        c.hasher.params = argon2::Params::new(32 * 1024, 3, 1, None).unwrap();
        c
    })
    .await;
    app.create_account("ada@example.com", None).await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let mut client = app.accounts();
        calls.spawn(async move {
            client
                .verify_password(VerifyPasswordRequest { email: "ada@example.com".into(), password: STRONG.into() })
                .await
        });
    }
    let (mut answered, mut busy) = (0, 0);
    while let Some(result) = calls.join_next().await {
        match result.unwrap() {
            Ok(_) => answered += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.get_details_retry_info().is_some());
                busy += 1;
            }
        }
    }
    assert!(answered >= 1 && busy >= 1, "answered {answered}, refused {busy}");
    let health = HealthClient::new(app.channel.clone()).check(HealthCheckRequest { service: String::new() }).await;
    assert_eq!(health.unwrap().into_inner().status, 1, "SERVING");
    assert!(!app.verify("ada@example.com", STRONG).await, "and it answers again");
}

#[tokio::test]
async fn per_ip_limits_reset_as_the_clock_moves() {
    let app = TestApp::spawn_with(|mut c| {
        c.limits = RateLimits { request_token: "1/10m".parse().ok(), ..RateLimits::default() };
        c
    })
    .await;
    let request = || {
        with_ip(
            RequestTokenRequest { email: "a@example.com".into(), locale: String::new(), ..Default::default() },
            "192.0.2.1",
        )
    };
    app.reset().request_token(request()).await.unwrap();
    assert_eq!(app.reset().request_token(request()).await.unwrap_err().code(), Code::ResourceExhausted);
    app.clock.advance(Duration::from_secs(600));
    app.reset().request_token(request()).await.expect("allowed again after the period");
}

#[tokio::test]
async fn errors_carry_no_hint_of_whether_an_account_exists() {
    let app = TestApp::spawn().await;
    app.create_account("ada@example.com", Some(STRONG)).await;
    for email in ["ada@example.com", "nobody@example.com"] {
        let status = app
            .reset()
            .request_token(RequestTokenRequest {
                email: email.into(),
                locale: "bad locale!".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.message(), "locale: must be a BCP 47 tag such as en-GB");
        assert_eq!(bad_request_fields(&status), ["locale"]);
    }
}

/// Keeps the token writer from finishing: holds SQLite's write lock, or on PostgreSQL
/// the outbox lock, on a connection of its own until `COMMIT` / unlock.
pub async fn stall_the_writer(app: &TestApp) -> sea_orm::DatabaseConnection {
    use sea_orm::ConnectionTrait;
    let mut options = sea_orm::ConnectOptions::new(app.db.url().to_owned());
    options.max_connections(1).min_connections(1);
    let db = sea_orm::Database::connect(options).await.unwrap();
    let hold = if app_is_postgres() {
        format!("SELECT pg_advisory_lock({})", pwreset::store::OUTBOX_LOCK_KEY)
    } else {
        "BEGIN IMMEDIATE".to_owned()
    };
    db.execute_unprepared(&hold).await.unwrap();
    db
}

pub async fn release_the_writer(db: sea_orm::DatabaseConnection) {
    use sea_orm::ConnectionTrait;
    let release = if app_is_postgres() {
        format!("SELECT pg_advisory_unlock({})", pwreset::store::OUTBOX_LOCK_KEY)
    } else {
        "COMMIT".to_owned()
    };
    db.execute_unprepared(&release).await.unwrap();
    db.close().await.unwrap();
}

#[tokio::test]
async fn reset_requests_beyond_those_in_flight_wait_for_room_then_are_refused_alike() {
    let one_in_flight = |wait: Duration| {
        move |mut c: pwreset::Config| {
            c.limits.max_pending_resets = 1;
            c.limits.reset_queue_wait = wait;
            c
        }
    };
    // Two replicas on one database: `patient` waits up to 10 s for room, `hasty` 50 ms.
    let patient = TestApp::spawn_with(one_in_flight(Duration::from_secs(10))).await;
    let hasty = patient.sibling(one_in_flight(Duration::from_millis(50))).await;
    patient.create_account("ada@example.com", Some(STRONG)).await;
    let mut events = patient.subscribe(None).await;
    let stalled = stall_the_writer(&patient).await;

    // Accepted: each holds its replica's one place until the writer has written it, and
    // is answered only then (an OK means committed).
    let ask = |app: &TestApp, email: &'static str| {
        let mut client = app.reset();
        tokio::spawn(async move {
            client
                .request_token(RequestTokenRequest { email: email.into(), locale: String::new(), ..Default::default() })
                .await
        })
    };
    let mut first = ask(&patient, "ada@example.com");
    let mut second = ask(&hasty, "ada@example.com");
    for pending in [&mut first, &mut second] {
        assert!(tokio::time::timeout(Duration::from_millis(200), pending).await.is_err(), "answered before commit");
    }
    for email in ["ada@example.com", "nobody@example.com"] {
        let status = hasty.request_token(email).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{email}: {status:?}");
        assert!(status.get_details_retry_info().is_some());
    }
    let mut waiting = ask(&patient, "nobody@example.com");
    // Not answered while there is no room (a refusal would come at once).
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut waiting).await.is_err());

    release_the_writer(stalled).await;
    first.await.unwrap().expect("committed once the writer could write");
    second.await.unwrap().expect("committed once the writer could write");
    waiting.await.unwrap().expect("it waited for room rather than being refused");
    for _ in 0..2 {
        assert_eq!(token_created(next_event(&mut events).await).email, "ada@example.com");
    }
}
