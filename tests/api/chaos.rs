//! Crash under load: the built binary is killed with SIGKILL while 16 callers request
//! tokens, then restarted on the same database. Counted and printed: requests answered
//! OK whose `TokenCreated` is missing (must be 0), duplicate sequences (0), and whether
//! a subscriber resumes from its cursor with nothing missed (it must).

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine;
use pwreset::proto::account_service_client::AccountServiceClient;
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{CreateAccountRequest, Event, RequestTokenRequest, SubscribeEventsRequest, event};
use tonic::transport::Channel;

use crate::helpers::*;

/// A `pwreset serve` process on `url`, with its address.
struct Server {
    child: Child,
    channel: Channel,
}

impl Server {
    fn start(url: &str, key: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pwreset"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url, "--secret-key", key])
            .args(["--rate-request-token", "off", "--account-token-limit", "off", "--allow-reset-without-password"])
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let line = lines.by_ref().map_while(Result::ok).find(|l| l.contains("pwreset listening")).expect("listening");
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let addr = line.split("address=").nth(1).and_then(|a| a.split_whitespace().next()).expect("address").to_owned();
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        Server { child, channel }
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn events_until_marker(channel: Channel, after: u64, marker: &str) -> Vec<Event> {
    let mut stream = PasswordResetServiceClient::new(channel)
        .subscribe_events(SubscribeEventsRequest { after_sequence: Some(after) })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    loop {
        let e = next_event(&mut stream).await;
        let done = matches!(&e.kind, Some(event::Kind::TokenCreated(t)) if t.email == marker);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

fn created_email(e: &Event) -> Option<&str> {
    match &e.kind {
        Some(event::Kind::TokenCreated(t)) => Some(&t.email),
        _ => None,
    }
}

/// What 16 concurrent callers, one request per account, were answered.
#[derive(Clone, Default)]
struct Answers {
    acked: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<Vec<tonic::Code>>>,
}

/// Starts 16 callers requesting a token for each of `emails` in turn; with
/// `stop_on_error` a caller stops at its first error (the server is gone).
fn load(channel: &Channel, emails: Vec<String>, stop_on_error: bool) -> (Answers, Vec<tokio::task::JoinHandle<()>>) {
    let answers = Answers::default();
    let next = Arc::new(Mutex::new(emails.into_iter()));
    let callers = (0..16)
        .map(|_| {
            let (channel, answers, next) = (channel.clone(), answers.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut client = PasswordResetServiceClient::new(channel);
                loop {
                    let Some(email) = next.lock().unwrap().next() else { return };
                    let request =
                        RequestTokenRequest { email: email.clone(), locale: String::new(), ..Default::default() };
                    match client.request_token(request).await {
                        Ok(_) => answers.acked.lock().unwrap().push(email),
                        Err(status) => {
                            answers.refused.lock().unwrap().push(status.code());
                            if stop_on_error {
                                return;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    (answers, callers)
}

impl Answers {
    async fn wait_for_acks(&self, n: usize) {
        eventually(&format!("{n} requests answered"), || {
            let acked = self.acked.lock().unwrap().len();
            async move {
                tokio::task::yield_now().await;
                acked >= n
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_request() {
    let db = TestDb::create().await;
    let key = base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
    let server = Server::start(db.url(), &key);
    let emails: Vec<String> = (0..400).map(|n| format!("load{n}@example.com")).collect();
    let mut accounts = AccountServiceClient::new(server.channel.clone());
    for email in emails.iter().chain([&"marker@example.com".to_owned()]) {
        accounts
            .create_account(CreateAccountRequest { email: email.clone(), password: None, ..Default::default() })
            .await
            .unwrap();
    }

    // A subscriber following the stream, keeping its cursor as a notifier would.
    let cursor = Arc::new(Mutex::new(0u64));
    let follow = {
        let (channel, cursor) = (server.channel.clone(), Arc::clone(&cursor));
        tokio::spawn(async move {
            let mut stream = PasswordResetServiceClient::new(channel)
                .subscribe_events(SubscribeEventsRequest { after_sequence: Some(0) })
                .await
                .unwrap()
                .into_inner();
            while let Ok(Some(e)) = stream.message().await {
                *cursor.lock().unwrap() = e.sequence;
            }
        })
    };

    // 16 callers, one request per account; the server is killed once 60 were answered OK.
    let (answers, callers) = load(&server.channel, emails.clone(), true);
    answers.wait_for_acks(60).await;
    server.kill_9();
    for caller in callers {
        caller.await.unwrap();
    }
    follow.await.unwrap();
    let acked: Vec<String> = answers.acked.lock().unwrap().clone();
    let cursor = *cursor.lock().unwrap();

    let server = Server::start(db.url(), &key);
    PasswordResetServiceClient::new(server.channel.clone())
        .request_token(RequestTokenRequest {
            email: "marker@example.com".into(),
            locale: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    let all = events_until_marker(server.channel.clone(), 0, "marker@example.com").await;
    let resumed = events_until_marker(server.channel.clone(), cursor, "marker@example.com").await;

    let created: HashSet<&str> = all.iter().filter_map(created_email).collect();
    let lost: Vec<&String> = acked.iter().filter(|e| !created.contains(e.as_str())).collect();
    let sequences: Vec<u64> = all.iter().map(|e| e.sequence).collect();
    let distinct: BTreeSet<u64> = sequences.iter().copied().collect();
    let duplicates = sequences.len() - distinct.len();
    let ordered = sequences.windows(2).all(|w| w[0] < w[1]);
    let expected_after_cursor: Vec<u64> = sequences.iter().copied().filter(|s| *s > cursor).collect();
    let resumed_sequences: Vec<u64> = resumed.iter().map(|e| e.sequence).collect();
    println!(
        "chaos (SIGKILL, {}): acknowledged {}, acknowledged without TokenCreated {}, events {}, duplicate sequences {}, \
         subscriber resumed from {} with {} events (expected {})",
        if app_is_postgres() { "PostgreSQL" } else { "SQLite" },
        acked.len(),
        lost.len(),
        all.len(),
        duplicates,
        cursor,
        resumed_sequences.len(),
        expected_after_cursor.len()
    );
    assert!(lost.is_empty(), "answered OK but never created: {lost:?}");
    assert_eq!(duplicates, 0);
    assert!(ordered, "sequences are strictly increasing");
    assert_eq!(resumed_sequences, expected_after_cursor, "the subscriber resumed from its cursor with nothing missed");
    drop(server);
}

/// Restarts this machine's PostgreSQL cluster (as `.ci/run` may start it).
fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("a cluster under /etc/postgresql");
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "PostgreSQL restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "restarts the machine's PostgreSQL: .ci/run runs it alone, after the suite"]
async fn a_postgres_restart_under_load_loses_no_acknowledged_request() {
    assert!(app_is_postgres(), "run with PWRESET_TEST_DATABASE_URL set");
    let app = TestApp::spawn_with(|mut c| {
        c.tokens.allow_without_usable_password = true;
        c
    })
    .await;
    let emails: Vec<String> = (0..600).map(|n| format!("load{n}@example.com")).collect();
    for email in emails.iter().chain([&"marker@example.com".to_owned()]) {
        app.create_account(email, None).await;
    }
    let (answers, callers) = load(&app.channel, emails.clone(), false);
    answers.wait_for_acks(60).await;
    tokio::task::spawn_blocking(restart_postgres).await.unwrap();
    for caller in callers {
        caller.await.unwrap();
    }
    // The server keeps serving once the database is back.
    let mut marker_ok = false;
    for _ in 0..200 {
        if app.request_token("marker@example.com").await.is_ok() {
            marker_ok = true;
            break;
        }
    }
    assert!(marker_ok, "requests succeed again after the restart");
    let all = events_until_marker(app.channel.clone(), 0, "marker@example.com").await;
    let acked: Vec<String> = answers.acked.lock().unwrap().clone();
    let refused: Vec<tonic::Code> = answers.refused.lock().unwrap().clone();
    let created: HashSet<&str> = all.iter().filter_map(created_email).collect();
    let lost: Vec<&String> = acked.iter().filter(|e| !created.contains(e.as_str())).collect();
    let sequences: BTreeSet<u64> = all.iter().map(|e| e.sequence).collect();
    println!(
        "chaos (PostgreSQL restart): acknowledged {}, refused {} ({:?}), acknowledged without TokenCreated {}, \
         events {}, duplicate sequences {}",
        acked.len(),
        refused.len(),
        refused.iter().map(|c| format!("{c:?}")).collect::<BTreeSet<_>>(),
        lost.len(),
        all.len(),
        all.len() - sequences.len()
    );
    assert!(lost.is_empty(), "answered OK but never created: {lost:?}");
    assert_eq!(all.len(), sequences.len(), "no duplicate sequences");
    assert!(
        refused.iter().all(|c| *c == tonic::Code::Unavailable),
        "a request the restart broke is UNAVAILABLE, never INTERNAL or a false OK: {refused:?}"
    );
}
