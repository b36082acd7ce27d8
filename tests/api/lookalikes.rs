//! Logins that look alike are one login, and an e-mail is a bare address:
//! usernames by PRECIS, case folding and UTS #39 skeleton (unique in the database, also
//! under a race, and for usernames stored before), addresses without display names,
//! comments or lists, with one cap per mailbox however it is spelled.

use pwreset::domain::runtime::limits::RateLimits;
use pwreset::proto::{
    ConfirmRequest, CreateAccountRequest, GetAccountRequest, RequestTokenRequest, ValidateTokenRequest,
    VerifyPasswordRequest, event, get_account_request,
};
use pwreset::store::entity::accounts;
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tonic::Code;

use crate::helpers::*;

fn with_name(email: &str, username: &str) -> CreateAccountRequest {
    CreateAccountRequest {
        email: email.into(),
        password: Some(STRONG.into()),
        username: username.into(),
        ..Default::default()
    }
}

fn by_username(username: &str) -> RequestTokenRequest {
    RequestTokenRequest { username: username.into(), ..Default::default() }
}

/// The e-mail the token requested by `username` went to.
async fn mailed_for(app: &TestApp, username: &str) -> String {
    let mut events = app.subscribe(None).await;
    app.reset().request_token(by_username(username)).await.expect("request");
    token_created(next_event(&mut events).await).email
}

async fn db(app: &TestApp) -> sea_orm::DatabaseConnection {
    sea_orm::Database::connect(app.db.url()).await.unwrap()
}

