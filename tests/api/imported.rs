//! Imported password hashes (#13): every format, made by the library that owns it
//! (`tests/fixtures/imported_hashes.jsonl`, written by `scripts/make_hash_fixture.py`
//! with Django's hashers, argon2-cffi, passlib and bcrypt), imports through
//! `CreateAccount`, verifies with its plaintext, and is rehashed to argon2id.

use pwreset::proto::{CreateAccountRequest, VerifyPasswordRequest};
use pwreset::store::entity::accounts;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::Code;

use crate::helpers::*;

#[derive(serde::Deserialize)]
pub struct Fixture {
    pub format: String,
    pub email: String,
    pub password: String,
    pub password_hash: String,
    pub weak: bool,
}

pub fn fixtures() -> Vec<Fixture> {
    let text = include_str!("../fixtures/imported_hashes.jsonl");
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn stored_hash(app: &TestApp, email: &str) -> String {
    let db = sea_orm::Database::connect(app.db.url()).await.unwrap();
    let row = accounts::Entity::find().filter(accounts::Column::Email.eq(email)).one(&db).await.unwrap();
    row.and_then(|r| r.password_hash).unwrap_or_default()
}

fn import(f: &Fixture) -> CreateAccountRequest {
    CreateAccountRequest { email: f.email.clone(), password_hash: f.password_hash.clone(), ..Default::default() }
}

async fn verify(app: &TestApp, email: &str, password: &str) -> bool {
    app.accounts()
        .verify_password(VerifyPasswordRequest { email: email.into(), password: password.into() })
        .await
        .unwrap()
        .into_inner()
        .valid
}

#[tokio::test]
async fn every_format_imports_verifies_and_is_rehashed_to_argon2id() {
    let app = TestApp::spawn_with(|mut c| {
        c.hasher.imports.allow_weak = true;
        c
    })
    .await;
    let all = fixtures();
    assert!(all.len() >= 15, "the fixture covers every format");
    for f in &all {
        let account = app.accounts().create_account(import(f)).await.unwrap_or_else(|s| panic!("{}: {s:?}", f.format));
        assert!(account.into_inner().has_usable_password);
        assert!(!verify(&app, &f.email, "not the password at all").await, "{}: a wrong password", f.format);
        assert!(verify(&app, &f.email, &f.password).await, "{}: its own password verifies", f.format);
        let rehashed = stored_hash(&app, &f.email).await;
        assert!(rehashed.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{}: rehashed, got {rehashed}", f.format);
        assert!(verify(&app, &f.email, &f.password).await, "{}: verifies after the rehash", f.format);
    }
}

#[tokio::test]
async fn weak_formats_are_refused_without_the_flag_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    for f in fixtures().iter().filter(|f| f.weak) {
        let status = app.accounts().create_account(import(f)).await.unwrap_err();
        assert_eq!(bad_request_fields(&status), ["password_hash"], "{}", f.format);
        assert!(status.message().contains("--allow-weak-imported-hashes"), "{}", status.message());
        assert_eq!(stored_hash(&app, &f.email).await, "", "{}: nothing stored", f.format);
    }
}

#[tokio::test]
async fn malformed_unknown_or_too_costly_hashes_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        "plaintext",
        "$1$saltsalt$abcdefghijklmnopqrstuv",
        "pbkdf2_sha256$abc$salt$aGVsbG8=",
        "pbkdf2_sha256$50000000$salt$mHwkmjfGhEIfPuDan7Wsvxnz3lb+pSBnD7O6oFOg5Yg=",
        "$2b$31$NQOHRHnRexj5SBu57l3Bue.Q7K.nZOQlxmKiUzhMrIKMmBpS7kgIu",
        "$argon2id$v=19$m=4194304,t=2,p=1$Zml6TXl4UXZYTlBmamdkaGVOeVMxNw$JdFjS8",
        "$argon2d$v=19$m=65536,t=2,p=1$Zml6TXl4UXZYTlBmamdkaGVOeVMxNw$JdFjS8JdFjS8JdFjS8",
        "bcrypt$$notbcrypt",
    ];
    for (i, hash) in cases.iter().enumerate() {
        let email = format!("case{i}@example.com");
        let request =
            CreateAccountRequest { email: email.clone(), password_hash: (*hash).into(), ..Default::default() };
        let status = app.accounts().create_account(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{hash}");
        assert_eq!(bad_request_fields(&status), ["password_hash"], "{hash}");
        assert_eq!(stored_hash(&app, &email).await, "", "{hash}: nothing stored");
    }
    let both = CreateAccountRequest {
        email: "both@example.com".into(),
        password: Some(STRONG.into()),
        password_hash: fixtures()[0].password_hash.clone(),
        ..Default::default()
    };
    let status = app.accounts().create_account(both).await.unwrap_err();
    assert_eq!(bad_request_fields(&status), ["password_hash"]);
}
