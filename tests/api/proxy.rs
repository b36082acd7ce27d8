//! Behind a real proxy: nginx, started from `deploy/nginx/pwreset.conf`, in front of
//! pwreset as a mesh sidecar would be. Clients speak plaintext HTTP/2 to nginx; nginx
//! speaks gRPC over TLS to pwreset with a client certificate naming the caller roles,
//! and appends the client's address to `x-forwarded-for`. pwreset runs with a client CA
//! and no caller keys, with the default trusted hops and proxies.
//!
//! Ignored by a plain `cargo test` (nginx may not be installed); `.ci/run` installs
//! nginx and runs them with `--include-ignored`.

use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pwreset::config::TlsSettings;
use pwreset::domain::runtime::limits::RateLimits;
use pwreset::proto::account_service_client::AccountServiceClient;
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{
    ConfirmRequest, CreateAccountRequest, RequestTokenRequest, SubscribeEventsRequest, ValidateTokenRequest, event,
};
use tempfile::TempDir;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

use crate::helpers::*;
use crate::tls::Ca;

const SERVER_NAME: &str = "pwreset.internal";
const PROXY_ROLES: [&str; 3] =
    ["reset.caller.pwreset.internal", "events.caller.pwreset.internal", "accounts.caller.pwreset.internal"];

/// pwreset (in-process, TLS with a client CA) behind an nginx process.
struct Proxied {
    app: TestApp,
    _nginx: Nginx,
    prefix: TempDir,
    conf: PathBuf,
    listen: SocketAddr,
    anonymous: SocketAddr,
}

fn free_port() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// Whether something accepts connections at `addr`.
fn accepting(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
}

impl Proxied {
    /// `read_timeout`: nginx's `grpc_read_timeout` for this run.
    async fn start(adjust: impl FnOnce(pwreset::Config) -> pwreset::Config, read_timeout: &str) -> Proxied {
        let ca = Ca::new();
        let (server_cert, server_key) = ca.issue(&[SERVER_NAME]);
        let (proxy_cert, proxy_key) = ca.issue(&PROXY_ROLES);
        let client_ca = ca.pem();
        let app = TestApp::spawn_with(move |mut c| {
            c.server.tls = Some(TlsSettings {
                cert: server_cert.into_bytes(),
                key: server_key.into_bytes(),
                client_ca: Some(client_ca.into_bytes()),
            });
            adjust(c)
        })
        .await;

        let prefix = TempDir::new().expect("temp dir");
        let path = |name: &str| prefix.path().join(name);
        std::fs::write(path("ca.pem"), ca.pem()).expect("write");
        std::fs::write(path("proxy.pem"), proxy_cert).expect("write");
        std::fs::write(path("proxy.key"), proxy_key).expect("write");
        let (listen, anonymous) = (free_port(), free_port());
        let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/pwreset.conf"))
            .expect("deploy/nginx/pwreset.conf");
        let rendered = [
            ("${NGINX_PREFIX}", prefix.path().display().to_string()),
            ("${NGINX_LISTEN_ANONYMOUS}", anonymous.to_string()),
            ("${NGINX_LISTEN}", listen.to_string()),
            ("${PWRESET_UPSTREAM}", app.addr.to_string()),
            ("${PWRESET_SERVER_NAME}", SERVER_NAME.to_owned()),
            ("${PWRESET_CA}", path("ca.pem").display().to_string()),
            ("${PROXY_CERT}", path("proxy.pem").display().to_string()),
            ("${PROXY_KEY}", path("proxy.key").display().to_string()),
            ("${GRPC_READ_TIMEOUT}", read_timeout.to_owned()),
        ]
        .iter()
        .fold(template, |text, (key, value)| text.replace(key, value));
        let unrendered = rendered.lines().filter(|l| !l.trim_start().starts_with('#')).any(|l| l.contains("${"));
        assert!(!unrendered, "every placeholder rendered");
        let conf = path("nginx.conf");
        std::fs::write(&conf, rendered).expect("write");
        let nginx = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(prefix.path())
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx is installed (.ci/run installs it)");
        let proxied = Proxied { app, _nginx: Nginx(nginx), prefix, conf, listen, anonymous };
        eventually("nginx accepts connections", || async { accepting(listen) && accepting(anonymous) }).await;
        proxied
    }

