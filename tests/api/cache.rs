//! The token cache: ValidateToken on a replica never keeps answering for a token that
//! was used, replaced or revoked elsewhere, and trusts what it cached only for its TTL.

use std::time::Duration;

use pwreset::proto::{ConfirmRequest, SetActiveRequest, ValidateTokenRequest, event};
use sea_orm::{ConnectionTrait, Database};
use tonic::Code;

use crate::helpers::*;

const CACHE_TTL: Duration = Duration::from_secs(60);

/// Replicas that learn of each other's changes only through events (and, on
/// PostgreSQL, NOTIFY): the poll fallback and the cache TTL are far beyond the test.
fn replica(mut c: pwreset::Config) -> pwreset::Config {
    c.tokens.cache_ttl = CACHE_TTL;
    if app_is_postgres() {
        c.events.poll_interval = Duration::from_secs(3600);
    }
    c
}

async fn validate(app: &TestApp, token: &str) -> Result<(), Code> {
    app.reset()
        .validate_token(ValidateTokenRequest { token: token.into(), ..Default::default() })
        .await
        .map(|_| ())
        .map_err(|s| s.code())
}

async fn delete_all_tokens(app: &TestApp) {
    let db = Database::connect(app.db.url()).await.unwrap();
    db.execute_unprepared("DELETE FROM reset_tokens").await.unwrap();
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_validated_token_is_answered_from_the_cache_for_the_ttl_only() {
    let app = TestApp::spawn_with(replica).await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    validate(&app, &token).await.unwrap();
    // Gone from the database behind the service's back (no event, no notification):
    // the replica still answers from its cache, until the TTL runs out.
    delete_all_tokens(&app).await;
    assert_eq!(validate(&app, &token).await, Ok(()));
    app.clock.advance(CACHE_TTL);
    assert_eq!(validate(&app, &token).await, Err(Code::NotFound));
}

#[tokio::test]
async fn a_stale_cache_entry_never_lets_confirm_through() {
    let app = TestApp::spawn_with(replica).await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    validate(&app, &token).await.unwrap();
    // Used behind the service's back: the cache still says live, the database does not.
    let db = Database::connect(app.db.url()).await.unwrap();
    db.execute_unprepared("UPDATE reset_tokens SET used_at = 1").await.unwrap();
    db.close().await.unwrap();
    assert_eq!(validate(&app, &token).await, Ok(()), "optimistic within the TTL");
    let refused = app
        .reset()
        .confirm(ConfirmRequest { token: token.clone(), new_password: OTHER_STRONG.into(), ..Default::default() })
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::NotFound);
    assert!(app.verify("ada@example.com", STRONG).await, "the password did not change");
    assert_eq!(validate(&app, &token).await, Err(Code::NotFound), "and the lost race emptied the cache");
}

#[tokio::test]
async fn with_a_zero_ttl_every_validation_reads_the_database() {
    let app = TestApp::spawn_with(|mut c| {
        c.tokens.cache_ttl = Duration::ZERO;
        c
    })
    .await;
    let (_, token) = app.account_with_token("ada@example.com").await;
    validate(&app, &token).await.unwrap();
    delete_all_tokens(&app).await;
    assert_eq!(validate(&app, &token).await, Err(Code::NotFound));
}

#[tokio::test]
async fn a_token_used_on_another_replica_is_refused_once_its_event_arrives() {
    let a = TestApp::spawn_with(replica).await;
    let b = a.sibling(replica).await;
    let (_, token) = a.account_with_token("ada@example.com").await;
    validate(&a, &token).await.unwrap();
    let mut on_a = a.subscribe(None).await;

    b.reset()
        .confirm(ConfirmRequest { token: token.clone(), new_password: OTHER_STRONG.into(), ..Default::default() })
        .await
        .unwrap();
    // The fetcher drops the cached token before it passes the event on.
    password_changed(next_event(&mut on_a).await);
    assert_eq!(validate(&a, &token).await, Err(Code::NotFound));
}

#[tokio::test]
async fn a_token_replaced_on_another_replica_is_refused_once_its_event_arrives() {
    let a = TestApp::spawn_with(replica).await;
    let b = a.sibling(replica).await;
    let (_, old) = a.account_with_token("ada@example.com").await;
    validate(&a, &old).await.unwrap();
    let mut on_a = a.subscribe(None).await;

    let new = b.new_token("ada@example.com").await;
    let Some(event::Kind::TokenCreated(created)) = next_event(&mut on_a).await.kind else { panic!("TokenCreated") };
    assert_eq!(created.token, new);
    assert_eq!(validate(&a, &old).await, Err(Code::NotFound));
    assert_eq!(validate(&a, &new).await, Ok(()));
}

#[tokio::test]
async fn a_deactivation_on_this_replica_drops_the_cached_token_at_once() {
    let app = TestApp::spawn_with(replica).await;
    let (account_id, token) = app.account_with_token("ada@example.com").await;
    validate(&app, &token).await.unwrap();
    app.accounts().set_active(SetActiveRequest { account_id, active: false }).await.unwrap();
    assert_eq!(validate(&app, &token).await, Err(Code::NotFound));
}

#[tokio::test]
async fn a_deactivation_on_another_replica_reaches_the_cache() {
    let a = TestApp::spawn_with(replica).await;
    let b = a.sibling(replica).await;
    let (account_id, token) = a.account_with_token("ada@example.com").await;
    validate(&a, &token).await.unwrap();
    b.accounts().set_active(SetActiveRequest { account_id, active: false }).await.unwrap();
    if app_is_postgres() {
        // A deactivation has no event; PostgreSQL replicas announce it with NOTIFY.
        eventually("the deactivation announced to replica A", || async {
            validate(&a, &token).await == Err(Code::NotFound)
        })
        .await;
    } else {
        // SQLite is the single-process default: another process's deactivation is seen
        // when the cached entry reaches its TTL.
        assert_eq!(validate(&a, &token).await, Ok(()));
        a.clock.advance(CACHE_TTL);
        assert_eq!(validate(&a, &token).await, Err(Code::NotFound));
    }
}
