//! The README's guarantees against a hostile caller and racing requests: each test is
//! the attack, and fails if its defence is taken away.

use std::collections::HashSet;
use std::time::Duration;

use pwreset::domain::runtime::guard::FailureLimit;
use pwreset::domain::runtime::limits::RateLimits;
use pwreset::proto::{ConfirmRequest, SetActiveRequest, ValidateTokenRequest, VerifyPasswordRequest, event};
use pwreset::store::entity::{accounts, events};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::*;

fn locking_after(failures: u32) -> impl FnOnce(pwreset::Config) -> pwreset::Config {
    move |mut c| {
        c.limits = RateLimits {
            verify_failures: Some(FailureLimit { failures, lockout: Duration::from_secs(900) }),
            ..RateLimits::default()
        };
        c
    }
}

fn guess(email: &str) -> VerifyPasswordRequest {
    VerifyPasswordRequest { email: email.into(), password: OTHER_STRONG.into() }
}

async fn db(app: &TestApp) -> sea_orm::DatabaseConnection {
    sea_orm::Database::connect(app.db.url()).await.unwrap()
}

#[tokio::test]
async fn concurrent_wrong_passwords_are_evaluated_at_most_up_to_the_limit() {
    let app = TestApp::spawn_with(locking_after(10)).await;
    app.create_account("ada@example.com", Some(STRONG)).await;
    let calls: Vec<_> = (0..60)
        .map(|_| {
            let mut client = app.accounts();
            tokio::spawn(async move { client.verify_password(guess("ada@example.com")).await })
        })
        .collect();
    let (mut evaluated, mut refused) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(answer) => {
                assert!(!answer.into_inner().valid);
                evaluated += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                refused += 1;
            }
        }
    }
    assert!(evaluated <= 10, "{evaluated} of 60 concurrent guesses were evaluated");
    assert_eq!(evaluated + refused, 60);
}

#[tokio::test]
async fn the_lockout_holds_across_replicas() {
    let a = TestApp::spawn_with(locking_after(3)).await;
    let b = a.sibling(|c| c).await;
    a.create_account("ada@example.com", Some(STRONG)).await;
    for _ in 0..3 {
        assert!(!a.accounts().verify_password(guess("ada@example.com")).await.unwrap().into_inner().valid);
    }
    let status = b.accounts().verify_password(guess("ada@example.com")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "the other replica saw the failures");
}

#[tokio::test]
async fn a_completed_reset_clears_the_lockout() {
    let app = TestApp::spawn_with(locking_after(3)).await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    for _ in 0..3 {
        app.accounts().verify_password(guess("ada@example.com")).await.unwrap();
    }
    assert_eq!(
        app.accounts().verify_password(guess("ada@example.com")).await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    app.reset()
        .confirm(ConfirmRequest { token, new_password: OTHER_STRONG.into(), ..Default::default() })
        .await
        .unwrap();
    assert!(app.verify("ada@example.com", OTHER_STRONG).await, "the owner proved control by resetting");
}

#[tokio::test]
async fn no_ok_is_given_before_the_token_and_its_event_are_committed() {
    let app = TestApp::spawn().await;
    app.create_account("ada@example.com", Some(STRONG)).await;
    let stalled = crate::abuse::stall_the_writer(&app).await;
    let mut client = app.reset();
    let mut request = tokio::spawn(async move {
        client
            .request_token(pwreset::proto::RequestTokenRequest {
                email: "ada@example.com".into(),
                ..Default::default()
            })
            .await
    });
    // While nothing can commit, no answer may come (an OK now could be lost to a crash).
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut request).await.is_err(), "answered before commit");
    crate::abuse::release_the_writer(stalled).await;
    request.await.unwrap().expect("OK once committed");
    // Straight from the database, with nothing waited for after the answer.
    let db = db(&app).await;
    let created = events::Entity::find()
        .filter(events::Column::Kind.eq(pwreset::domain::model::event::EventKind::TokenCreated.code()))
        .filter(events::Column::Email.eq("ada@example.com"))
        .all(&db)
        .await
        .unwrap();
    assert_eq!(created.len(), 1, "the answered request's event is committed");
}

