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
use pwreset::domain::clock::SystemClock;
use pwreset::domain::keys::ServerKey;
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
        let out = TempDir::new().unwrap();
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_sink.py");
        let mut child = Command::new("python3")
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
    let stored: u64 = std::fs::read_to_string(&cursor).unwrap().trim().parse().unwrap();
    assert_eq!(stored, 1, "the cursor holds the first event: the second was sent but not recorded");
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
                let first = {
                    let mut seen = record.lock().unwrap();
                    seen.push(String::from_utf8_lossy(&request).into_owned());
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
    use pwreset::domain::persistence::EventStore;
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
