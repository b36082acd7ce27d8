//! pwreset-notify against the real thing: a pwreset server in-process on a temporary
//! SQLite file, a real SMTP server (aiosmtpd, `smtp_sink.py`) on loopback, a local HTTP
//! server for the SMS webhook, and the notifier as its built binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pwreset::config::KeySource;
use pwreset::domain::model::keys::ServerKey;
use pwreset::domain::runtime::clock::SystemClock;
use pwreset::proto::account_service_client::AccountServiceClient;
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{ConfirmRequest, CreateAccountRequest, RequestTokenRequest, SubscribeEventsRequest, event};
use pwreset::{App, Config};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::transport::Channel;

const STRONG: &str = "correct horse battery staple orbit";
const NEW: &str = "violet kettle marathon quietly glows";

struct Server {
    addr: SocketAddr,
    channel: Channel,
    url: String,
    _dir: TempDir,
}

async fn server() -> Server {
    server_with(|c| c).await
}

async fn server_with(adjust: impl FnOnce(Config) -> Config) -> Server {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("pwreset.db").display());
    let mut config = adjust(Config::for_tests(&url));
    let mut key = [7u8; 32];
    key[..16].copy_from_slice(uuid_bytes().as_slice());
    config.key = KeySource::Given(ServerKey::from_bytes(key));
    let app = App::build(config, Arc::new(SystemClock)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(app.serve_on(listener, std::future::pending()));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    Server { addr, channel, url, _dir: dir }
}

fn uuid_bytes() -> Vec<u8> {
    let nanos = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id());
    nanos.to_le_bytes().to_vec()
}

impl Server {
    async fn create(&self, request: CreateAccountRequest) {
        AccountServiceClient::new(self.channel.clone()).create_account(request).await.unwrap();
    }

    async fn request(&self, request: RequestTokenRequest) {
        PasswordResetServiceClient::new(self.channel.clone()).request_token(request).await.unwrap();
    }

    /// The token of the newest TokenCreated for `email`, from a replay of the stream.
    async fn token_of(&self, email: &str) -> String {
        let mut stream = PasswordResetServiceClient::new(self.channel.clone())
            .subscribe_events(SubscribeEventsRequest { after_sequence: Some(0) })
            .await
            .unwrap()
            .into_inner();
        let mut found = None;
        while let Ok(Ok(Some(e))) = tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
            if let Some(event::Kind::TokenCreated(t)) = e.kind
                && t.email == email
            {
                found = Some(t.token);
            }
        }
        found.expect("a token for the address")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// aiosmtpd on loopback, writing what it accepts to `out`.
struct Smtp {
    port: u16,
    out: TempDir,
    child: Child,
}

impl Smtp {
    fn start() -> Smtp {
        Smtp::start_with(&[])
    }

    /// With `extra`: `starttls|tls CERT_PEM KEY_PEM` (see `smtp_sink.py`).
    fn start_with(extra: &[&str]) -> Smtp {
        Smtp::launch(extra, &[])
    }

    /// One that answers `450` to every recipient at `domain`, for ever.
    fn start_tempfailing(domain: &str) -> Smtp {
        Smtp::launch(&[], &[("SINK_TEMPFAIL_DOMAIN", domain)])
    }

    /// `450` for ever at `tempfail`, and at `greylist` for `seconds` after an address's
    /// first try (greylisting).
    fn start_greylisting(tempfail: &str, greylist: &str, seconds: &str) -> Smtp {
        let env = [
            ("SINK_TEMPFAIL_DOMAIN", tempfail),
            ("SINK_GREYLIST_DOMAIN", greylist),
            ("SINK_GREYLIST_SECONDS", seconds),
        ];
        Smtp::launch(&[], &env)
    }

