//! `TestApp`: one server per test on its own database, with a manual clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pwreset::config::KeySource;
use pwreset::domain::model::keys::ServerKey;
use pwreset::domain::runtime::clock::ManualClock;
use pwreset::proto::account_service_client::AccountServiceClient;
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{self, CreateAccountRequest, Event, RequestTokenRequest, SubscribeEventsRequest, event};
use pwreset::{App, Config};
use sea_orm::{ConnectionTrait, Database};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};
use tonic_types::StatusExt;

pub const STRONG: &str = "correct horse battery staple orbit";
pub const OTHER_STRONG: &str = "violet kettle marathon quietly glows";

/// A database for one test, removed afterwards.
pub enum TestDb {
    Sqlite { _dir: TempDir, url: String },
    Postgres { admin_url: String, name: String, url: String },
}

impl TestDb {
    pub async fn create() -> TestDb {
        match std::env::var("PWRESET_TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("pwreset_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url).await.expect("connect to PWRESET_TEST_DATABASE_URL");
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
                admin.close().await.ok();
                let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).expect("URL with a database");
                TestDb::Postgres { url: format!("{base}/{name}"), admin_url, name }
            }
            _ => {
                let dir = TempDir::new().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("pwreset.db").display());
                TestDb::Sqlite { _dir: dir, url }
            }
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name, .. } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime; do the async clean-up on a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = Database::connect(&admin_url).await {
                        let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                        let _ = admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub channel: Channel,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    // Last, so the server is gone before the database is dropped.
    pub db: Arc<TestDb>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|c| c).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(Config) -> Config) -> TestApp {
        let db = Arc::new(TestDb::create().await);
        let mut config = Config::for_tests(db.url());
        config.key = KeySource::Given(ServerKey::from_bytes(rand_key()));
        Self::start(adjust(config), db, Arc::new(ManualClock::default())).await
    }

    /// Starts a second server on the same database, key and clock (a restart, or a replica).
    pub async fn sibling(&self, adjust: impl FnOnce(Config) -> Config) -> TestApp {
        Self::start(adjust(self.config.clone()), Arc::clone(&self.db), Arc::clone(&self.clock)).await
    }

    async fn start(config: Config, db: Arc<TestDb>, clock: Arc<ManualClock>) -> TestApp {
        let app = App::build(config.clone(), clock.clone()).await.expect("build app");
        let metrics_addr = app.metrics_addr();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve_on(listener, async {
            let _ = stopped.await;
        }));
        let channel = Endpoint::from_shared(format!("http://{addr}")).expect("endpoint").connect_lazy();
        TestApp { addr, metrics_addr, channel, clock, config, stop: Some(stop), server: Some(server), db }
    }

    pub fn reset(&self) -> PasswordResetServiceClient<Channel> {
        PasswordResetServiceClient::new(self.channel.clone())
    }

    pub fn accounts(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(self.channel.clone())
    }

    /// Stops the server and asserts it exited cleanly.
    pub async fn shutdown(mut self) {
        self.stop_and_wait().await;
    }

    async fn stop_and_wait(&mut self) {
        self.stop.take().map(|s| s.send(()));
        let server = self.server.take().expect("server running");
        let result = tokio::time::timeout(Duration::from_secs(10), server).await.expect("shutdown in time");
        result.expect("server task").expect("clean exit");
    }

    /// Stops this server and starts a new one on the same database, key and clock.
    pub async fn restart(mut self) -> TestApp {
        self.stop_and_wait().await;
        Self::start(self.config.clone(), Arc::clone(&self.db), Arc::clone(&self.clock)).await
    }

    pub async fn create_account(&self, email: &str, password: Option<&str>) -> proto::Account {
        self.accounts()
            .create_account(CreateAccountRequest {
                email: email.into(),
                password: password.map(Into::into),
                ..Default::default()
            })
            .await
            .expect("create account")
            .into_inner()
    }

    pub async fn subscribe(&self, after: Option<u64>) -> Streaming<Event> {
        self.reset()
            .subscribe_events(SubscribeEventsRequest { after_sequence: after })
            .await
            .expect("subscribe")
            .into_inner()
    }

    pub async fn request_token(&self, email: &str) -> Result<(), Status> {
        self.reset()
            .request_token(RequestTokenRequest { email: email.into(), locale: "en-GB".into(), ..Default::default() })
            .await
            .map(|_| ())
    }

    /// Creates an account, requests a token for it and harvests the token from the
    /// event stream, as a notifier would. Returns (account id, token).
    pub async fn account_with_token(&self, email: &str) -> (String, String) {
        let account = self.create_account(email, Some(STRONG)).await;
        (account.account_id, self.new_token(email).await)
    }

    /// Requests a token for `email` and waits for its `TokenCreated` event (token work
    /// finishes after the reply). Returns the token.
    pub async fn new_token(&self, email: &str) -> String {
        let mut events = self.subscribe(None).await;
        self.request_token(email).await.expect("request token");
        loop {
            if let Some(event::Kind::TokenCreated(created)) = next_event(&mut events).await.kind
                && created.email == email
            {
                return created.token;
            }
        }
    }

    /// The health status of `service` ("" for the whole server).
    pub async fn health(&self, service: &str) -> i32 {
        tonic_health::pb::health_client::HealthClient::new(self.channel.clone())
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .expect("health check")
            .into_inner()
            .status
    }

    pub async fn verify(&self, email: &str, password: &str) -> bool {
        self.accounts()
            .verify_password(proto::VerifyPasswordRequest { email: email.into(), password: password.into() })
            .await
            .expect("verify")
            .into_inner()
            .valid
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.take().map(|s| s.send(()));
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(&uuid::Uuid::new_v4().as_bytes().repeat(2));
    key
}

/// Whether this run's tests use PostgreSQL (PWRESET_TEST_DATABASE_URL set).
pub fn app_is_postgres() -> bool {
    std::env::var("PWRESET_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty())
}

/// Re-checks `condition` (itself a round trip to the server) until it holds, failing
/// after 5 s (a bound on failure). The deadline is the test's own, not the service's clock.
#[allow(clippy::disallowed_methods)]
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "{what} within 5 s");
    }
}

/// The next event, or a failure after 5 s (a bound on failure, not a wait).
pub async fn next_event(stream: &mut Streaming<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an event within 5 s")
        .expect("stream healthy")
        .expect("stream open")
}

pub fn token_created(e: Event) -> proto::TokenCreated {
    match e.kind {
        Some(event::Kind::TokenCreated(t)) => t,
        other => panic!("expected TokenCreated, got {other:?}"),
    }
}

pub fn password_changed(e: Event) -> proto::PasswordChanged {
    match e.kind {
        Some(event::Kind::PasswordChanged(p)) => p,
        other => panic!("expected PasswordChanged, got {other:?}"),
    }
}

pub fn with_ip<T>(message: T, ip: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-forwarded-for", ip.parse().expect("ascii"));
    request
}

pub fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("ascii"));
    request
}

/// A call's status code (`Ok` for a success).
pub fn code<T>(result: Result<T, Status>) -> Code {
    result.map(|_| Code::Ok).unwrap_or_else(|s| s.code())
}

/// The fields of the BadRequest detail, in order.
pub fn bad_request_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

pub fn bad_request_reasons(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.reason).collect())
        .unwrap_or_default()
}

impl TestApp {
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use pwreset::domain::runtime::clock::Clock;
        self.clock.now()
    }
}
