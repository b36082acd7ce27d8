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

/// Runs `pwreset import FILE` against the app's database; (exit code, stdout).
fn run_import(app: &TestApp, file: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pwreset"))
        .args(["import", file.to_str().unwrap(), "--no-migrate", "--database-url", app.db.url()])
        .args(extra)
        .env_remove("PWRESET_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn the_import_command_brings_django_hashes_and_is_idempotent() {
    let app = TestApp::spawn().await;
    let dir = tempfile::TempDir::new().unwrap();
    // The fixture's extra fields (format, the plaintext, …) are ignored by the importer.
    let file = dir.path().join("users.jsonl");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/imported_hashes.jsonl"), &file).unwrap();
    app.create_account("md5@example.com", Some(STRONG)).await;

    let (code, out) = run_import(&app, &file, &["--allow-weak-imported-hashes"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("imported 14, skipped 1 (e-mail, username or phone already present), refused 0"), "{out}");
    for f in fixtures().iter().filter(|f| f.email != "md5@example.com") {
        assert!(verify(&app, &f.email, &f.password).await, "{} imported and verifies", f.format);
    }
    assert!(verify(&app, "md5@example.com", STRONG).await, "an existing account is never overwritten");

    let (code, out) = run_import(&app, &file, &["--allow-weak-imported-hashes"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("imported 0, skipped 15"), "idempotent: {out}");
}

#[tokio::test]
async fn refused_lines_are_reported_by_number_and_fail_the_command() {
    let app = TestApp::spawn().await;
    let dir = tempfile::TempDir::new().unwrap();
    let good = &fixtures()[0];
    let file = dir.path().join("users.csv");
    let csv = format!(
        "email,password_hash,active,created_at\n\
         {email},{hash},false,2020-05-01T10:00:00Z\n\
         not-an-email,{hash},,\n\
         weak@example.com,md5$salt$0123456789abcdef0123456789abcdef,,\n\
         late@example.com,{hash},true,yesterday\n",
        email = good.email,
        hash = good.password_hash
    );
    std::fs::write(&file, csv).unwrap();
    let (code, out) = run_import(&app, &file, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("imported 1, skipped 0 (e-mail, username or phone already present), refused 3"), "{out}");
    assert!(out.contains("line 3: email"), "{out}");
    assert!(out.contains("line 4: password_hash") && out.contains("--allow-weak-imported-hashes"), "{out}");
    assert!(out.contains("line 5: created_at"), "{out}");
    let key = Some(pwreset::proto::get_account_request::Key::Email(good.email.clone()));
    let account = app.accounts().get_account(pwreset::proto::GetAccountRequest { key }).await.unwrap().into_inner();
    assert!(!account.active, "active=false imported");
    assert_eq!(account.created_at.map(|t| t.seconds), Some(1_588_327_200), "created_at imported");
    assert!(!verify(&app, &good.email, &good.password).await, "inactive: refused like any inactive account");
}
