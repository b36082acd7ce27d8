//! Compromised and reused passwords: `BREACHED` from the built-in list, a plain
//! text file or Have I Been Pwned's sorted download; `REUSED` against the account's
//! last N passwords, with older hashes deleted.

use pwreset::domain::model::breached::BreachedPasswords;
use pwreset::proto::{ChangePasswordRequest, ConfirmRequest, CreateAccountRequest};
use pwreset::store::entity::password_history;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use sha1::{Digest, Sha1};
use tonic::Status;

use crate::helpers::*;

const LEAKED: &str = "amber lantern drifts over quiet fields";

fn reasons(status: &Status) -> Vec<String> {
    bad_request_reasons(status)
}

async fn app_with_list(contents: &str, file_name: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, contents).unwrap();
    let lists = BreachedPasswords::with_file(&path).unwrap();
    let app = TestApp::spawn_with(move |mut c| {
        c.passwords.breached = lists;
        c
    })
    .await;
    (app, dir)
}

async fn refused_everywhere(app: &TestApp) {
    let status = app
        .accounts()
        .create_account(CreateAccountRequest {
            email: "new@example.com".into(),
            password: Some(LEAKED.into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&status), ["password"]);
    assert_eq!(reasons(&status), ["BREACHED"]);

    let (account_id, token) = app.account_with_token("ada@example.com").await;
    let confirm = ConfirmRequest { token: token.clone(), new_password: LEAKED.into(), ..Default::default() };
    let status = app.reset().confirm(confirm).await.unwrap_err();
    assert_eq!(bad_request_fields(&status), ["new_password"]);
    assert_eq!(reasons(&status), ["BREACHED"]);

    let change = ChangePasswordRequest { account_id, current_password: STRONG.into(), new_password: LEAKED.into() };
    let status = app.accounts().change_password(change).await.unwrap_err();
    assert_eq!(reasons(&status), ["BREACHED"]);
    // The token is still usable with a good password.
    let confirm = ConfirmRequest { token, new_password: OTHER_STRONG.into(), ..Default::default() };
    app.reset().confirm(confirm).await.unwrap();
}

#[tokio::test]
async fn a_plain_text_list_refuses_its_passwords_everywhere() {
    let (app, _dir) = app_with_list(&format!("something else\r\n{LEAKED}\n"), "leaked.txt").await;
    refused_everywhere(&app).await;
}

#[tokio::test]
async fn a_hash_list_with_a_header_line_refuses_its_passwords() {
    // Was read as plain text (the format guessed from line 1): every listed password passed.
    let lines = hibp_lines((0..302).map(|i| format!("listed {i} over quiet fields")));
    let contents = format!("SHA1:Count\r\n{}\r\n", lines.join("\r\n"));
    let (app, _dir) = app_with_list(&contents, "pwned-with-header.txt").await;
    refused_everywhere(&app).await;
}

#[tokio::test]
async fn a_sorted_hibp_download_refuses_its_passwords_everywhere() {
    let lines = hibp_lines((0..2000).map(|i| format!("other {i}")));
    let (app, _dir) = app_with_list(&(lines.join("\r\n") + "\r\n"), "pwned-passwords-ordered-by-hash.txt").await;
    refused_everywhere(&app).await;
}

/// `passwords` and `LEAKED` as a HIBP download: `SHA1-HEX:count` lines sorted by hash.
fn hibp_lines(passwords: impl Iterator<Item = String>) -> Vec<String> {
    let mut lines: Vec<String> = passwords
        .chain([LEAKED.to_owned()])
        .map(|p| {
            let hex: String = Sha1::digest(p.as_bytes()).iter().map(|b| format!("{b:02X}")).collect();
            format!("{hex}:{}", p.len())
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn the_built_in_list_is_on_by_default() {
    let app = TestApp::spawn_with(|mut c| {
        // Short enough and strong enough for the other rules to pass: only BREACHED fails.
        c.passwords.min_length = 8;
        c.passwords.min_score = 0;
        c
    })
    .await;
    let status = app
        .accounts()
        .create_account(CreateAccountRequest {
            email: "ada@example.com".into(),
            password: Some("trustno1".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reasons(&status), ["BREACHED"]);
}

fn passwords() -> Vec<String> {
    (0..6).map(|i| format!("{OTHER_STRONG} edition {i}")).collect()
}

async fn history_rows(app: &TestApp, account_id: &str) -> u64 {
    let db = sea_orm::Database::connect(app.db.url()).await.unwrap();
    password_history::Entity::find()
        .filter(password_history::Column::AccountId.eq(uuid::Uuid::parse_str(account_id).unwrap()))
        .count(&db)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_last_n_passwords_are_refused_and_older_ones_forgotten() {
    let app = TestApp::spawn_with(|mut c| {
        c.passwords.history = 4;
        c
    })
    .await;
    let p = passwords();
    let account = app.create_account("ada@example.com", Some(&p[0])).await;
    let id = account.account_id;
    let change = |from: &str, to: &str| ChangePasswordRequest {
        account_id: id.clone(),
        current_password: from.into(),
        new_password: to.into(),
    };
    for i in 1..4 {
        app.accounts().change_password(change(&p[i - 1], &p[i])).await.unwrap();
    }
    // Current: p3; kept: p2, p1, p0.
    assert_eq!(history_rows(&app, &id).await, 3);
    for old in [&p[0], &p[1], &p[2]] {
        let status = app.accounts().change_password(change(&p[3], old)).await.unwrap_err();
        assert_eq!(bad_request_fields(&status), ["new_password"]);
        assert_eq!(reasons(&status), ["REUSED"], "{old}");
    }
    // A reset refuses them too, the current one included.
    let token = app.new_token("ada@example.com").await;
    for old in [&p[0], &p[3]] {
        let confirm = ConfirmRequest { token: token.clone(), new_password: old.clone(), ..Default::default() };
        let status = app.reset().confirm(confirm).await.unwrap_err();
        assert_eq!(reasons(&status), ["REUSED"], "{old}");
    }
    let confirm = ConfirmRequest { token, new_password: p[4].clone(), ..Default::default() };
    app.reset().confirm(confirm).await.unwrap();
    // Current: p4; kept: p3, p2, p1. p0 is forgotten: allowed again, and never kept beyond N.
    assert_eq!(history_rows(&app, &id).await, 3);
    app.accounts().change_password(change(&p[4], &p[0])).await.unwrap();
    assert!(app.verify("ada@example.com", &p[0]).await);
    assert_eq!(history_rows(&app, &id).await, 3);
}

#[tokio::test]
async fn without_a_history_nothing_is_kept() {
    let app = TestApp::spawn().await;
    let p = passwords();
    let account = app.create_account("ada@example.com", Some(&p[0])).await;
    let change = ChangePasswordRequest {
        account_id: account.account_id.clone(),
        current_password: p[0].clone(),
        new_password: p[1].clone(),
    };
    app.accounts().change_password(change).await.unwrap();
    let back = ChangePasswordRequest {
        account_id: account.account_id.clone(),
        current_password: p[1].clone(),
        new_password: p[0].clone(),
    };
    app.accounts().change_password(back).await.unwrap();
    assert_eq!(history_rows(&app, &account.account_id).await, 0);
}

#[tokio::test]
async fn lowering_the_history_deletes_what_lies_beyond_it_at_the_next_purge() {
    let app = TestApp::spawn_with(|mut c| {
        c.passwords.history = 4;
        c
    })
    .await;
    let p = passwords();
    let account = app.create_account("ada@example.com", Some(&p[0])).await;
    for i in 1..4 {
        let change = ChangePasswordRequest {
            account_id: account.account_id.clone(),
            current_password: p[i - 1].clone(),
            new_password: p[i].clone(),
        };
        app.accounts().change_password(change).await.unwrap();
    }
    assert_eq!(history_rows(&app, &account.account_id).await, 3);
    let key = match &app.config.key {
        pwreset::config::KeySource::Given(key) => key.encode(),
        other => panic!("a test app has a given key, not {other:?}"),
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pwreset"))
        .args(["purge", "--no-migrate", "--password-history", "2", "--database-url", app.db.url()])
        .args(["--secret-key", &key])
        .env_remove("PWRESET_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(history_rows(&app, &account.account_id).await, 1, "N = 2: the current hash and one kept");
}
