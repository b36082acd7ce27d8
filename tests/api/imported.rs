//! Imported password hashes: every format, made by the library that owns it
//! (`tests/fixtures/imported_hashes.jsonl`, written by `scripts/make_hash_fixture.py`
//! with Django's hashers, argon2-cffi, passlib and bcrypt), imports through
//! `CreateAccount`, verifies with its plaintext, and is rehashed to argon2id.

use std::time::Duration;

use pwreset::proto::account_service_client::AccountServiceClient;
use pwreset::proto::{ChangePasswordRequest, CreateAccountRequest, VerifyPasswordRequest};
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
    assert!(all.len() >= 18, "the fixture covers every format");
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
    assert!(out.starts_with("imported 17, skipped 1 (e-mail, username or phone already present), refused 0"), "{out}");
    for f in fixtures().iter().filter(|f| f.email != "md5@example.com") {
        assert!(verify(&app, &f.email, &f.password).await, "{} imported and verifies", f.format);
    }
    assert!(verify(&app, "md5@example.com", STRONG).await, "an existing account is never overwritten");

    let (code, out) = run_import(&app, &file, &["--allow-weak-imported-hashes"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("imported 0, skipped 18"), "idempotent: {out}");
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

/// Hashes each under every former per-parameter ceiling, each seconds of one
/// core per check (a 366-byte PBKDF2-SHA1 output is 19 runs of its iterations). The whole
/// parameter set is priced: refused by `CreateAccount` and by `pwreset import`.
fn costly_hashes() -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = "c2FsdHNhbHRzYWx0c2FsdA";
    let out = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    vec![
        format!("pbkdf2_sha1$2000000$s${}", b64.encode([7u8; 366])),
        format!("$scrypt$ln=17,r=16,p=16${salt}${out}"),
        format!("$argon2id$v=19$m=262144,t=16,p=16${salt}${out}"),
    ]
}

#[tokio::test]
async fn costly_parameter_combinations_are_refused_at_import() {
    let app = TestApp::spawn().await;
    for (i, hash) in costly_hashes().iter().enumerate() {
        let email = format!("costly{i}@example.com");
        let request = CreateAccountRequest { email: email.clone(), password_hash: hash.clone(), ..Default::default() };
        let status = app.accounts().create_account(request).await.unwrap_err();
        assert_eq!(bad_request_fields(&status), ["password_hash"], "{hash}");
        assert!(status.message().contains("--import-max-"), "{hash}: {}", status.message());
        assert_eq!(stored_hash(&app, &email).await, "", "{hash}: nothing stored");
    }
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("costly.jsonl");
    let lines: Vec<String> = costly_hashes()
        .iter()
        .enumerate()
        .map(|(i, h)| serde_json::json!({"email": format!("c{i}@example.com"), "password_hash": h}).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (code, out) = run_import(&app, &file, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("imported 0, skipped 0 (e-mail, username or phone already present), refused 3"), "{out}");
    assert!(out.contains("--import-max-cost-ms"), "{out}");
}

/// A stored hash that cannot be checked (here one written straight into the database;
/// in life one stored under ceilings since lowered) is a wrong password, never INTERNAL.
#[tokio::test]
async fn a_stored_hash_that_cannot_be_checked_is_a_mismatch_not_an_error() {
    let app = TestApp::spawn().await;
    let db = sea_orm::Database::connect(app.db.url()).await.unwrap();
    for (i, hash) in ["nonsense", "$2b$99$abc", "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$AAAA"].iter().enumerate() {
        let email = format!("broken{i}@example.com");
        app.create_account(&email, Some(STRONG)).await;
        accounts::Entity::update_many()
            .col_expr(accounts::Column::PasswordHash, sea_orm::sea_query::Expr::value(*hash))
            .filter(accounts::Column::Email.eq(&email))
            .exec(&db)
            .await
            .unwrap();
        let answer = app
            .accounts()
            .verify_password(VerifyPasswordRequest { email: email.clone(), password: STRONG.into() })
            .await;
        assert!(!answer.unwrap_or_else(|s| panic!("{hash}: {s:?}")).into_inner().valid, "{hash}");
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// An account imported with a costlier hash than the server's own answers
/// `VerifyPassword` in the time an unknown or native one does (medians of interleaved
/// samples, wrong passwords). Without the answer floor the imported ones took their own
/// algorithm's time on top.
#[tokio::test]
async fn imported_accounts_answer_in_the_time_of_native_and_unknown_ones() {
    let app = TestApp::spawn().await;
    let native_id = app.create_account("native@example.com", Some(STRONG)).await.account_id;
    // (No PBKDF2 here: its generic code is compiled into this crate, unoptimised in a
    // debug build, and runs ~40 times slower than in release.)
    let imports = [
        ("argon2i@example.com", format!("$argon2i$v=19$m=8192,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA${}", "A".repeat(43))),
        ("bcrypt@example.com", "$2b$08$NQOHRHnRexj5SBu57l3Bue.Q7K.nZOQlxmKiUzhMrIKMmBpS7kgIu".to_owned()),
        (
            "scrypt@example.com",
            "$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
        ),
    ];
    let mut imported_ids = Vec::new();
    for (email, hash) in &imports {
        let request =
            CreateAccountRequest { email: (*email).into(), password_hash: hash.clone(), ..Default::default() };
        imported_ids.push(app.accounts().create_account(request).await.unwrap().into_inner().account_id);
    }
    let mut emails = vec!["unknown@example.com", "native@example.com"];
    emails.extend(imports.iter().map(|(e, _)| *e));
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); emails.len()];
    let mut client = app.accounts();
    for round in 0..14 {
        for (i, email) in emails.iter().enumerate() {
            let request = VerifyPasswordRequest { email: (*email).into(), password: "a wrong password, surely".into() };
            let sent = pwreset_proto::clock::monotonic();
            assert!(!client.verify_password(request).await.unwrap().into_inner().valid);
            // The first round warms connections and caches.
            if round > 0 {
                samples[i].push(sent.elapsed());
            }
        }
    }
    let medians: Vec<Duration> = samples.iter_mut().map(|s| median(s)).collect();
    let unknown = medians[0];
    let tolerance = Duration::from_millis(3).max(unknown / 10);
    for (email, m) in emails.iter().zip(&medians) {
        let gap = m.abs_diff(unknown);
        assert!(gap <= tolerance, "{email}: median {m:?} vs unknown {unknown:?} (all: {emails:?} {medians:?})");
    }

    // ChangePassword's wrong current password: the same for a native and an imported account.
    let ids = [native_id, imported_ids[0].clone(), imported_ids[2].clone()];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); ids.len()];
    for round in 0..10 {
        for (i, id) in ids.iter().enumerate() {
            let request = ChangePasswordRequest {
                account_id: id.clone(),
                current_password: "a wrong password, surely".into(),
                new_password: "violet kettle marathon quietly glows".into(),
            };
            let sent = pwreset_proto::clock::monotonic();
            let status = client.change_password(request).await.unwrap_err();
            assert_eq!(bad_request_fields(&status), ["current_password"]);
            if round > 0 {
                samples[i].push(sent.elapsed());
            }
        }
    }
    let medians: Vec<Duration> = samples.iter_mut().map(|s| median(s)).collect();
    let native = medians[0];
    let tolerance = Duration::from_millis(3).max(native / 10);
    for m in &medians {
        let gap = m.abs_diff(native);
        assert!(gap <= tolerance, "ChangePassword medians {medians:?} (native, argon2i, scrypt)");
    }
}

