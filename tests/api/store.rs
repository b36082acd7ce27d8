//! The token writer's batch, straight against the database: written set-based, it must
//! leave exactly what writing its entries one after another would.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pwreset::domain::model::email::Email;
use pwreset::domain::model::event::{Channel, EventKind, NewEvent, TokenCopy, TokenCreated};
use pwreset::domain::model::login::Login;
use pwreset::domain::model::persistence::{BatchEntry, EntryOutcome, EventStore, TokenCap, Written};
use pwreset::domain::model::seal::SealedToken;
use pwreset::domain::model::token::{NewToken, TokenDigest, TokenPurpose};
use pwreset::domain::model::{Account, AccountId, ClientInfo};
use pwreset::store::entity::{events, reset_tokens};
use pwreset::store::{Store, millis};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::helpers::*;

fn client() -> ClientInfo {
    ClientInfo { ip: "203.0.113.9".parse().ok(), user_agent: "test".into() }
}

fn token_write(account_id: Uuid, digest: [u8; 32], now: DateTime<Utc>, cap: Option<TokenCap>) -> BatchEntry {
    let id = Uuid::now_v7();
    let expires_at = now + Duration::from_secs(1800);
    let account_id = AccountId::from_uuid(account_id);
    let token = NewToken {
        id,
        account_id,
        digest: TokenDigest(digest),
        created_at: now,
        expires_at,
        client_ip: "203.0.113.9".into(),
        user_agent: "test".into(),
        purpose: TokenPurpose::PasswordReset,
        bound: false,
    };
    let account = Account {
        id: account_id,
        email: Email::parse("someone@example.com").unwrap(),
        active: true,
        has_usable_password: true,
        created_at: now,
        password_changed_at: None,
        username: None,
        phone: None,
    };
    let sealed = SealedToken { key_id: 1, bytes: vec![7; 40] };
    let mut created = TokenCreated::new(&account, &token, "en-GB", Channel::Email);
    created.token = TokenCopy::Sealed(sealed);
    let event = NewEvent::token_created(Duration::ZERO, token.created_at, created);
    BatchEntry { token: Some(token), event, cap }
}

fn unknown_email_write(now: DateTime<Utc>) -> BatchEntry {
    let email = Email::parse("nobody@example.com").unwrap();
    let event = NewEvent::unknown_email(now, Duration::from_secs(3600), &email, &client(), "en-GB");
    BatchEntry { token: None, event, cap: None }
}

async fn token(store_url: &str, id: Uuid) -> Option<reset_tokens::Model> {
    let db = sea_orm::Database::connect(store_url).await.unwrap();
    let row = reset_tokens::Entity::find_by_id(id).one(&db).await.unwrap();
    db.close().await.unwrap();
    row
}

async fn event_of(store_url: &str, token_id: Uuid) -> Option<events::Model> {
    let db = sea_orm::Database::connect(store_url).await.unwrap();
    let row = events::Entity::find().filter(events::Column::TokenId.eq(token_id)).one(&db).await.unwrap();
    db.close().await.unwrap();
    row
}

/// Writes `batch` as the token writer does, its transaction looking up `emails`:
/// together, and one by one if a digest was taken.
async fn write(store: &Store, emails: &[&str], batch: &[BatchEntry]) -> Written {
    let logins: Vec<Login> = emails.iter().map(|e| Login::Email(Email::parse(e).unwrap())).collect();
    let logins: Vec<&Login> = logins.iter().collect();
    let mut txn = store.begin_token_batch().await.unwrap();
    txn.accounts_by_logins(&logins).await.unwrap();
    if let Some(written) = txn.write_together(batch, true).await.unwrap() {
        txn.commit().await.unwrap();
        return written;
    }
    drop(txn);
    let mut txn = store.begin_token_batch().await.unwrap();
    txn.accounts_by_logins(&logins).await.unwrap();
    let written = txn.write_one_by_one(batch, true).await.unwrap();
    txn.commit().await.unwrap();
    written
}

fn id_of(write: &BatchEntry) -> Uuid {
    write.token.as_ref().unwrap().id
}

#[tokio::test]
async fn a_batch_revokes_caps_and_supersedes_as_writing_in_turn_would() {
    let app = TestApp::spawn().await;
    let a = app.create_account("a@example.com", Some(STRONG)).await.account_id.parse().unwrap();
    let b = app.create_account("b@example.com", Some(STRONG)).await.account_id.parse().unwrap();
    app.new_token("a@example.com").await; // one TokenCreated for `a` already
    let store = Store::connect(app.db.url(), 2).await.unwrap();
    let url = app.db.url();

    let now = app.clock_now();
    let cap = Some(TokenCap { max: 3, since: now - Duration::from_secs(3600) });
    let batch = vec![
        token_write(a, [1; 32], now, cap),
        token_write(a, [2; 32], now, cap),
        token_write(a, [3; 32], now, cap), // the fourth in the window: capped
        token_write(b, [4; 32], now, cap),
        unknown_email_write(now),
    ];
    let ids: Vec<Uuid> = batch.iter().filter(|w| w.token.is_some()).map(id_of).collect();
    let written = write(&store, &["a@example.com", "b@example.com"], &batch).await;

    use EntryOutcome::*;
    assert_eq!(written.outcomes, vec![Written, Written, Capped, Written, Written]);
    let db = sea_orm::Database::connect(url).await.unwrap();
    let newest = events::Entity::find().order_by_desc(events::Column::Sequence).one(&db).await.unwrap().unwrap();
    assert_eq!(written.newest.map(|s| s.db()), Some(newest.sequence));
    assert_eq!(newest.kind, EventKind::ResetRequestedForUnknownEmail.code(), "entries keep their order");
    let a_tokens = reset_tokens::Entity::find().filter(reset_tokens::Column::AccountId.eq(a)).all(&db).await.unwrap();
    db.close().await.unwrap();

    // `a`: the earlier token and the batch's first are revoked, its second is live, the
    // capped third was never written.
    assert_eq!(a_tokens.len(), 3);
    assert_eq!(a_tokens.iter().filter(|t| t.revoked_at.is_none()).map(|t| t.id).collect::<Vec<_>>(), vec![ids[1]]);
    let superseded = token(url, ids[0]).await.unwrap();
    assert_eq!(superseded.revoked_at, Some(millis(now)));
    assert!(event_of(url, ids[0]).await.unwrap().sealed_token.is_none(), "a revoked token's sealed copy is gone");
    assert!(event_of(url, ids[1]).await.unwrap().sealed_token.is_some());
    assert!(token(url, ids[2]).await.is_none());
    assert!(event_of(url, ids[2]).await.is_none());
    // `b` is untouched by `a`'s cap.
    assert!(token(url, ids[3]).await.unwrap().revoked_at.is_none());
    assert!(event_of(url, ids[3]).await.unwrap().sealed_token.is_some());
}