    fn launch(extra: &[&str], env: &[(&str, &str)]) -> Smtp {
        let out = TempDir::new().unwrap();
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_sink.py");
        let mut command = Command::new("python3");
        command.envs(env.iter().copied());
        let mut child = command
            .args([script, &port.to_string(), out.path().to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with aiosmtpd (pip install aiosmtpd==1.4.6)");
        let mut ready = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "aiosmtpd did not start");
        Smtp { port, out, child }
    }

    /// Every RCPT TO the server was given, accepted or not.
    fn recipients(&self) -> Vec<String> {
        std::fs::read_to_string(self.out.path().join("rcpt.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn messages(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.out.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()).collect()
    }

    /// The messages, once there are at least `n` (a bound on failure, not a wait).
    async fn wait_for(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(Instant::now() < deadline, "{n} messages within 20 s, got {}: {messages:?}", messages.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn notifier(server: &Server, cursor: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pwreset-notify"));
    command
        .args(["--endpoint", &format!("http://{}", server.addr)])
        .args(["--cursor-file", cursor.to_str().unwrap()])
        .args(["--reset-url", "https://app.example/reset?token={token}"])
        .args(["--setup-url", "https://app.example/welcome?token={token}"])
        .args(["--from", "Accounts <no-reply@app.example>"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    command
}

async fn stop(child: Child) -> (i32, String) {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn find<'a>(messages: &'a [serde_json::Value], to: &str, subject: &str) -> &'a serde_json::Value {
    messages
        .iter()
        .find(|m| m["rcpt"][0] == to && m["subject"] == subject)
        .unwrap_or_else(|| panic!("no {subject:?} to {to} in {messages:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn localised_reset_setup_and_changed_mails_reach_a_real_smtp_server() {
    let server = server_with(|mut c| {
        c.events.emit_unknown_account_events = true;
        c
    })
    .await;
    let smtp = Smtp::start();
    let dir = TempDir::new().unwrap();
    let cursor = dir.path().join("cursor");
    let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let child = notifier(
        &server,
        &cursor,
        &["--smtp-url", &smtp_url, "--notify-unknown-accounts", "--metrics-listen", &metrics],
    )
    .spawn()
    .unwrap();
    server.request(RequestTokenRequest { email: "nobody@example.com".into(), ..Default::default() }).await;

    server
        .create(CreateAccountRequest {
            email: "ada@example.com".into(),
            password: Some(STRONG.into()),
            ..Default::default()
        })
        .await;
    server
        .request(RequestTokenRequest { email: "ada@example.com".into(), locale: "de-AT".into(), ..Default::default() })
        .await;
    server
        .create(CreateAccountRequest {
            email: "grace@example.com".into(),
            send_setup_token: true,
            locale: "fr".into(),
            ..Default::default()
        })
        .await;
    // A recipient the SMTP server refuses for good: logged, skipped, the rest goes on.
    server
        .create(CreateAccountRequest {
            email: "reject@example.com".into(),
            password: Some(STRONG.into()),
            ..Default::default()
        })
        .await;
    server.request(RequestTokenRequest { email: "reject@example.com".into(), ..Default::default() }).await;
    let token = server.token_of("ada@example.com").await;
    PasswordResetServiceClient::new(server.channel.clone())
        .confirm(ConfirmRequest { token: token.clone(), new_password: NEW.into(), ..Default::default() })
        .await
        .unwrap();

    let messages = smtp.wait_for(4).await;
    let reset = find(&messages, "ada@example.com", "Passwort zurücksetzen");
    assert_eq!(reset["content_type"], "multipart/alternative");
    let link = format!("https://app.example/reset?token={token}");
    assert!(reset["text"].as_str().unwrap().contains(&link), "{reset}");
    // In HTML the link is escaped ('/' as &#x2f;): the token itself is intact.
    let html = reset["html"].as_str().unwrap();
    assert!(html.contains("<a href=\"https:") && html.contains(&format!("reset?token={token}\"")), "{reset}");
    assert!(reset["message_id"].as_str().unwrap().ends_with(".pwreset@app.example>"), "{reset}");
    let setup = find(&messages, "grace@example.com", "Configurez votre compte");
    assert!(setup["text"].as_str().unwrap().contains("https://app.example/welcome?token="), "{setup}");
    let changed = find(&messages, "ada@example.com", "Your password was changed");
    assert!(changed["text"].as_str().unwrap().contains("was reset"), "{changed}");
    assert!(!messages.iter().any(|m| m["rcpt"][0] == "reject@example.com"));
    let unknown = find(&messages, "nobody@example.com", "Password reset request");
    assert!(unknown["text"].as_str().unwrap().contains("there is no account"), "{unknown}");

    let health = http_get(&metrics, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let scrape = http_get(&metrics, "/metrics").await;
    assert!(scrape.contains("pwreset_notify_sent_total{channel=\"email\"} 4"), "{scrape}");
    assert!(scrape.contains("pwreset_notify_failed_total{reason=\"permanent\"} 1"), "{scrape}");
    assert!(scrape.contains("pwreset_notify_lag_seconds"), "{scrape}");

    let (code, log) = stop(child).await;
    assert_eq!(code, 0, "SIGTERM: exit 0\n{log}");
    assert!(log.contains("permanent failure; skipped"), "{log}");
    assert!(!log.contains(&token), "the notifier logged a token");
    assert_eq!(messages.len(), 4);
}

async fn http_get(addr: &str, path: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_send_and_cursor_resends_that_message_once_with_the_same_message_id() {
    let server = server().await;
    let smtp = Smtp::start();
    let dir = TempDir::new().unwrap();
    let cursor = dir.path().join("cursor");
    let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
    for name in ["a", "b", "c"] {
        let email = format!("{name}@example.com");
        server
            .create(CreateAccountRequest { email: email.clone(), password: Some(STRONG.into()), ..Default::default() })
            .await;
        server.request(RequestTokenRequest { email, ..Default::default() }).await;
    }
    // The first run dies right after the second message is accepted by the SMTP server.
    let mut first = notifier(&server, &cursor, &["--smtp-url", &smtp_url]);
    first.env("PWRESET_NOTIFY_FAULT", "crash-after-send:2");
    // Blocking on the child off the runtime, which serves pwreset meanwhile.
    let crashed = tokio::task::spawn_blocking(move || first.output().unwrap()).await.unwrap();
    assert!(!crashed.status.success(), "the fault hook aborts");
    assert_eq!(smtp.wait_for(2).await.len(), 2);
    let stored = std::fs::read_to_string(&cursor).unwrap();
    let (through, pending) = stored_position(&stored);
    assert!(through >= 1 && !pending.contains(&1), "the first message is recorded as finished: {stored}");
    assert!(through < 2 || pending.contains(&2), "the second was sent but not recorded: {stored}");
    let child = notifier(&server, &cursor, &["--smtp-url", &smtp_url]).spawn().unwrap();
    let messages = smtp.wait_for(4).await;
    let (code, _) = stop(child).await;
    assert_eq!(code, 0);
    let ids: Vec<&str> = messages.iter().map(|m| m["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids[1], ids[2], "the message sent before the crash is sent again with its Message-ID");
    let recipients: Vec<&str> = messages.iter().map(|m| m["rcpt"][0].as_str().unwrap()).collect();
    assert_eq!(recipients, ["a@example.com", "b@example.com", "b@example.com", "c@example.com"], "none lost");
}

/// The cursor file's `through` and pending sequences (`42` or `42 pending 17 40`).
fn stored_position(text: &str) -> (u64, Vec<u64>) {
    let mut words = text.split_whitespace();
    let through = words.next().unwrap().parse().unwrap();
    let pending = match words.next() {
        Some("pending") => words.map(|w| w.parse().unwrap()).collect(),
        _ => Vec::new(),
    };
    (through, pending)
}

/// A local HTTP server recording each request; answers 503 to the first one.
async fn webhook() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let request = read_request(&mut socket).await;
                let first = {
                    let mut seen = record.lock().unwrap();
                    seen.push(request);
                    seen.len() == 1
                };
                let status = if first { "503 Service Unavailable" } else { "200 OK" };
                let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn texts_go_to_the_webhook_with_retries_and_the_development_folder_gets_both_kinds() {
    let server = server().await;
    let (hook, seen) = webhook().await;
    let out = TempDir::new().unwrap();
    let dir = TempDir::new().unwrap();
    let hook_url = format!("http://{hook}/send");
    let child = notifier(
        &server,
        &dir.path().join("cursor"),
        &[
            "--out-dir",
            out.path().to_str().unwrap(),
            "--sms-webhook-url",
            &hook_url,
            "--sms-webhook-token",
            "gateway-secret",
        ],
    )
    .spawn()
    .unwrap();
    server
        .create(CreateAccountRequest {
            email: "alan@example.com".into(),
            password: Some(STRONG.into()),
            phone: "+44 7911 123456".into(),
            ..Default::default()
        })
        .await;
    server.request(RequestTokenRequest { phone: "+447911123456".into(), ..Default::default() }).await;
    server.request(RequestTokenRequest { email: "alan@example.com".into(), ..Default::default() }).await;
    let code = server.token_of("alan@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 2
        || !out.path().read_dir().unwrap().any(|e| e.unwrap().path().extension().is_some_and(|x| x == "eml"))
    {
        assert!(Instant::now() < deadline, "the webhook was retried and the mail written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one 503, then the retry: {requests:?}");
    let last = &requests[1];
    assert!(last.starts_with("POST /send HTTP/1.1"), "{last}");
    assert!(last.to_ascii_lowercase().contains("authorization: bearer gateway-secret"), "{last}");
    let body: serde_json::Value = serde_json::from_str(last.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["to"], "+447911123456");
    let sms_code =
        body["message"].as_str().unwrap().split_whitespace().find_map(|w| w.trim_end_matches('.').parse::<u64>().ok());
    assert!(sms_code.is_some(), "{body}");
    let eml = out
        .path()
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "eml"))
        .unwrap();
    let text = std::fs::read_to_string(eml).unwrap();
    assert!(text.contains("Subject: Reset your password"), "{text}");
    assert!(text.contains("multipart/alternative"));
    let (status, log) = stop(child).await;
    assert_eq!(status, 0, "{log}");
    assert!(!log.contains(&code), "the notifier logged a token");
    assert!(log.contains("transient failure; retrying"), "{log}");
}

/// Waits (a bound on failure) until `dir` holds `n` files ending in `suffix`.
async fn files(dir: &Path, suffix: &str, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut found: Vec<PathBuf> =
            std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        found.retain(|p| p.to_string_lossy().ends_with(suffix));
        found.sort();
        if found.len() >= n {
            return found;
        }
        assert!(Instant::now() < deadline, "{n} {suffix} files in {} within 20 s, got {found:?}", dir.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn reset_for(server: &Server, email: &str) {
    server
        .create(CreateAccountRequest { email: email.into(), password: Some(STRONG.into()), ..Default::default() })
        .await;
    server.request(RequestTokenRequest { email: email.into(), ..Default::default() }).await;
}

/// Two notifiers on one PostgreSQL cursor: one active, the other standing by until the
/// first stops, then resuming from the shared cursor (nothing sent twice, nothing lost).
#[tokio::test(flavor = "multi_thread")]
async fn replicas_on_a_postgres_cursor_take_turns() {
    let pg =
        std::env::var("PWRESET_NOTIFY_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let server = server().await;
    let name = format!("test-{}", std::process::id() as u128 ^ Instant::now().elapsed().as_nanos());
    let (a_out, b_out) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let dir = TempDir::new().unwrap();
    let replica = |out: &TempDir| {
        notifier(
            &server,
            &dir.path().join("unused"),
            &["--out-dir", out.path().to_str().unwrap(), "--cursor-database-url", &pg, "--cursor-name", &name],
        )
        .spawn()
        .unwrap()
    };
    let a = replica(&a_out);
    reset_for(&server, "one@example.com").await;
    files(a_out.path(), ".eml", 1).await;
    // The second replica's log, read as it runs: it must be standing by before A stops.
    let mut b = replica(&b_out);
    let b_log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (stderr, log) = (b.stderr.take().unwrap(), Arc::clone(&b_log));
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !b_log.lock().unwrap().contains("standing by") {
        assert!(Instant::now() < deadline, "the second replica stands by: {}", b_log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reset_for(&server, "two@example.com").await;
    files(a_out.path(), ".eml", 2).await;
    let (code, _) = stop(a).await;
    assert_eq!(code, 0);
    reset_for(&server, "three@example.com").await;
    let taken_over = files(b_out.path(), ".eml", 1).await;
    let (code, _) = stop(b).await;
    reader.join().unwrap();
    let log = b_log.lock().unwrap().clone();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("this notifier is the active one"), "{log}");
    assert_eq!(taken_over.len(), 1, "the standby sent only what came after the active one stopped");
    let mail = std::fs::read_to_string(&taken_over[0]).unwrap();
    assert!(mail.contains("To: three@example.com"), "{mail}");
}

/// A cursor older than what the server retains: exit 3 by default, or go on from the
/// live stream with --skip-gaps.
#[tokio::test(flavor = "multi_thread")]
async fn a_cursor_behind_retention_fails_loudly_unless_gaps_are_skipped() {
    use pwreset::domain::model::persistence::EventStore;
    let server = server().await;
    reset_for(&server, "old@example.com").await;
    reset_for(&server, "older@example.com").await;
    let store = pwreset::store::Store::connect(&server.url, 1).await.unwrap();
    let later = chrono::Utc::now() + chrono::Duration::days(30);
    assert!(store.purge(later).await.unwrap().events >= 2, "both events purged");
    let dir = TempDir::new().unwrap();
    let out = TempDir::new().unwrap();
    let cursor = dir.path().join("cursor");
    std::fs::write(&cursor, "1\n").unwrap();
    let args = ["--out-dir", out.path().to_str().unwrap()];
    let mut strict = notifier(&server, &cursor, &args);
    let output = tokio::task::spawn_blocking(move || strict.output().unwrap()).await.unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("events were missed"));
    let lenient =
        notifier(&server, &cursor, &["--out-dir", out.path().to_str().unwrap(), "--skip-gaps"]).spawn().unwrap();
    // It follows the live stream from when it subscribes: ask until one request lands.
    let new = "new@example.com";
    server
        .create(CreateAccountRequest { email: new.into(), password: Some(STRONG.into()), ..Default::default() })
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let sent = loop {
        server.request(RequestTokenRequest { email: new.into(), ..Default::default() }).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let found: Vec<PathBuf> =
            std::fs::read_dir(out.path()).unwrap().filter_map(|e| e.ok().map(|e| e.path())).collect();
        if !found.is_empty() {
            break found;
        }
        assert!(Instant::now() < deadline, "the live stream is followed after --skip-gaps");
    };
    assert!(std::fs::read_to_string(&sent[0]).unwrap().contains("To: new@example.com"));
    let (code, log) = stop(lenient).await;
    assert_eq!(code, 0, "{log}");
}

/// (CA PEM, server certificate PEM, server key PEM) for 127.0.0.1, from a fresh CA.
fn relay_certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "internal relay CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "relay");
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A relay with a certificate from an internal CA, by STARTTLS (which it requires
/// before any mail) and by implicit TLS: the notifier trusts that CA through
/// --smtp-ca-file (and only it), and every mail arrives over an encrypted session.
#[tokio::test(flavor = "multi_thread")]
async fn mail_reaches_a_relay_with_an_internal_ca_by_starttls_and_by_implicit_tls() {
    let server = server().await;
    let certs = TempDir::new().unwrap();
    let (ca, cert, key) = relay_certificates();
    let [ca_file, cert_file, key_file] = ["ca.pem", "relay.pem", "relay.key"].map(|n| certs.path().join(n));
    for (path, pem) in [(&ca_file, &ca), (&cert_file, &cert), (&key_file, &key)] {
        std::fs::write(path, pem).unwrap();
    }
    let (cert_arg, key_arg) = (cert_file.to_str().unwrap(), key_file.to_str().unwrap());
    let modes = [("starttls", "smtp", "?tls=required"), ("tls", "smtps", "")];
    for (n, (mode, scheme, query)) in modes.into_iter().enumerate() {
        let smtp = Smtp::start_with(&[mode, cert_arg, key_arg]);
        let email = format!("{mode}@example.com");
        let account =
            CreateAccountRequest { email: email.clone(), password: Some(STRONG.into()), ..Default::default() };
        server.create(account).await;
        server.request(RequestTokenRequest { email: email.clone(), ..Default::default() }).await;
        let dir = TempDir::new().unwrap();
        let smtp_url = format!("{scheme}://127.0.0.1:{}{query}", smtp.port);
        let trust = ["--smtp-url", &smtp_url, "--smtp-ca-file", ca_file.to_str().unwrap()];
        // A fresh cursor reads from the start: the relay gets every reset so far.
        let child = notifier(&server, &dir.path().join("cursor"), &trust).spawn().unwrap();
        let messages = smtp.wait_for(n + 1).await;
        assert!(messages.iter().any(|m| m["rcpt"][0] == email.as_str()), "{mode}: {messages:?}");
        assert!(messages.iter().all(|m| m["tls"] == true), "{mode}: {messages:?}");
        let (code, log) = stop(child).await;
        assert_eq!(code, 0, "{mode}\n{log}");
    }
}

/// Waits (a bound on failure) until `check` gives a value. Generous: the tests run side
/// by side (servers, relays, a 400 MiB answer), and on two busy cores a retry's backoff
/// and a whole-call timeout can stretch well past their idle time.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "within 60 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one series in a Prometheus scrape.
fn series(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

/// One reset for an address whose relay answers `450` for ever (Postfix's default for
/// an unknown recipient domain) holds up no one: the next user's mail arrives while it
/// is retried in the background, and it is given up when its token expires, counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_recipient_domain_answering_450_holds_up_no_one_and_is_given_up_when_its_token_expires() {
    let server = server_with(|mut c| {
        c.tokens.ttl = Duration::from_secs(4);
        c
    })
    .await;
    let smtp = Smtp::start_tempfailing("greylisted.example");
    let dir = TempDir::new().unwrap();
    let cursor = dir.path().join("cursor");
    let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
    let metrics = format!("127.0.0.1:{}", free_port());
    let child = notifier(&server, &cursor, &["--smtp-url", &smtp_url, "--metrics-listen", &metrics]).spawn().unwrap();
    reset_for(&server, "stuck@greylisted.example").await;
    reset_for(&server, "real@example.com").await;

    let messages = smtp.wait_for(1).await;
    assert_eq!(messages[0]["rcpt"][0], "real@example.com", "{messages:?}");
    let gave_up = r#"pwreset_notify_failed_total{reason="gave_up"}"#;
    let scrape = eventually("the 450 message is given up", || async {
        let scrape = http_get(&metrics, "/metrics").await;
        series(&scrape, gave_up).is_some().then_some(scrape)
    })
    .await;
    assert_eq!(series(&scrape, gave_up), Some(1.0), "{scrape}");
    assert!(series(&scrape, r#"pwreset_notify_retried_total{channel="email"}"#).unwrap() >= 2.0, "{scrape}");
    assert_eq!(series(&scrape, r#"pwreset_notify_sent_total{channel="email"}"#), Some(1.0), "{scrape}");
    let tries = smtp.recipients().iter().filter(|r| *r == "stuck@greylisted.example").count();
    assert!(tries >= 2, "retried in the background: {tries} tries");
    let (code, log) = stop(child).await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("given up"), "{log}");
    let (_, pending) = stored_position(&std::fs::read_to_string(&cursor).unwrap());
    assert!(pending.is_empty(), "a message given up is finished: {pending:?}");
    assert_eq!(smtp.messages().len(), 1);
}

/// An outsider cannot get an account's mail given up: with `--max-retrying 5`, one real
/// reset whose relay greylists it, then six "no account here" notices to a domain whose
/// relay answers `450` for ever. The notices are given up to make room; the real one
/// is delivered once its relay takes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unknown_account_notices_never_pushes_out_a_real_message_retrying() {
    let server = server_with(|mut c| {
        c.events.emit_unknown_account_events = true;
        c
    })
    .await;
    let smtp = Smtp::start_greylisting("nowhere.example", "greylisted.example", "6");
    let dir = TempDir::new().unwrap();
    let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
    let metrics = format!("127.0.0.1:{}", free_port());
    let args =
        ["--smtp-url", &smtp_url, "--notify-unknown-accounts", "--max-retrying", "5", "--metrics-listen", &metrics];
    let child = notifier(&server, &dir.path().join("cursor"), &args).spawn().unwrap();
    reset_for(&server, "real@greylisted.example").await;
    eventually("the real message is retrying", || async {
        (smtp.recipients().iter().any(|r| r == "real@greylisted.example")).then_some(())
    })
    .await;
    for n in 0..6 {
        server.request(RequestTokenRequest { email: format!("x{n}@nowhere.example"), ..Default::default() }).await;
    }
    let gave_up = r#"pwreset_notify_failed_total{reason="gave_up"}"#;
    eventually("the cap was reached and one message given up", || async {
        series(&http_get(&metrics, "/metrics").await, gave_up).is_some().then_some(())
    })
    .await;
    assert!(smtp.messages().is_empty(), "the flood reached the cap while the real message was still greylisted");
    let messages = smtp.wait_for(1).await;
    assert_eq!(messages[0]["rcpt"][0], "real@greylisted.example", "{messages:?}");
    let (code, log) = stop(child).await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(smtp.messages().len(), 1);
}

/// A message still retrying when the notifier stops is retried by the next run (the
/// cursor names it); the messages finished around it are not sent again.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_still_retrying_at_a_stop_is_retried_after_the_restart_and_nothing_finished_is_resent() {
    let server = server().await;
    let stuck = Smtp::start_tempfailing("greylisted.example");
    let dir = TempDir::new().unwrap();
    let cursor = dir.path().join("cursor");
    let first =
        notifier(&server, &cursor, &["--smtp-url", &format!("smtp://127.0.0.1:{}", stuck.port)]).spawn().unwrap();
    reset_for(&server, "before@example.com").await;
    reset_for(&server, "later@greylisted.example").await;
    reset_for(&server, "after@example.com").await;
    let messages = stuck.wait_for(2).await;
    let recipients: Vec<&str> = messages.iter().map(|m| m["rcpt"][0].as_str().unwrap()).collect();
    assert_eq!(recipients, ["before@example.com", "after@example.com"], "the 450 one holds up no one");
    let (code, log) = stop(first).await;
    assert_eq!(code, 0, "{log}");
    let stored = std::fs::read_to_string(&cursor).unwrap();
    let (through, pending) = stored_position(&stored);
    assert_eq!(pending.len(), 1, "the retrying message is recorded as unfinished: {stored}");
    assert!(pending[0] < through, "{stored}");

    let relay = Smtp::start();
    let second =
        notifier(&server, &cursor, &["--smtp-url", &format!("smtp://127.0.0.1:{}", relay.port)]).spawn().unwrap();
    let messages = relay.wait_for(1).await;
    assert_eq!(messages[0]["rcpt"][0], "later@greylisted.example", "{messages:?}");
    let id = messages[0]["message_id"].as_str().unwrap();
    assert!(id.starts_with(&format!("<{}.", pending[0])), "the same message: {id}");
    eventually("the cursor records it finished", || async {
        let (_, pending) = stored_position(&std::fs::read_to_string(&cursor).unwrap());
        pending.is_empty().then_some(())
    })
    .await;
    let (code, log) = stop(second).await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(relay.messages().len(), 1, "nothing finished before the restart is sent again");
}

/// How a hostile SMS gateway answers: `200` and then a body it trickles a byte at a
/// time, or `200` and a 400 MiB body.
#[derive(Clone, Copy, Debug)]
enum Hostile {
    Trickle,
    Flood,
}

/// Reads one HTTP request (head and `content-length` body).
async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&request).into_owned()
}

async fn hostile_webhook(how: Hostile) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let request = read_request(&mut socket).await;
                record.lock().unwrap().push(request);
                const FLOOD: usize = 400 << 20;
                let length = match how {
                    Hostile::Trickle => 1 << 20,
                    Hostile::Flood => FLOOD,
                };
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {length}\r\n\r\n");
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                match how {
                    // Ten minutes, a byte every 50 ms, until the notifier hangs up.
                    Hostile::Trickle => {
                        for _ in 0..12_000 {
                            if socket.write_all(b"x").await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    Hostile::Flood => {
                        let chunk = vec![b'x'; 64 * 1024];
                        for _ in 0..FLOOD / chunk.len() {
                            if socket.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// The peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

/// An SMS gateway that answers and then trickles its body, or sends 400 MiB: the
/// notifier moves on after `--sms-webhook-timeout` (the whole call) or 64 KiB, its
/// memory stays small, and e-mail never waits for texts.
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_trickles_or_floods_its_answer_holds_up_neither_texts_nor_mail() {
    for how in [Hostile::Trickle, Hostile::Flood] {
        let server = server().await;
        let smtp = Smtp::start();
        let (hook, seen) = hostile_webhook(how).await;
        let dir = TempDir::new().unwrap();
        let (smtp_url, hook_url) = (format!("smtp://127.0.0.1:{}", smtp.port), format!("http://{hook}/send"));
        let args = ["--smtp-url", &smtp_url, "--sms-webhook-url", &hook_url, "--sms-webhook-timeout", "3s"];
        let child = notifier(&server, &dir.path().join("cursor"), &args).spawn().unwrap();
        for (email, phone) in [("alan@example.com", "+447911123456"), ("joan@example.com", "+447911123457")] {
            server
                .create(CreateAccountRequest {
                    email: email.into(),
                    password: Some(STRONG.into()),
                    phone: phone.into(),
                    ..Default::default()
                })
                .await;
            server.request(RequestTokenRequest { phone: phone.into(), ..Default::default() }).await;
            server.request(RequestTokenRequest { email: email.into(), ..Default::default() }).await;
        }
        let messages = smtp.wait_for(2).await;
        assert_eq!(messages.len(), 2, "{how:?}: mail goes out whatever the gateway does");
        eventually(&format!("{how:?}: the second text is sent after the first"), || async {
            (seen.lock().unwrap().len() >= 2).then_some(())
        })
        .await;
        let peak = peak_rss_mib(child.id());
        eprintln!("{how:?}: the notifier's peak RSS {peak} MiB");
        let (code, log) = stop(child).await;
        assert_eq!(code, 0, "{how:?}\n{log}");
        assert!(peak < 150, "{how:?}: peak RSS {peak} MiB");
    }
}

/// An event whose e-mail field is a mailbox with a display name (as a server before
/// bare-address validation accepted it): lettre would deliver it to the address in the
/// brackets with the attacker's text beside it. It reaches no RCPT; the rest goes on.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_address_with_a_display_name_reaches_no_rcpt() {
    use sea_orm::ConnectionTrait;
    let server = server_with(|mut c| {
        c.events.emit_unknown_account_events = true;
        c
    })
    .await;
    server.request(RequestTokenRequest { email: "first@example.com".into(), ..Default::default() }).await;
    // Written as the server writes an unknown-address report, with the crafted field.
    let db = sea_orm::Database::connect(&server.url).await.unwrap();
    db.execute_unprepared(
        "INSERT INTO events (occurred_at, kind, account_id, email, client_ip, user_agent, locale, retain_until, \
         purpose, reason, channel, phone, username) SELECT occurred_at, kind, account_id, 'x<victim@example.com>', \
         client_ip, user_agent, locale, retain_until, purpose, reason, channel, phone, username FROM events \
         WHERE email = 'first@example.com'",
    )
    .await
    .unwrap();
    server.request(RequestTokenRequest { email: "later@example.com".into(), ..Default::default() }).await;
    let smtp = Smtp::start();
    let dir = TempDir::new().unwrap();
    let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
    let metrics = format!("127.0.0.1:{}", free_port());
    let args = ["--smtp-url", &smtp_url, "--notify-unknown-accounts", "--metrics-listen", &metrics];
    let child = notifier(&server, &dir.path().join("cursor"), &args).spawn().unwrap();
    let messages = smtp.wait_for(2).await;
    let to: Vec<&str> = messages.iter().map(|m| m["rcpt"][0].as_str().unwrap()).collect();
    assert_eq!(to, ["first@example.com", "later@example.com"]);
    assert_eq!(smtp.recipients(), ["first@example.com", "later@example.com"], "no RCPT for the crafted field");
    let scrape = http_get(&metrics, "/metrics").await;
    assert_eq!(series(&scrape, r#"pwreset_notify_failed_total{reason="recipient"}"#), Some(1.0), "{scrape}");
    let (code, log) = stop(child).await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("not a bare e-mail address"), "{log}");
}

#[test]
fn help_never_shows_the_values_of_secret_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_pwreset-notify"))
        .arg("--help")
        .env("PWRESET_NOTIFY_SMS_WEBHOOK_URL", "https://sms.example/send?api_key=hunter2-api-key")
        .env("PWRESET_NOTIFY_SMS_WEBHOOK_TOKEN", "hunter2-bearer")
        .env("PWRESET_NOTIFY_SMS_WEBHOOK_BODY", r#"{"key": "hunter2-body"}"#)
        .env("PWRESET_NOTIFY_SMTP_URL", "smtps://user:hunter2-smtp@relay.example")
        .env("PWRESET_NOTIFY_CURSOR_DATABASE_URL", "postgres://notify:hunter2-pg@db.internal/n")
        .env("PWRESET_NOTIFY_EVENTS_KEY", "hunter2-events")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--sms-webhook-url"), "{help}");
    assert!(!help.contains("hunter2"), "--help shows a secret: {help}");
}

/// A notifier with its health and metrics port, once `/healthz` answers 200: the
/// server it follows, the child, the port's address and its folders.
async fn notifier_serving_health() -> (Server, Child, String, (TempDir, TempDir)) {
    let server = server().await;
    let (out, dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let metrics = format!("127.0.0.1:{}", free_port());
    let args = ["--out-dir", out.path().to_str().unwrap(), "--metrics-listen", &metrics];
    let child = notifier(&server, &dir.path().join("cursor"), &args).spawn().unwrap();
    eventually("/healthz answers 200", || async {
        let Ok(mut socket) = tokio::net::TcpStream::connect(&metrics).await else { return None };
        socket.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await.ok()?;
        let mut response = String::new();
        socket.read_to_string(&mut response).await.ok()?;
        response.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
    (server, child, metrics, (out, dir))
}

/// A client of /metrics that sends nothing, or a head that never ends, is cut off
/// (read timeout, size cap) and others are still served.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_or_endless_metrics_client_is_cut_off() {
    let (_server, child, metrics, _dirs) = notifier_serving_health().await;
    let mut silent = tokio::net::TcpStream::connect(&metrics).await.unwrap();
    let mut endless = tokio::net::TcpStream::connect(&metrics).await.unwrap();
    let mut head = b"GET /metrics HTTP/1.1\r\nx-padding: ".to_vec();
    head.resize(16 * 1024, b'a');
    let _ = endless.write_all(&head).await;
    for (name, socket) in [("silent", &mut silent), ("endless", &mut endless)] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the {name} client is cut off");
        assert!(!String::from_utf8_lossy(&rest).contains("pwreset_notify"), "{name}: no metrics");
    }
    assert!(http_get(&metrics, "/healthz").await.starts_with("HTTP/1.1 200"));
    let (code, log) = stop(child).await;
    assert_eq!(code, 0, "{log}");
}

/// More idle connections than the health endpoint serves at once (each reopened when
/// cut, as an attacker would) do not make a liveness probe fail: the connection that has
/// waited longest for its head is closed to admit the new one.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_past_the_cap_do_not_starve_the_health_probe() {
    let (_server, child, metrics, _dirs) = notifier_serving_health().await;
    let mut idle = Vec::new();
    for _ in 0..80 {
        idle.push(tokio::net::TcpStream::connect(&metrics).await.unwrap());
    }
    for attempt in 0..3 {
        // The attacker reopens what was cut before each probe.
        for socket in &mut idle {
            let mut byte = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), socket.peek(&mut byte)).await {
                *socket = tokio::net::TcpStream::connect(&metrics).await.unwrap();
            }
        }
        let probe = tokio::time::timeout(Duration::from_secs(10), async {
            let mut socket = tokio::net::TcpStream::connect(&metrics).await.ok()?;
            socket.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await.ok()?;
            let mut response = String::new();
            socket.read_to_string(&mut response).await.ok()?;
            Some(response)
        })
        .await;
        let response = probe.ok().flatten().unwrap_or_default();
        assert!(response.starts_with("HTTP/1.1 200"), "probe {attempt} behind 80 idle connections: {response:?}");
    }
    drop(idle);
    let (code, log) = stop(child).await;
    assert_eq!(code, 0, "{log}");
}

/// A URL setting's password or key never appears in what the notifier prints: not when
/// the URL does not parse, not when its host cannot be reached.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_or_unreachable_url_never_shows_its_password_or_key() {
    let closed = free_port();
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_pwreset-notify"))
            .args(["--endpoint", &format!("http://127.0.0.1:{closed}"), "--reset-url", "https://a.example/{token}"])
            .args(["--cursor-file", dir.path().join("cursor").to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} fails");
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!printed.contains("NSECRET"), "{args:?} shows a secret: {printed}");
        assert!(printed.contains("***"), "{args:?} says which URL, redacted: {printed}");
    };
    let out_dir = ["--out-dir", out.to_str().unwrap()];
    let pg_bad = "postgres://u:NSECRET3@127.0.0.1:99999/x".to_owned();
    // A server that refuses the login at once (a closed port is retried for 30 s).
    let pg_refused = "postgres://no_such_role:NSECRET4@127.0.0.1:5432/x?application_name=NSECRET5".to_owned();
    for url in [&pg_bad, &pg_refused] {
        run(&[out_dir[0], out_dir[1], "--cursor-database-url", url]);
    }
    for url in ["smtp://u:NSECRET6@[bad", "smtps://u:NSECRET7@relay.example:99999", "bogus://u:NSECRET8@relay"] {
        run(&["--smtp-url", url]);
    }
    run(&[out_dir[0], out_dir[1], "--sms-webhook-url", "http://sms example/send?api_key=NSECRET9"]);

    // Unreachable relay and gateway: every attempt fails transiently and is logged.
    let server = server().await;
    let smtp_url = format!("smtp://u:NSECRETA@127.0.0.1:{closed}");
    let hook_url = format!("http://127.0.0.1:{closed}/send?api_key=NSECRETB");
    let metrics = format!("127.0.0.1:{}", free_port());
    let args = ["--smtp-url", &smtp_url, "--sms-webhook-url", &hook_url, "--metrics-listen", &metrics];
    let child = notifier(&server, &dir.path().join("cursor2"), &args).stdout(Stdio::piped()).spawn().unwrap();
    server
        .create(CreateAccountRequest {
            email: "alan@example.com".into(),
            password: Some(STRONG.into()),
            phone: "+447911123456".into(),
            ..Default::default()
        })
        .await;
    server.request(RequestTokenRequest { phone: "+447911123456".into(), ..Default::default() }).await;
    server.request(RequestTokenRequest { email: "alan@example.com".into(), ..Default::default() }).await;
    eventually("both channels failed and were retried", || async {
        let scrape = http_get(&metrics, "/metrics").await;
        let email = series(&scrape, r#"pwreset_notify_retried_total{channel="email"}"#);
        let sms = series(&scrape, r#"pwreset_notify_retried_total{channel="sms"}"#);
        (email.is_some() && sms.is_some()).then_some(())
    })
    .await;
    let (_, log) = stop(child).await;
    assert!(log.contains("transient failure"), "{log}");
    assert!(!log.contains("NSECRET"), "the log shows a secret: {log}");
}

/// While the text lane is stuck on a gateway that never finishes its answer (a long
/// `--sms-webhook-timeout`), mail still goes out: the lanes do not wait on each other.
#[tokio::test(flavor = "multi_thread")]
async fn mail_goes_out_while_the_text_lane_is_stuck() {
    let server = server().await;
    let smtp = Smtp::start();
    let (hook, seen) = hostile_webhook(Hostile::Trickle).await;
    let dir = TempDir::new().unwrap();
    let (smtp_url, hook_url) = (format!("smtp://127.0.0.1:{}", smtp.port), format!("http://{hook}/send"));
    let args = ["--smtp-url", &smtp_url, "--sms-webhook-url", &hook_url, "--sms-webhook-timeout", "10m"];
    let mut child = notifier(&server, &dir.path().join("cursor"), &args).spawn().unwrap();
    server
        .create(CreateAccountRequest {
            email: "alan@example.com".into(),
            password: Some(STRONG.into()),
            phone: "+447911123456".into(),
            ..Default::default()
        })
        .await;
    server.request(RequestTokenRequest { phone: "+447911123456".into(), ..Default::default() }).await;
    server.request(RequestTokenRequest { phone: "+447911123456".into(), ..Default::default() }).await;
    reset_for(&server, "grace@example.com").await;
    let messages = smtp.wait_for(1).await;
    assert_eq!(messages[0]["rcpt"][0], "grace@example.com");
    eventually("the gateway has the first text", || async { (!seen.lock().unwrap().is_empty()).then_some(()) }).await;
    assert_eq!(seen.lock().unwrap().len(), 1, "the first text is still being answered, the second waits");
    // SIGTERM would wait for the text in hand (up to its 10 minutes).
    child.kill().unwrap();
    child.wait().unwrap();
}