/// Peak RSS of a process, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The README's promise under concurrent checks of heavy but allowed imported hashes:
/// the `pwreset` process (a child, so nothing else shares its RSS) stays under
/// workers × (--argon2-memory-kib + --import-max-memory-kib) + 64 MiB.
#[tokio::test]
async fn concurrent_checks_of_heavy_imported_hashes_keep_the_memory_promise() {
    const WORKERS: u64 = 2;
    const ARGON2_KIB: u64 = 19 * 1024;
    const IMPORT_KIB: u64 = 64 * 1024;
    let app = TestApp::spawn_with(|mut c| {
        c.hasher.imports.max_memory_kib = IMPORT_KIB;
        c
    })
    .await;
    let salt = "c2FsdHNhbHRzYWx0c2FsdA";
    let out = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    // Each at (nearly) the memory ceiling: argon2 m = 64 MiB; scrypt 128·r·N = 60 MiB.
    let heavy =
        [format!("$argon2id$v=19$m=65536,t=1,p=1${salt}${out}"), format!("$scrypt$ln=15,r=15,p=1${salt}${out}")];
    let mut emails = Vec::new();
    for i in 0..8 {
        let email = format!("heavy{i}@example.com");
        let request = CreateAccountRequest {
            email: email.clone(),
            password_hash: heavy[i % heavy.len()].clone(),
            ..Default::default()
        };
        app.accounts().create_account(request).await.unwrap();
        emails.push(email);
    }
    use base64::Engine;
    let secret_key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pwreset"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-migrate", "--database-url", app.db.url()])
        .args(["--hash-workers", &WORKERS.to_string(), "--argon2-memory-kib", &ARGON2_KIB.to_string()])
        .args(["--import-max-memory-kib", &IMPORT_KIB.to_string(), "--verify-failure-limit", "0"])
        .args(["--rate-verify-password", "off", "--log-format", "text", "--secret-key", &secret_key])
        .env_remove("PWRESET_DATABASE_URL")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("server: {line}");
            if line.contains("pwreset listening")
                && let Some(at) = line.split("address=").nth(1)
            {
                let _ = found.send(at.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let address = address.recv_timeout(Duration::from_secs(30)).expect("the server announces its address");
    let pid = child.id();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap().connect_lazy();
    let before = peak_rss_kib(pid);
    for _ in 0..2 {
        let mut calls = tokio::task::JoinSet::new();
        for email in emails.clone() {
            let mut client = AccountServiceClient::new(channel.clone());
            calls.spawn(async move {
                client.verify_password(VerifyPasswordRequest { email, password: "not it at all".into() }).await
            });
        }
        while let Some(answer) = calls.join_next().await {
            assert!(!answer.unwrap().unwrap().into_inner().valid);
        }
    }
    let peak = peak_rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    let promise = WORKERS * (ARGON2_KIB + IMPORT_KIB) + 64 * 1024;
    eprintln!("peak RSS {} MiB (before the checks {} MiB), promise {} MiB", peak / 1024, before / 1024, promise / 1024);
    assert!(peak > before + IMPORT_KIB / 2, "the heavy checks ran ({before} -> {peak} KiB)");
    assert!(peak <= promise, "peak RSS {peak} KiB over the promised {promise} KiB");
}
