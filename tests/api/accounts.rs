//! AccountService: CreateAccount, VerifyPassword, SetActive.

use pwreset::proto::{CreateAccountRequest, SetActiveRequest, VerifyPasswordRequest};
use sea_orm::{ConnectionTrait, Database, Statement};
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn create_account_returns_the_normalised_account() {
    let app = TestApp::spawn().await;
    let before = app.clock_now().timestamp();
    let account = app.create_account("  Grace.Hopper@Example.COM ", Some(STRONG)).await;
    assert_eq!(account.email, "grace.hopper@example.com");
    assert!(account.active && account.has_usable_password);
    assert!(uuid::Uuid::parse_str(&account.account_id).is_ok());
    assert!(account.created_at.unwrap().seconds >= before);
}

#[tokio::test]
async fn a_taken_email_is_already_exists_after_normalisation() {
    let app = TestApp::spawn().await;
    app.create_account("ada@example.com", None).await;
    let status = app
        .accounts()
        .create_account(CreateAccountRequest { email: "ADA@example.com ".into(), password: None, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn an_account_without_a_password_has_no_usable_password() {
    let app = TestApp::spawn().await;
    let account = app.create_account("ada@example.com", None).await;
    assert!(!account.has_usable_password);
    assert!(!app.verify("ada@example.com", "").await);
    assert!(!app.verify("ada@example.com", STRONG).await);
}

#[tokio::test]
async fn create_account_applies_the_password_policy() {
    let app = TestApp::spawn().await;
    let status = app
        .accounts()
        .create_account(CreateAccountRequest {
            email: "ada@example.com".into(),
            password: Some("password1".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&status), ["password", "password", "password"]);
    assert_eq!(bad_request_reasons(&status), ["MIN_LENGTH", "BREACHED", "TOO_GUESSABLE"], "in the README's order");
    let status = app
        .accounts()
        .create_account(CreateAccountRequest { email: "nope".into(), password: None, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&status), ["email"]);
}

#[tokio::test]
async fn verify_password_is_false_for_wrong_unknown_and_inactive() {
    let app = TestApp::spawn().await;
    let account = app.create_account("ada@example.com", Some(STRONG)).await;
    let ok = app
        .accounts()
        .verify_password(VerifyPasswordRequest { email: "Ada@example.com".into(), password: STRONG.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.valid);
    assert_eq!(ok.account_id, account.account_id);

    for (email, password) in [("ada@example.com", OTHER_STRONG), ("nobody@example.com", STRONG)] {
        let answer = app
            .accounts()
            .verify_password(VerifyPasswordRequest { email: email.into(), password: password.into() })
            .await
            .unwrap()
            .into_inner();
        assert!(!answer.valid && answer.account_id.is_empty(), "{email}");
    }
    app.accounts().set_active(SetActiveRequest { account_id: account.account_id, active: false }).await.unwrap();
    assert!(!app.verify("ada@example.com", STRONG).await, "inactive accounts never verify");
}

#[tokio::test]
async fn verify_password_rejects_oversized_input() {
    let app = TestApp::spawn().await;
    let status = app
        .accounts()
        .verify_password(VerifyPasswordRequest { email: "ada@example.com".into(), password: "x".repeat(1025) })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&status), ["password"]);
}

#[tokio::test]
async fn set_active_reports_unknown_and_malformed_ids() {
    let app = TestApp::spawn().await;
    let status = app
        .accounts()
        .set_active(SetActiveRequest { account_id: uuid::Uuid::new_v4().to_string(), active: false })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status =
        app.accounts().set_active(SetActiveRequest { account_id: "42".into(), active: false }).await.unwrap_err();
    assert_eq!(bad_request_fields(&status), ["account_id"]);
}

#[tokio::test]
async fn set_active_returns_the_account_with_its_new_state() {
    let app = TestApp::spawn().await;
    let account = app.create_account("ada@example.com", Some(STRONG)).await;
    let off = app
        .accounts()
        .set_active(SetActiveRequest { account_id: account.account_id.clone(), active: false })
        .await
        .unwrap()
        .into_inner();
    assert!(!off.active);
    assert_eq!(off.account_id, account.account_id);
}

#[tokio::test]
async fn a_hash_under_older_parameters_is_upgraded_after_a_successful_check() {
    let app = TestApp::spawn().await;
    app.create_account("ada@example.com", Some(STRONG)).await;
    let stronger = app
        .sibling(|mut c| {
            c.hasher.params = argon2::Params::new(128, 2, 1, None).unwrap();
            c
        })
        .await;
    assert!(!stronger.verify("ada@example.com", OTHER_STRONG).await);
    assert!(stored_hash(&app).await.contains("$m=64,t=1,p=1$"), "a failed check changes nothing");
    assert!(stronger.verify("ada@example.com", STRONG).await);
    assert!(stored_hash(&app).await.contains("$m=128,t=2,p=1$"));
    assert!(stronger.verify("ada@example.com", STRONG).await, "the upgraded hash verifies");
}

async fn stored_hash(app: &TestApp) -> String {
    let db = Database::connect(app.db.url()).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), "SELECT password_hash FROM accounts"))
        .await
        .unwrap()
        .unwrap();
    let hash: String = row.try_get("", "password_hash").unwrap();
    db.close().await.ok();
    hash
}