    /// A plaintext HTTP/2 channel to nginx from the given loopback address.
    fn channel_from(&self, source: &str) -> Channel {
        let source: IpAddr = source.parse().expect("address");
        Endpoint::from_shared(format!("http://{}", self.listen))
            .expect("endpoint")
            .local_address(Some(source))
            .connect_lazy()
    }

    fn channel(&self) -> Channel {
        self.channel_from("127.0.0.1")
    }

    fn reset(&self) -> PasswordResetServiceClient<Channel> {
        PasswordResetServiceClient::new(self.channel())
    }

    fn accounts(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(self.channel())
    }

    /// Re-reads the configuration, as an operator's `nginx -s reload` does.
    fn reload(&self) {
        let status = Command::new("nginx")
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .arg(self.prefix.path())
            .args(["-s", "reload"])
            .status()
            .expect("nginx -s reload");
        assert!(status.success());
    }

    async fn token_for(&self, email: &str) -> String {
        self.accounts()
            .create_account(CreateAccountRequest {
                email: email.into(),
                password: Some(STRONG.into()),
                ..Default::default()
            })
            .await
            .expect("create account through nginx");
        let mut events = self.subscribe(None).await;
        self.reset()
            .request_token(RequestTokenRequest { email: email.into(), locale: String::new(), ..Default::default() })
            .await
            .expect("request through nginx");
        loop {
            if let Some(event::Kind::TokenCreated(created)) = next_event(&mut events).await.kind
                && created.email == email
            {
                return created.token;
            }
        }
    }

    async fn subscribe(&self, after: Option<u64>) -> tonic::Streaming<pwreset::proto::Event> {
        self.reset()
            .subscribe_events(SubscribeEventsRequest { after_sequence: after })
            .await
            .expect("subscribe through nginx")
            .into_inner()
    }
}

/// The nginx process, stopped when dropped.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers before it exits (SIGKILL would leave
        // them behind).
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[ignore = "needs nginx: .ci/run installs it and runs the proxy tests"]
async fn the_readme_walkthrough_runs_through_nginx_unchanged_but_for_the_address() {
    let proxied = Proxied::start(|c| c, "1h").await;
    let listen = proxied.listen.to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/walkthrough.sh");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash").arg(script).env("WALKTHROUGH_ADDRESS", listen).output().expect("bash")
    })
    .await
    .expect("walkthrough");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
#[ignore = "needs nginx: .ci/run installs it and runs the proxy tests"]
async fn per_ip_limits_key_on_the_address_nginx_saw_whatever_the_client_forwards() {
    let proxied = Proxied::start(
        |mut c| {
            c.limits = RateLimits { validate_token: "2/1h".parse().ok(), ..RateLimits::default() };
            c
        },
        "1h",
    )
    .await;
    let guess = |n: u32| ValidateTokenRequest { token: format!("guess-{n:06}"), ..Default::default() };
    let mut codes = Vec::new();
    for (n, source) in ["127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"].iter().enumerate() {
        let mut client = PasswordResetServiceClient::new(proxied.channel_from(source));
        // A client forging its own x-forwarded-for: nginx appends the real address after it.
        let request = with_ip(guess(n as u32), &format!("198.51.100.{n}"));
        codes.push(client.validate_token(request).await.unwrap_err().code());
    }
    assert_eq!(
        codes,
        [Code::NotFound, Code::NotFound, Code::ResourceExhausted, Code::NotFound, Code::NotFound],
        "127.0.0.2 and 127.0.0.3 have a bucket each; forged addresses open none"
    );
}