#[tokio::test]
async fn a_taken_digest_fails_only_its_own_entry() {
    let app = TestApp::spawn().await;
    let a = app.create_account("a@example.com", Some(STRONG)).await.account_id.parse().unwrap();
    let b = app.create_account("b@example.com", Some(STRONG)).await.account_id.parse().unwrap();
    let store = Store::connect(app.db.url(), 2).await.unwrap();
    let url = app.db.url();
    let now = app.clock_now();

    let first = write(&store, &["a@example.com"], &[token_write(a, [9; 32], now, None)]).await;
    assert_eq!(first.outcomes, vec![EntryOutcome::Written]);
    let batch = vec![token_write(b, [9; 32], now, None), token_write(b, [10; 32], now, None)];
    let ids: Vec<Uuid> = batch.iter().map(id_of).collect();
    let written = write(&store, &["b@example.com"], &batch).await;

    assert_eq!(written.outcomes, vec![EntryOutcome::DigestTaken, EntryOutcome::Written]);
    assert!(written.newest > first.newest);
    assert!(token(url, ids[0]).await.is_none());
    assert!(event_of(url, ids[0]).await.is_none());
    assert!(token(url, ids[1]).await.unwrap().revoked_at.is_none());
    assert!(event_of(url, ids[1]).await.unwrap().sealed_token.is_some());
}

#[tokio::test]
async fn the_writer_creates_no_token_for_an_account_deactivated_before_its_transaction() {
    let app = TestApp::spawn().await;
    let account = app.create_account("a@example.com", Some(STRONG)).await;
    let id: Uuid = account.account_id.parse().unwrap();
    app.accounts()
        .set_active(pwreset::proto::SetActiveRequest { account_id: account.account_id, active: false })
        .await
        .unwrap();
    // A plan that writes a token whatever the look-up found (as one made from a read
    // before the deactivation would): the store still refuses it.
    let store = Store::connect(app.db.url(), 2).await.unwrap();
    let entry = token_write(id, [5; 32], app.clock_now(), None);
    let token_id = id_of(&entry);
    let written = write(&store, &["a@example.com"], &[entry]).await;
    assert_eq!(written.outcomes, vec![EntryOutcome::Inactive]);
    assert!(token(app.db.url(), token_id).await.is_none());
    assert!(event_of(app.db.url(), token_id).await.is_none());
}

/// How many of the account's events still hold a sealed copy of a token.
async fn sealed_copies(store_url: &str, account_id: Uuid) -> usize {
    let db = sea_orm::Database::connect(store_url).await.unwrap();
    let rows = events::Entity::find()
        .filter(events::Column::AccountId.eq(account_id))
        .filter(events::Column::SealedToken.is_not_null())
        .all(&db)
        .await
        .unwrap();
    db.close().await.unwrap();
    rows.len()
}

#[tokio::test]
async fn every_way_a_token_ends_destroys_its_sealed_copy() {
    use pwreset::proto::{ConfirmRequest, SetActiveRequest};
    let app = TestApp::spawn().await;
    let url = app.db.url();
    let (id, _) = app.account_with_token("ends@example.com").await;
    let account: Uuid = id.parse().unwrap();
    assert_eq!(sealed_copies(url, account).await, 1, "a live token's copy is kept for delivery");

    // A newer token (a later batch) revokes the earlier one: one copy, the newer one's.
    let token = app.new_token("ends@example.com").await;
    assert_eq!(sealed_copies(url, account).await, 1);

    // Confirm uses the token: its own copy goes too.
    let confirm = ConfirmRequest { token, new_password: OTHER_STRONG.into(), ..Default::default() };
    app.reset().confirm(confirm).await.unwrap();
    assert_eq!(sealed_copies(url, account).await, 0, "the used token's copy is gone");

    // A deactivation revokes the live one.
    app.new_token("ends@example.com").await;
    assert_eq!(sealed_copies(url, account).await, 1);
    app.accounts().set_active(SetActiveRequest { account_id: id, active: false }).await.unwrap();
    assert_eq!(sealed_copies(url, account).await, 0, "a revoked token's copy is gone");
}