#[tokio::test]
async fn a_token_of_an_inactive_account_is_refused_even_if_it_was_never_revoked() {
    let app = TestApp::spawn().await;
    let (account_id, token) = app.account_with_token("ada@example.com").await;
    // Flip the flag behind the service's back, so only the active check can refuse it;
    // a replica that has not cached the token answers from the database.
    let db = db(&app).await;
    accounts::Entity::update_many()
        .col_expr(accounts::Column::Active, Expr::value(false))
        .filter(accounts::Column::Id.eq(uuid::Uuid::parse_str(&account_id).unwrap()))
        .exec(&db)
        .await
        .unwrap();
    let replica = app.sibling(|c| c).await;
    let status = replica
        .reset()
        .validate_token(ValidateTokenRequest { token: token.clone(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = replica
        .reset()
        .confirm(ConfirmRequest { token, new_password: OTHER_STRONG.into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn a_deactivation_racing_requests_leaves_no_token_that_reactivation_revives() {
    let app = TestApp::spawn().await;
    let account = app.create_account("ada@example.com", Some(STRONG)).await;
    let set = |active: bool| SetActiveRequest { account_id: account.account_id.clone(), active };
    for _ in 0..15 {
        app.accounts().set_active(set(true)).await.unwrap();
        let mut requester = app.reset();
        let request = tokio::spawn(async move {
            requester
                .request_token(pwreset::proto::RequestTokenRequest {
                    email: "ada@example.com".into(),
                    ..Default::default()
                })
                .await
        });
        app.accounts().set_active(set(false)).await.unwrap();
        request.await.unwrap().unwrap();
    }
    app.accounts().set_active(set(true)).await.unwrap();
    // A marker after everything, so the replay below has a known end.
    app.create_account("marker@example.com", Some(STRONG)).await;
    app.request_token("marker@example.com").await.unwrap();
    let mut all = app.subscribe(Some(0)).await;
    loop {
        let Some(event::Kind::TokenCreated(created)) = next_event(&mut all).await.kind else { continue };
        if created.email == "marker@example.com" {
            break;
        }
        if created.token.is_empty() {
            continue;
        }
        let status = app
            .reset()
            .validate_token(ValidateTokenRequest { token: created.token, ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "a token survived the deactivation");
    }
}

#[tokio::test]
async fn reports_for_an_unknown_address_are_capped_like_tokens() {
    let app = TestApp::spawn_with(|mut c| {
        c.events.emit_unknown_account_events = true;
        c.limits = RateLimits { account_tokens: "2/1h".parse().ok(), ..RateLimits::default() };
        c
    })
    .await;
    for _ in 0..5 {
        app.request_token("victim@example.com").await.expect("same answer over the cap");
    }
    app.create_account("marker@example.com", Some(STRONG)).await;
    app.request_token("marker@example.com").await.unwrap();
    let mut all = app.subscribe(Some(0)).await;
    let mut reports = 0;
    loop {
        match next_event(&mut all).await.kind {
            Some(event::Kind::ResetRequestedForUnknownEmail(r)) => {
                assert_eq!(r.email, "victim@example.com");
                reports += 1;
            }
            Some(event::Kind::TokenCreated(t)) if t.email == "marker@example.com" => break,
            _ => {}
        }
    }
    assert_eq!(reports, 2, "the notifier is asked to mail the address at most twice an hour");
}

#[tokio::test]
async fn a_token_event_whose_recipient_was_edited_in_the_database_carries_no_token() {
    let app = TestApp::spawn().await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    let db = db(&app).await;
    events::Entity::update_many()
        .col_expr(events::Column::Email, Expr::value("eve@example.com"))
        .filter(events::Column::Email.eq("ada@example.com"))
        .exec(&db)
        .await
        .unwrap();
    let replica = app.sibling(|c| c).await;
    let created = token_created(next_event(&mut replica.subscribe(Some(0)).await).await);
    assert_eq!(created.email, "eve@example.com");
    assert!(created.token.is_empty(), "the sealed token must not open for another recipient");
    // The untouched row still delivers for its real recipient.
    assert!(!token.is_empty());
}

#[tokio::test]
async fn metrics_label_only_served_methods() {
    let app = TestApp::spawn_with(|mut c| {
        c.server.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c
    })
    .await;
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    for n in 0..300 {
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::try_from(format!("/junk{n}.Svc{n}/Method{n}")).unwrap();
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let status = grpc.unary(tonic::Request::new(()), path, codec).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
    }
    let body = crate::operate::scrape(&app).await;
    assert!(!body.contains("junk"), "caller-chosen paths became label values");
    assert!(body.contains(r#"grpc_service="unknown",grpc_method="unknown",grpc_code="Unimplemented""#), "{body}");
}

#[tokio::test]
async fn shutdown_ends_open_health_watch_streams() {
    let app = TestApp::spawn_with(|mut c| {
        // Far beyond the test's 10 s bound on shutdown: only ending the stream passes.
        c.server.shutdown_grace = Duration::from_secs(120);
        c
    })
    .await;
    let mut watch = HealthClient::new(app.channel.clone())
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().expect("the current status");
    app.shutdown().await;
}

#[tokio::test]
async fn forwarded_addresses_from_an_untrusted_peer_do_not_open_fresh_buckets() {
    let app = TestApp::spawn_with(|mut c| {
        c.limits = RateLimits { validate_token: "5/1h".parse().ok(), ..RateLimits::default() };
        c.clients.trusted_proxies = Vec::new();
        c
    })
    .await;
    let mut refused = 0;
    for n in 0..20 {
        let request = with_ip(
            ValidateTokenRequest { token: format!("guess-{n:06}"), ..Default::default() },
            &format!("203.0.113.{n}"),
        );
        match app.reset().validate_token(request).await.unwrap_err().code() {
            Code::NotFound => {}
            Code::ResourceExhausted => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(refused, 15, "one peer, one bucket, whatever x-forwarded-for says");
}

/// ValidateToken with a junk token over `channel`: `NotFound`, or `ResourceExhausted`
/// over the limit.
async fn probe(channel: &tonic::transport::Channel, forwarded_for: Option<&str>) -> Code {
    let mut request = tonic::Request::new(ValidateTokenRequest { token: "guess-000000".into(), ..Default::default() });
    if let Some(ip) = forwarded_for {
        request.metadata_mut().insert("x-forwarded-for", ip.parse().unwrap());
    }
    pwreset::proto::password_reset_service_client::PasswordResetServiceClient::new(channel.clone())
        .validate_token(request)
        .await
        .unwrap_err()
        .code()
}

#[tokio::test]
async fn ipv4_clients_of_a_dual_stack_listener_are_limited_and_trusted_as_ipv4() {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    // A server on [::] sees 127.0.0.2 as ::ffff:127.0.0.2: taken as IPv6, those addresses
    // would share one /64 bucket and miss the loopback trusted-proxy default.
    let db = std::sync::Arc::new(TestDb::create().await);
    let mut config = pwreset::Config::for_tests(db.url());
    config.key = pwreset::config::KeySource::Ephemeral;
    config.limits = RateLimits { validate_token: "1/1h".parse().ok(), ..RateLimits::default() };
    let app =
        pwreset::App::build(config, std::sync::Arc::new(pwreset_proto::clock::ManualClock::default())).await.unwrap();
    let listener = match tokio::net::TcpListener::bind("[::]:0").await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("no IPv6 on this machine ({e}); skipped");
            return;
        }
    };
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve_on(listener, async {
        let _ = stopped.await;
    }));
    let from = |last: u8| {
        tonic::transport::Endpoint::from_shared(format!("http://{}", SocketAddr::from(([127, 0, 0, 1], port))))
            .unwrap()
            .local_address(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))))
            .connect_lazy()
    };
    let (two, three) = (from(2), from(3));
    assert_eq!(probe(&two, None).await, Code::NotFound);
    assert_eq!(probe(&two, None).await, Code::ResourceExhausted, "127.0.0.2 used its one call");
    assert_eq!(probe(&three, None).await, Code::NotFound, "127.0.0.3 has a bucket of its own");
    // The loopback default trusts them as proxies: the forwarded address is the client.
    assert_eq!(probe(&three, Some("203.0.113.7")).await, Code::NotFound);
    assert_eq!(probe(&two, Some("203.0.113.8")).await, Code::NotFound);
    assert_eq!(probe(&two, Some("203.0.113.8")).await, Code::ResourceExhausted);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn an_authenticated_backend_is_believed_about_its_users_address() {
    let key = "reset-key-0123456789abcdef";
    let app = TestApp::spawn_with(|mut c| {
        c.limits = RateLimits { validate_token: "1/1h".parse().ok(), ..RateLimits::default() };
        c.clients.trusted_proxies = Vec::new();
        c.server.caller_keys = vec![format!("reset={key}").parse().unwrap()];
        c
    })
    .await;
    for n in 0..5 {
        let mut request = with_key(ValidateTokenRequest { token: format!("guess-{n:06}"), ..Default::default() }, key);
        request.metadata_mut().insert("x-forwarded-for", format!("203.0.113.{n}").parse().unwrap());
        assert_eq!(
            app.reset().validate_token(request).await.unwrap_err().code(),
            Code::NotFound,
            "own bucket per user"
        );
    }
}

#[tokio::test]
async fn racing_confirm_request_and_deactivation_lose_no_bystander_and_raise_no_internal_error() {
    let app = TestApp::spawn().await;
    let account = app.create_account("ada@example.com", Some(STRONG)).await;
    let bystanders: Vec<String> = (0..120).map(|n| format!("bystander{n}@example.com")).collect();
    for email in &bystanders {
        app.create_account(email, Some(STRONG)).await;
    }
    let request = |email: &str| pwreset::proto::RequestTokenRequest {
        email: email.into(),
        locale: String::new(),
        ..Default::default()
    };
    let mut outcomes = Vec::new();
    for round in 0..20 {
        // A live token each round, so Confirm locks its row while the writer revokes the
        // account's tokens and SetActive locks the account: the three orders meet.
        let token = app.new_token("ada@example.com").await;
        let mut calls = Vec::new();
        let mut reset = app.reset();
        calls.push(tokio::spawn(async move {
            reset
                .confirm(ConfirmRequest { token, new_password: OTHER_STRONG.into(), ..Default::default() })
                .await
                .map(|_| ())
        }));
        for _ in 0..2 {
            let (mut reset, message) = (app.reset(), request("ada@example.com"));
            calls.push(tokio::spawn(async move { reset.request_token(message).await.map(|_| ()) }));
        }
        let (mut accounts, id) = (app.accounts(), account.account_id.clone());
        calls.push(tokio::spawn(async move {
            accounts.set_active(SetActiveRequest { account_id: id, active: round % 2 == 1 }).await.map(|_| ())
        }));
        for email in bystanders.iter().skip(round * 6).take(6) {
            let (mut reset, message) = (app.reset(), request(email));
            calls.push(tokio::spawn(async move { reset.request_token(message).await.map(|_| ()) }));
        }
        for call in calls {
            outcomes.push(call.await.unwrap());
        }
        app.accounts()
            .set_active(SetActiveRequest { account_id: account.account_id.clone(), active: true })
            .await
            .unwrap();
    }
    for outcome in &outcomes {
        if let Err(status) = outcome {
            assert_eq!(status.code(), Code::NotFound, "only the racing token may be refused: {status:?}");
        }
    }
    let db = db(&app).await;
    let created: HashSet<String> = events::Entity::find()
        .filter(events::Column::Kind.eq(pwreset::domain::model::event::EventKind::TokenCreated.code()))
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.email)
        .collect();
    for email in &bystanders {
        assert!(created.contains(email), "{email} was answered OK but has no TokenCreated");
    }
}

#[tokio::test]
async fn failure_counts_older_than_the_lockout_are_forgotten() {
    use pwreset::domain::model::persistence::{AttemptStore, Reservation};
    let app = TestApp::spawn().await;
    let store = pwreset::store::Store::connect(app.db.url(), 2).await.unwrap();
    let now = app.clock_now();
    let lockout = chrono::Duration::minutes(15);
    for digest in [[1u8; 32], [2u8; 32]] {
        assert_eq!(store.reserve_attempt(&digest, 3, now - lockout, now).await.unwrap(), Reservation::Granted);
    }
    assert_eq!(store.tracked_attempts().await.unwrap(), 2);
    assert_eq!(store.forget_attempts(now - lockout).await.unwrap(), 0, "still inside the lockout window");
    let later = now + lockout;
    assert_eq!(store.forget_attempts(later - lockout).await.unwrap(), 2);
    assert_eq!(store.tracked_attempts().await.unwrap(), 0);
}
