//! SubscribeEvents: live, replay after a cursor, sealing, retention.

use std::collections::HashSet;
use std::time::Duration;

use pwreset::domain::model::persistence::EventStore;
use pwreset::proto::{ConfirmRequest, RequestTokenRequest, SubscribeEventsRequest, ValidateTokenRequest, event};
use pwreset::store::Store;
use sea_orm::{ConnectionTrait, Database, Statement};
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn replay_after_a_cursor_gives_exactly_the_missed_events_in_order() {
    let app = TestApp::spawn().await;
    let mut live = app.subscribe(None).await;
    app.create_account("a@example.com", Some(STRONG)).await;
    app.request_token("a@example.com").await.unwrap();
    let first = next_event(&mut live).await;
    drop(live);

    for email in ["b@example.com", "c@example.com"] {
        app.create_account(email, Some(STRONG)).await;
        app.request_token(email).await.unwrap();
    }
    let mut resumed = app.subscribe(Some(first.sequence)).await;
    let b = next_event(&mut resumed).await;
    let c = next_event(&mut resumed).await;
    assert!(first.sequence < b.sequence && b.sequence < c.sequence);
    // Token work runs after each reply, so the two may commit in either order.
    let mut missed = [token_created(b).email, token_created(c).email];
    missed.sort();
    assert_eq!(missed, ["b@example.com", "c@example.com"]);

    // Then it goes live with no gap.
    app.create_account("d@example.com", Some(STRONG)).await;
    app.request_token("d@example.com").await.unwrap();
    assert_eq!(token_created(next_event(&mut resumed).await).email, "d@example.com");
}

#[tokio::test]
async fn replayed_token_created_is_empty_once_the_token_is_used() {
    let app = TestApp::spawn().await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    app.reset()
        .confirm(ConfirmRequest { token: token.clone(), new_password: OTHER_STRONG.into(), ..Default::default() })
        .await
        .unwrap();
    let mut replay = app.subscribe(Some(0)).await;
    let created = token_created(next_event(&mut replay).await);
    assert_eq!(created.email, "ada@example.com");
    assert!(created.token.is_empty(), "sealed copy destroyed");
    assert!(matches!(next_event(&mut replay).await.kind, Some(event::Kind::PasswordChanged(_))));
}

#[tokio::test]
async fn replayed_token_created_carries_the_token_while_it_is_live() {
    let app = TestApp::spawn().await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    let mut replay = app.subscribe(Some(0)).await;
    assert_eq!(token_created(next_event(&mut replay).await).token, token);
    app.clock.advance(Duration::from_secs(31 * 60));
    let mut replay = app.subscribe(Some(0)).await;
    assert!(token_created(next_event(&mut replay).await).token.is_empty(), "expired tokens are not replayed");
}

#[tokio::test]
async fn the_database_never_holds_a_usable_token() {
    let app = TestApp::spawn().await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    let db = Database::connect(app.db.url()).await.unwrap();
    let backend = db.get_database_backend();
    for table in ["reset_tokens", "events", "accounts"] {
        let rows = db.query_all_raw(Statement::from_string(backend, format!("SELECT * FROM {table}"))).await.unwrap();
        assert!(!rows.is_empty() || table == "accounts");
        let dump = format!("{rows:?}");
        assert!(!dump.contains(&token), "{table} holds the token in clear");
        let hex: String = token.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!dump.to_lowercase().contains(&hex), "{table} holds the token as hex");
    }
    db.close().await.ok();
}

#[tokio::test]
async fn a_cursor_older_than_retention_is_out_of_range() {
    let app = TestApp::spawn_with(|mut c| {
        c.events.retention = Duration::from_secs(3600);
        c
    })
    .await;
    app.account_with_token("ada@example.com").await;
    app.clock.advance(Duration::from_secs(2 * 3600));
    let store = Store::connect(app.db.url(), 1).await.unwrap();
    let purged = store.purge(app.clock_now()).await.unwrap();
    assert_eq!((purged.tokens, purged.events), (1, 1));
    let status = app.reset().subscribe_events(SubscribeEventsRequest { after_sequence: Some(0) }).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
    app.subscribe(Some(1)).await;
    app.subscribe(None).await;
}

#[tokio::test]
async fn events_committed_by_another_server_on_the_same_database_arrive() {
    let a = TestApp::spawn().await;
    let b = a.sibling(|c| c).await;
    let mut on_b = b.subscribe(None).await;
    a.create_account("ada@example.com", Some(STRONG)).await;
    a.request_token("ada@example.com").await.unwrap();
    let created = token_created(next_event(&mut on_b).await);
    b.reset().validate_token(ValidateTokenRequest { token: created.token, ..Default::default() }).await.unwrap();
}

#[tokio::test]
async fn after_a_restart_a_cursor_resumes_and_the_tokens_still_validate() {
    let app = TestApp::spawn().await;
    let mut live = app.subscribe(None).await;
    app.create_account("a@example.com", Some(STRONG)).await;
    app.request_token("a@example.com").await.unwrap();
    let cursor = next_event(&mut live).await.sequence;
    drop(live);
    app.create_account("b@example.com", Some(STRONG)).await;
    app.request_token("b@example.com").await.unwrap();

    let app = app.restart().await;
    let mut resumed = app.subscribe(Some(cursor)).await;
    let missed = token_created(next_event(&mut resumed).await);
    assert_eq!(missed.email, "b@example.com");
    app.reset()
        .validate_token(ValidateTokenRequest { token: missed.token, ..Default::default() })
        .await
        .expect("token survives the restart");
}