#[tokio::test]
#[ignore = "needs nginx: .ci/run installs it and runs the proxy tests"]
async fn a_caller_without_a_role_certificate_is_refused() {
    let proxied = Proxied::start(|c| c, "1h").await;
    let anonymous = Endpoint::from_shared(format!("http://{}", proxied.anonymous)).expect("endpoint").connect_lazy();
    let status = PasswordResetServiceClient::new(anonymous.clone())
        .validate_token(ValidateTokenRequest { token: "anything".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // Health needs no role, through either location.
    let health = HealthClient::new(anonymous).check(HealthCheckRequest { service: String::new() }).await;
    assert_eq!(health.expect("health").into_inner().status, ServingStatus::Serving as i32);
}

#[tokio::test]
#[ignore = "needs nginx: .ci/run installs it and runs the proxy tests"]
async fn an_idle_event_stream_outlives_nginx_read_timeout_and_resumes_after_a_reload() {
    // A 1 s read timeout (the shipped config has 1h), 250 ms keep-alive pings: the idle
    // stream must live through several timeouts on the pings alone.
    let proxied = Proxied::start(
        |mut c| {
            c.server.keepalive_interval = Duration::from_millis(250);
            c
        },
        "1s",
    )
    .await;
    proxied.token_for("first@example.com").await;
    let mut stream = proxied.subscribe(Some(0)).await;
    let first = next_event(&mut stream).await;
    // Idle for more than twice the read timeout, with nothing to wait on but time.
    assert!(
        tokio::time::timeout(Duration::from_millis(2500), stream.message()).await.is_err(),
        "the idle stream stayed open with no message"
    );
    proxied.token_for("second@example.com").await;
    let second = next_event(&mut stream).await;
    assert!(second.sequence > first.sequence, "an event after the idle time came through the same stream");

    // A reload ends the old worker's streams (worker_shutdown_timeout); the subscriber
    // resumes from its cursor and misses nothing committed meanwhile.
    let cursor = second.sequence;
    proxied.reload();
    proxied.token_for("third@example.com").await;
    let mut resumed = proxied.subscribe(Some(cursor)).await;
    let after = token_created(next_event(&mut resumed).await);
    assert_eq!(after.email, "third@example.com");
}

#[tokio::test]
#[ignore = "needs nginx: .ci/run installs it and runs the proxy tests"]
async fn at_shutdown_nginx_sees_not_serving_while_calls_still_complete() {
    let proxied = Proxied::start(
        |mut c| {
            c.server.drain_delay = Duration::from_secs(30);
            c
        },
        "1h",
    )
    .await;
    proxied
        .accounts()
        .create_account(CreateAccountRequest {
            email: "ada@example.com".into(),
            password: Some(STRONG.into()),
            ..Default::default()
        })
        .await
        .expect("create");
    let channel = proxied.channel();
    let stopping = tokio::spawn(proxied.app.shutdown());
    let mut health = HealthClient::new(channel.clone());
    eventually("NOT_SERVING through nginx", || {
        let mut health = health.clone();
        async move {
            health.check(HealthCheckRequest { service: String::new() }).await.ok().map(|r| r.into_inner().status)
                == Some(ServingStatus::NotServing as i32)
        }
    })
    .await;
    // Draining: routed calls are still served in full.
    assert!(
        AccountServiceClient::new(channel.clone())
            .verify_password(pwreset::proto::VerifyPasswordRequest {
                email: "ada@example.com".into(),
                password: STRONG.into(),
            })
            .await
            .expect("served while draining")
            .into_inner()
            .valid
    );
    health.check(HealthCheckRequest { service: "liveness".into() }).await.expect("liveness while draining");
    stopping.abort();
}

#[tokio::test]
#[ignore = "needs nginx: .ci/run installs it and runs the proxy tests"]
async fn error_details_pass_through_nginx_intact() {
    let proxied = Proxied::start(
        |mut c| {
            c.limits = RateLimits { validate_token: "1/1h".parse().ok(), ..RateLimits::default() };
            c
        },
        "1h",
    )
    .await;
    let token = proxied.token_for("ada@example.com").await;
    let weak = proxied
        .reset()
        .confirm(ConfirmRequest { token, new_password: "short".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(weak.code(), Code::InvalidArgument);
    assert_eq!(bad_request_fields(&weak).first().map(String::as_str), Some("new_password"));
    assert!(bad_request_reasons(&weak).contains(&"MIN_LENGTH".to_owned()), "{:?}", bad_request_reasons(&weak));

    let mut client = PasswordResetServiceClient::new(proxied.channel_from("127.0.0.4"));
    let guess = || ValidateTokenRequest { token: "guess-000000".into(), ..Default::default() };
    client.validate_token(guess()).await.unwrap_err();
    let limited = client.validate_token(guess()).await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    let retry = limited.get_details_retry_info().and_then(|r| r.retry_delay).expect("RetryInfo through nginx");
    assert!(retry > Duration::from_secs(60 * 30), "{retry:?}");
}