async fn get_by_email(app: &TestApp, email: &str) -> Result<pwreset::proto::Account, tonic::Status> {
    let key = Some(get_account_request::Key::Email(email.into()));
    app.accounts().get_account(GetAccountRequest { key }).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn lookalike_usernames_are_one_login() {
    let app = TestApp::spawn().await;
    let mut accounts = app.accounts();
    let greek = accounts.create_account(with_name("greek@example.com", "ΟΔΟΣ42")).await.unwrap().into_inner();
    assert_eq!(greek.username, "οδοσ42", "final sigma folded");
    accounts.create_account(with_name("latin@example.com", "scope")).await.unwrap();
    accounts.create_account(with_name("admin@example.com", "admin_x7")).await.unwrap();
    for (email, lookalike) in [
        ("a@example.com", "οδος42"),          // final sigma, lower case
        ("b@example.com", "ѕсоре"),           // all Cyrillic: one script, same skeleton
        ("c@example.com", "ADMIN_X7"),        // case
        ("d@example.com", "ａｄｍｉｎ_ｘ７"), // full width
        ("e@example.com", "adrnin_x7"),       // rn for m
    ] {
        let status = accounts.create_account(with_name(email, lookalike)).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{lookalike}");
    }
    for (email, refused) in [
        ("f@example.com", "аdmin_x7"), // Cyrillic а among Latin
        ("g@example.com", "ΟΔΟΣ42d2"), // Greek with a Latin d
        ("h@example.com", "οδοσ42d2"),
        ("i@example.com", "bob\u{3164}x"), // HANGUL FILLER
        ("j@example.com", "bob\u{200b}"),  // zero-width space
        ("k@example.com", "bob\u{3164}"),
    ] {
        let status = accounts.create_account(with_name(email, refused)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(bad_request_fields(&status), ["username"], "{refused:?}");
    }
    // Any spelling finds the account; a lookalike finds the account it looks like.
    assert_eq!(mailed_for(&app, "οδος42").await, "greek@example.com");
    assert_eq!(mailed_for(&app, "ΟΔΟΣ42").await, "greek@example.com");
    assert_eq!(mailed_for(&app, "ѕсоре").await, "latin@example.com");
    assert_eq!(mailed_for(&app, "аdmin_x7").await, "admin@example.com");
    // `login` on ValidateToken compares the same way.
    let mut events = app.subscribe(None).await;
    app.reset().request_token(by_username("οδοσ42")).await.unwrap();
    let token = token_created(next_event(&mut events).await).token;
    let validate = |login: &str| ValidateTokenRequest { token: token.clone(), login: login.into() };
    app.reset().validate_token(validate("ΟΔΟΣ42")).await.expect("the same login, spelled otherwise");
    assert_eq!(code(app.reset().validate_token(validate("scope")).await), Code::NotFound);
    let invisible = app.reset().validate_token(validate("οδοσ42\u{3164}")).await.unwrap_err();
    assert_eq!(invisible.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn concurrent_lookalikes_create_one_account() {
    let app = TestApp::spawn().await;
    let spellings = ["scope", "SCOPE", "ѕсоре", "ЅСОРЕ", "ｓｃｏｐｅ", "Scope", "ScOpE", "sCOPE"];
    let calls = spellings.iter().enumerate().map(|(i, name)| {
        let mut accounts = app.accounts();
        async move { accounts.create_account(with_name(&format!("racer{i}@example.com"), name)).await.map(|_| ()) }
    });
    let results = futures_util::future::join_all(calls).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    let exists = results.iter().filter(|r| code((*r).clone()) == Code::AlreadyExists).count();
    assert_eq!((created, exists), (1, spellings.len() - 1), "{results:?}");
}

/// Runs `pwreset import FILE` against the app's database; (exit code, output). Off the
/// test's runtime thread, so the server (on that thread) keeps serving meanwhile and
/// never sits on a SQLite write lock while the import waits for it.
async fn run_import(app: &TestApp, file: &std::path::Path) -> (i32, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pwreset"));
    command
        .args(["import", file.to_str().unwrap(), "--no-migrate", "--database-url", app.db.url()])
        .env_remove("PWRESET_DATABASE_URL");
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn the_import_skips_lookalikes_and_refuses_bad_names_and_addresses() {
    let app = TestApp::spawn().await;
    app.accounts().create_account(with_name("latin@example.com", "scope")).await.unwrap();
    let hash = crate::imported::fixtures().into_iter().find(|f| f.format == "argon2id").unwrap().password_hash;
    let line = |email: &str, username: &str| {
        serde_json::json!({"email": email, "password_hash": hash, "username": username}).to_string()
    };
    let lines = [
        line("x1@example.com", "ѕсоре"),           // lookalike of an existing account: skipped
        line("x2@example.com", "newcomer"),        // imported
        line("x3@example.com", "NEWCOMER"),        // lookalike earlier in the file: skipped
        line("x4@example.com", "аdmin"),           // mixed scripts: refused
        line("x5@example.com", "bob\u{3164}x"),    // invisible: refused
        line("n0<victim@example.com>", "victim0"), // not a bare address: refused
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (status, out) = run_import(&app, &file).await;
    assert_eq!(status, 2, "{out}");
    assert!(out.starts_with("imported 1, skipped 2 (e-mail, username or phone already present), refused 3"), "{out}");
    for refused in ["line 4: username", "line 5: username", "line 6: email"] {
        assert!(out.contains(refused), "{refused}: {out}");
    }
}

#[tokio::test]
async fn usernames_stored_before_keep_working_and_old_lookalikes_do_not_fail_the_migration() {
    let app = TestApp::spawn().await;
    app.accounts().create_account(with_name("admin@example.com", "admin_x7")).await.unwrap();
    // Back to the schema before migration 11, and rows as the old rule stored them
    // (NFKC, lower case): a later Cyrillic lookalike, a final sigma, a HANGUL FILLER
    // (NFKC makes it U+1160, which today's rule refuses).
    let conn = db(&app).await;
    <migration::Migrator as migration::MigratorTrait>::down(&conn, Some(1)).await.unwrap();
    let later = app.clock_now().timestamp_millis() + 60_000;
    let hash = crate::imported::fixtures().into_iter().find(|f| f.format == "argon2id").unwrap().password_hash;
    for (email, username) in
        [("late@example.com", "аdmin_x7"), ("sigma@example.com", "οδος42"), ("filler@example.com", "bob\u{1160}x")]
    {
        let insert = Query::insert()
            .into_table(Alias::new("accounts"))
            .columns(["id", "email", "password_hash", "active", "created_at", "updated_at", "username"].map(Alias::new))
            .values_panic([
                uuid::Uuid::new_v4().into(),
                email.into(),
                hash.clone().into(),
                true.into(),
                later.into(),
                later.into(),
                username.into(),
            ])
            .to_owned();
        conn.execute(&insert).await.unwrap();
    }
    let app = app.restart().await;
    // The older account keeps the login; the lookalike finds it.
    assert_eq!(mailed_for(&app, "admin_x7").await, "admin@example.com");
    assert_eq!(mailed_for(&app, "аdmin_x7").await, "admin@example.com");
    // Stored as `οδος42`, found by any spelling now.
    assert_eq!(mailed_for(&app, "ΟΔΟΣ42").await, "sigma@example.com");
    assert_eq!(mailed_for(&app, "οδοσ42").await, "sigma@example.com");
    // The two that lost the login keep their accounts and e-mail logins.
    for (email, username) in [("late@example.com", "аdmin_x7"), ("filler@example.com", "bob\u{1160}x")] {
        let account = get_by_email(&app, email).await.unwrap();
        assert_eq!(account.username, username);
        let row = accounts::Entity::find().filter(accounts::Column::Email.eq(email)).one(&conn).await.unwrap();
        assert_eq!(row.unwrap().username_skeleton, None, "{email}");
    }
    // And the index holds from now on.
    let status = app.accounts().create_account(with_name("new@example.com", "ADMIN_X7")).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn an_address_with_a_display_name_is_refused_everywhere_and_reports_nothing() {
    let app = TestApp::spawn_with(|mut c| {
        c.events.emit_unknown_account_events = true;
        c
    })
    .await;
    app.create_account("victim@example.com", Some(STRONG)).await;
    let attacks: Vec<String> = (0..10)
        .map(|i| format!("n{i}<victim@example.com>"))
        .chain([
            "\"https://evil.example/reset-now\" <victim@example.com>".into(),
            "victim@example.com, attacker@evil.example".into(),
            "victim@example.com (note)".into(),
            "\"victim\"@example.com".into(),
            "unknown@example.com>".into(),
        ])
        .collect();
    for attack in &attacks {
        let request = RequestTokenRequest { email: attack.clone(), ..Default::default() };
        let status = app.reset().request_token(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{attack}");
        assert_eq!(bad_request_fields(&status), ["email"], "{attack}");
        let create = app.accounts().create_account(with_name(attack, "")).await.unwrap_err();
        assert_eq!(create.code(), Code::InvalidArgument, "{attack}");
        let verify = VerifyPasswordRequest { email: attack.clone(), password: STRONG.into() };
        assert_eq!(code(app.accounts().verify_password(verify).await), Code::InvalidArgument, "{attack}");
        assert_eq!(code(get_by_email(&app, attack).await), Code::InvalidArgument, "{attack}");
        let validate = ValidateTokenRequest { token: "x".repeat(43), login: attack.clone() };
        let status = app.reset().validate_token(validate).await.unwrap_err();
        assert_eq!((status.code(), bad_request_fields(&status)), (Code::InvalidArgument, vec!["login".into()]));
        let confirm =
            ConfirmRequest { token: "x".repeat(43), new_password: OTHER_STRONG.into(), login: attack.clone() };
        assert_eq!(code(app.reset().confirm(confirm).await), Code::InvalidArgument, "{attack}");
    }
    // Nothing was written for any of them: the first events after these are the marker's.
    app.create_account("marker@example.com", Some(STRONG)).await;
    app.request_token("marker@example.com").await.unwrap();
    let mut all = app.subscribe(Some(0)).await;
    loop {
        match next_event(&mut all).await.kind {
            Some(event::Kind::TokenCreated(t)) if t.email == "marker@example.com" => break,
            Some(other) => panic!("an event for a refused address: {other:?}"),
            None => {}
        }
    }
}

#[tokio::test]
async fn every_spelling_of_an_address_shares_one_cap() {
    let app = TestApp::spawn_with(|mut c| {
        c.events.emit_unknown_account_events = true;
        c.limits = RateLimits { account_tokens: "2/1h".parse().ok(), ..RateLimits::default() };
        c
    })
    .await;
    for spelling in [
        "victim@example.com",
        "VICTIM@EXAMPLE.COM",
        "victim@ｅｘａｍｐｌｅ.com",
        "victim@ＥＸＡＭＰＬＥ．ＣＯＭ",
        "victim@example。com",
        " Victim@Example.Com ",
    ] {
        app.request_token(spelling).await.unwrap_or_else(|s| panic!("{spelling}: {s:?}"));
    }
    app.create_account("marker@example.com", Some(STRONG)).await;
    app.request_token("marker@example.com").await.unwrap();
    let mut all = app.subscribe(Some(0)).await;
    let mut reports = Vec::new();
    loop {
        match next_event(&mut all).await.kind {
            Some(event::Kind::ResetRequestedForUnknownEmail(r)) => reports.push(r.email),
            Some(event::Kind::TokenCreated(t)) if t.email == "marker@example.com" => break,
            _ => {}
        }
    }
    assert_eq!(reports, ["victim@example.com", "victim@example.com"], "one mailbox, one cap");
}

#[tokio::test]
async fn an_address_stored_before_the_addr_spec_rule_can_still_sign_in_but_is_never_mailed() {
    let app = TestApp::spawn().await;
    app.create_account("odd@example.com", Some(STRONG)).await;
    // The old rule accepted (and stored) a local part with two dots in a row.
    accounts::Entity::update_many()
        .col_expr(accounts::Column::Email, Expr::value("odd..name@example.com"))
        .filter(accounts::Column::Email.eq("odd@example.com"))
        .exec(&db(&app).await)
        .await
        .unwrap();
    assert!(app.verify("Odd..Name@Example.com", STRONG).await);
    assert!(!app.verify("odd..name@example.com", OTHER_STRONG).await);
    assert_eq!(get_by_email(&app, "odd..name@example.com").await.unwrap().email, "odd..name@example.com");
    assert_eq!(code(app.request_token("odd..name@example.com").await), Code::InvalidArgument);
}

#[tokio::test]
async fn the_migration_keys_every_stored_username_page_by_page() {
    let app = TestApp::spawn().await;
    let conn = db(&app).await;
    <migration::Migrator as migration::MigratorTrait>::down(&conn, Some(1)).await.unwrap();
    // Three pages and a bit, with many accounts created in the same millisecond.
    let n = 3_100u64;
    let hash = crate::imported::fixtures().into_iter().find(|f| f.format == "argon2id").unwrap().password_hash;
    for chunk in 0..(n / 100) {
        let mut insert = Query::insert()
            .into_table(Alias::new("accounts"))
            .columns(["id", "email", "password_hash", "active", "created_at", "updated_at", "username"].map(Alias::new))
            .to_owned();
        for k in chunk * 100..(chunk + 1) * 100 {
            let created = (k % 7) as i64;
            insert.values_panic([
                uuid::Uuid::new_v4().into(),
                format!("u{k}@example.com").into(),
                hash.clone().into(),
                true.into(),
                created.into(),
                created.into(),
                format!("user.{k}").into(),
            ]);
        }
        conn.execute(&insert).await.unwrap();
    }
    let app = app.restart().await;
    let keyed = accounts::Entity::find().filter(accounts::Column::UsernameSkeleton.is_not_null()).count(&conn).await;
    assert_eq!(keyed.unwrap(), n);
    assert_eq!(mailed_for(&app, "USER.3099").await, "u3099@example.com");
}