#[tokio::test]
async fn concurrent_writers_deliver_every_event_once_in_order() {
    const WRITERS: usize = 40;
    let app = TestApp::spawn().await;
    for n in 0..WRITERS {
        app.create_account(&format!("user{n}@example.com"), Some(STRONG)).await;
    }
    let mut events = app.subscribe(None).await;
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..WRITERS {
        let mut client = app.reset();
        calls.spawn(async move {
            client
                .request_token(RequestTokenRequest { email: format!("user{n}@example.com"), ..Default::default() })
                .await
        });
    }
    let mut seen = HashSet::new();
    let mut last = 0;
    while seen.len() < WRITERS {
        let event = next_event(&mut events).await;
        assert!(event.sequence > last, "in order: {} after {last}", event.sequence);
        last = event.sequence;
        assert!(seen.insert(token_created(event).email), "delivered once");
    }
    while let Some(result) = calls.join_next().await {
        result.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_replica_sees_commits_of_another_promptly() {
    // On PostgreSQL the replicas only learn of each other's commits through
    // LISTEN/NOTIFY here: the poll fallback is set far beyond the test's deadline.
    let postgres = app_is_postgres();
    let slow_poll = |mut c: pwreset::Config| {
        if postgres {
            c.events.poll_interval = Duration::from_secs(3600);
        }
        c
    };
    let a = TestApp::spawn_with(slow_poll).await;
    let b = a.sibling(slow_poll).await;
    let mut on_b = b.subscribe(None).await;
    a.create_account("ada@example.com", Some(STRONG)).await;
    a.request_token("ada@example.com").await.unwrap();
    assert_eq!(token_created(next_event(&mut on_b).await).email, "ada@example.com");
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_does_not_delay_others_and_catches_up_later() {
    const EVENTS: usize = 300;
    // A tiny in-memory buffer, so the stalled subscriber falls far behind it.
    let app = TestApp::spawn_with(|mut c| {
        c.events.broadcast_capacity = 8;
        c
    })
    .await;
    app.create_account("ada@example.com", Some(STRONG)).await;
    let mut stalled = app.subscribe(None).await;
    let mut reader = app.subscribe(None).await;
    for _ in 0..EVENTS {
        app.request_token("ada@example.com").await.unwrap();
    }
    let mut sequences = Vec::new();
    for _ in 0..EVENTS {
        sequences.push(next_event(&mut reader).await.sequence);
    }
    // The stalled one now reads everything, in order, with nothing lost.
    for expected in sequences {
        assert_eq!(next_event(&mut stalled).await.sequence, expected);
    }
}

#[tokio::test]
async fn unknown_addresses_are_reported_only_when_switched_on() {
    let off = TestApp::spawn().await;
    let mut events = off.subscribe(None).await;
    off.request_token("nobody@example.com").await.unwrap();
    off.account_with_token("ada@example.com").await;
    assert!(matches!(next_event(&mut events).await.kind, Some(event::Kind::TokenCreated(_))), "nothing before it");

    let on = TestApp::spawn_with(|mut c| {
        c.events.emit_unknown_account_events = true;
        c
    })
    .await;
    let mut events = on.subscribe(None).await;
    on.reset()
        .request_token(with_ip(
            RequestTokenRequest { email: "Nobody@example.com".into(), locale: "de".into(), ..Default::default() },
            "192.0.2.7",
        ))
        .await
        .unwrap();
    let Some(event::Kind::ResetRequestedForUnknownEmail(unknown)) = next_event(&mut events).await.kind else {
        panic!("expected ResetRequestedForUnknownEmail")
    };
    assert_eq!(
        (unknown.email.as_str(), unknown.client_ip.as_str(), unknown.locale.as_str()),
        ("nobody@example.com", "192.0.2.7", "de")
    );
}

#[tokio::test]
async fn rotating_the_server_key_keeps_live_tokens_and_sealed_events_readable() {
    let app = TestApp::spawn().await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    let old_key = match &app.config.key {
        pwreset::config::KeySource::Given(k) => k.clone(),
        other => panic!("{other:?}"),
    };
    let rotated = app
        .sibling(|mut c| {
            c.key = pwreset::config::KeySource::Given(pwreset::domain::model::keys::ServerKey::from_bytes([42; 32]));
            c.previous_keys = vec![old_key];
            c
        })
        .await;
    let mut replay = rotated.subscribe(Some(0)).await;
    assert_eq!(token_created(next_event(&mut replay).await).token, token, "sealed under the old key, still opens");
    rotated
        .reset()
        .validate_token(ValidateTokenRequest { token: token.clone(), ..Default::default() })
        .await
        .expect("old digest accepted");
    rotated
        .reset()
        .confirm(ConfirmRequest { token, new_password: OTHER_STRONG.into(), ..Default::default() })
        .await
        .unwrap();
    assert!(rotated.verify("ada@example.com", OTHER_STRONG).await);
}

#[tokio::test]
async fn hundreds_of_subscribers_each_get_every_event() {
    const SUBSCRIBERS: usize = 200;
    let app = TestApp::spawn().await;
    app.create_account("ada@example.com", Some(STRONG)).await;
    let mut streams = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        streams.push(app.subscribe(None).await);
    }
    app.request_token("ada@example.com").await.unwrap();
    app.request_token("ada@example.com").await.unwrap();
    for stream in &mut streams {
        let first = next_event(stream).await.sequence;
        assert!(next_event(stream).await.sequence > first);
    }
}
