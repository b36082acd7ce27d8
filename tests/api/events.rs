//! SubscribeEvents: live, replay after a cursor, sealing, retention.

use std::time::Duration;

use pwreset::proto::{ConfirmRequest, SubscribeEventsRequest, event};
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
    assert_eq!(token_created(b).email, "b@example.com");
    assert_eq!(token_created(c).email, "c@example.com");

    // Then it goes live with no gap.
    app.create_account("d@example.com", Some(STRONG)).await;
    app.request_token("d@example.com").await.unwrap();
    assert_eq!(token_created(next_event(&mut resumed).await).email, "d@example.com");
}

#[tokio::test]
async fn replayed_token_created_is_empty_once_the_token_is_used() {
    let app = TestApp::spawn().await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    app.reset().confirm(ConfirmRequest { token: token.clone(), new_password: OTHER_STRONG.into() }).await.unwrap();
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
    b.reset().validate_token(pwreset::proto::ValidateTokenRequest { token: created.token }).await.unwrap();
}
