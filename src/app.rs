//! Wiring: builds the components from `Config`, serves them with health, reflection
//! and caller authentication, runs the sweeper, and shuts down gracefully.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pwreset_proto::clock;
use pwreset_proto::clock::SharedClock;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::config::{Config, ServerSettings};
use crate::domain::model::persistence::{Db, PurgeCounts};
use crate::domain::model::seal::Sealer;
use crate::domain::model::token::TokenDigester;
use crate::domain::runtime::Runtime;
use crate::domain::runtime::bus::EventBus;
use crate::domain::runtime::cache::{self, TokenCache};
use crate::domain::runtime::guard::FailureGuard;
use crate::domain::runtime::hasher::Hasher;
use crate::domain::runtime::limits::Limits;
use crate::domain::runtime::mint::Minter;
use crate::domain::service::accounts::{AccountService, AccountSettings};
use crate::domain::service::reset::{ResetService, ResetSettings};
use crate::events::subscription::EventFeed;
use crate::grpc::accounts::AccountGrpc;
use crate::grpc::auth::{AuthLayer, CallerKeys};
use crate::grpc::observe::ObserveLayer;
use crate::grpc::reset::ResetGrpc;
use crate::proto;
use crate::proto::account_service_server::AccountServiceServer;
use crate::proto::password_reset_service_server::PasswordResetServiceServer;
use crate::store::{Notice, Store};

/// Transport settings, chosen deliberately; the README explains each.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_CONCURRENT_STREAMS: u32 = 1024;
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
const MAX_PENDING_RESETS: usize = 20;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

pub const RESET_SERVICE_NAME: &str = proto::password_reset_service_server::SERVICE_NAME;
pub const ACCOUNT_SERVICE_NAME: &str = proto::account_service_server::SERVICE_NAME;
/// Health service name for liveness: SERVING for as long as the process runs, draining
/// included, unlike "" and the services, which follow the database and shutdown.
pub const LIVENESS_SERVICE_NAME: &str = "liveness";
const READINESS: [&str; 3] = ["", RESET_SERVICE_NAME, ACCOUNT_SERVICE_NAME];

/// The assembled service, shared by `main` and the tests.
pub struct App {
    reset: Arc<ResetService>,
    accounts: Arc<AccountService>,
    feed: EventFeed,
    limits: Arc<Limits>,
    guard: Arc<FailureGuard>,
    store: Store,
    bus: EventBus,
    database_url: crate::config::DatabaseUrl,
    server: ServerSettings,
    clients: crate::grpc::client::ClientIpSettings,
    shutdown: CancellationToken,
    metrics_listener: Option<TcpListener>,
}

/// Connects to the database and applies pending migrations: what `pwreset migrate` does.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let store = Store::connect(database_url, 1).await?;
    store.migrate().await?;
    store.close().await
}

/// `pwreset import FILE`: the accounts of `file` into the configured database
/// (migrated first unless `--no-migrate`).
pub async fn import(config: &Config, file: &std::path::Path) -> anyhow::Result<crate::import::Summary> {
    let store = Store::connect(&config.database_url, 2).await?;
    if config.migrate {
        store.migrate().await?;
    }
    let now = clock::Clock::now(&clock::SystemClock);
    let summary = crate::import::import(file, &store, &config.hasher.imports, now).await;
    store.close().await?;
    summary
}

impl App {
    pub async fn build(config: Config, clock: SharedClock) -> anyhow::Result<App> {
        // The key first: a missing one is a configuration error, before any connection.
        let key = config.key.load()?;
        let store = Store::connect(&config.database_url, config.database_max_connections).await?;
        if config.migrate {
            store.migrate().await?;
        }
        if config.tokens.generator.is_numeric() {
            warn!(
                bits = config.tokens.generator.search_space_bits(),
                "numeric reset codes have a small search space; each is bound to its login and revoked after --max-code-attempts failures"
            );
        }
        let db: Db = Arc::new(store.clone());
        let runtime = Runtime {
            store: Arc::clone(&db),
            clock: Arc::clone(&clock),
            bus: EventBus::default(),
            cache: Arc::new(TokenCache::new(config.tokens.cache_ttl, cache::DEFAULT_CAPACITY, Arc::clone(&clock))),
            digester: TokenDigester::with_previous(
                key.digest_key(),
                config.previous_keys.iter().map(|k| k.digest_key()).collect(),
            ),
        };
        let previous_seal: Vec<[u8; 32]> = config.previous_keys.iter().map(|k| k.seal_key()).collect();
        let sealer = Sealer::with_previous(key.seal_key(), &previous_seal);
        let hasher = Arc::new(Hasher::start(&config.hasher)?);
        let limits = Arc::new(Limits::new(&config.limits, &clock));
        let guard =
            Arc::new(FailureGuard::new(config.limits.verify_failures, Arc::clone(&clock), db, key.attempts_key()));
        let shutdown = CancellationToken::new();
        let feed = EventFeed::new(
            Arc::new(store.clone()),
            runtime.bus.clone(),
            Arc::clone(&runtime.cache),
            sealer.clone(),
            Arc::clone(&clock),
            config.events.poll_interval,
            config.events.broadcast_capacity,
            shutdown.clone(),
        );
        let minter = Minter::new(
            config.tokens.generator.clone(),
            config.tokens.sms_codes.clone(),
            runtime.digester.clone(),
            sealer,
            config.events.retention,
        );
        let accounts = Arc::new(AccountService::new(
            runtime.clone(),
            Arc::clone(&hasher),
            minter.clone(),
            AccountSettings {
                passwords: config.passwords.clone(),
                tokens: config.tokens.clone(),
                imports: config.hasher.imports,
                verify_answer_floor: config.hasher.verify_answer_floor,
            },
            Arc::clone(&limits),
            Arc::clone(&guard),
        ));
        // The answer floor starts from what is stored (a failed scan leaves it to the
        // hashes seen at checks and imports, and the sweeper tries again).
        if let Err(e) = accounts.scan_stored_hashes().await {
            warn!(error = %e, "reading the stored hashes' costs failed; the password-check answer floor starts at zero");
        }
        let reset = Arc::new(ResetService::start(
            runtime.clone(),
            hasher,
            Arc::clone(&limits),
            Arc::clone(&guard),
            minter,
            ResetSettings {
                tokens: config.tokens,
                passwords: config.passwords,
                limits: config.limits,
                event_retention: config.events.retention,
                emit_unknown_account_events: config.events.emit_unknown_account_events,
            },
        ));
        let metrics_listener = match config.server.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("binding metrics on {addr}"))?),
            None => None,
        };
        if metrics_listener.is_some() {
            crate::telemetry::metrics_handle();
        }
        Ok(App {
            metrics_listener,
            reset,
            accounts,
            feed,
            limits,
            guard,
            store,
            bus: runtime.bus,
            database_url: config.database_url,
            server: config.server,
            clients: config.clients,
            shutdown,
        })
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Deletes expired tokens and events past retention.
    pub async fn purge(&self) -> anyhow::Result<PurgeCounts> {
        Ok(self.reset.purge().await?)
    }

    /// Binds the configured address and serves until SIGTERM or Ctrl-C.
    pub async fn serve(self) -> anyhow::Result<()> {
        let stop = termination()?;
        let listener =
            TcpListener::bind(self.server.listen).await.with_context(|| format!("binding {}", self.server.listen))?;
        info!(address = %listener.local_addr()?, "pwreset listening");
        self.serve_on(listener, stop).await
    }

    /// Serves on an already bound listener until `shutdown` completes: health turns
    /// NOT_SERVING, streams end, in-flight calls get the grace period to finish.
    pub async fn serve_on(mut self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let health = Readiness::start(&self.store, &self.server, self.shutdown.clone()).await;
        self.serve_metrics();
        let fetcher = self.feed.start().await;
        let sweeper = tokio::spawn(sweep(
            Arc::clone(&self.reset),
            Arc::clone(&self.accounts),
            Arc::clone(&self.limits),
            Arc::clone(&self.guard),
            self.server.sweep_interval,
            self.shutdown.clone(),
        ));
        self.follow_other_replicas().await;

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (v1, v1alpha) = reflection()?;
        let max = self.server.max_message_bytes;
        let reset =
            ResetGrpc { reset: Arc::clone(&self.reset), feed: self.feed.clone(), clients: self.clients.clone() };
        let accounts = AccountGrpc { accounts: Arc::clone(&self.accounts), clients: self.clients.clone() };
        let (builder, keys) = transport(&self.server)?;
        // The message-size limit on every service of the port, the unauthenticated
        // health and reflection included (tonic's own default is 4 MiB).
        let server = builder
            .layer(ObserveLayer)
            .layer(AuthLayer::new(keys))
            .add_service(health.service.clone().max_decoding_message_size(max))
            .add_service(v1.max_decoding_message_size(max))
            .add_service(v1alpha.max_decoding_message_size(max))
            .add_service(PasswordResetServiceServer::new(reset).max_decoding_message_size(max))
            .add_service(AccountServiceServer::new(accounts).max_decoding_message_size(max))
            .serve_with_incoming_shutdown(incoming(listener), async {
                let _ = stop_rx.await;
            });
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => {
                self.shutdown.cancel();
                return result.context("serving");
            }
            () = shutdown => {}
        }

        info!("shutting down");
        health.drain(self.server.drain_delay).await;
        self.shutdown.cancel();
        let _ = stop_tx.send(());
        // In-flight calls, then the token work they left behind, within one grace period.
        let finish = async {
            let served = server.await;
            self.reset.drain().await;
            served
        };
        let outcome = match tokio::time::timeout(self.server.shutdown_grace, finish).await {
            Ok(result) => result.context("serving"),
            Err(_) => {
                warn!(grace = ?self.server.shutdown_grace, "shutdown grace elapsed; dropping remaining work");
                Ok(())
            }
        };
        let _ = sweeper.await;
        let _ = fetcher.await;
        self.store.close().await?;
        info!("stopped");
        outcome
    }

    /// `/metrics`, if configured, with the gauges read at each scrape.
    fn serve_metrics(&mut self) {
        let Some(listener) = self.metrics_listener.take() else { return };
        let (feed, store) = (self.feed.clone(), self.store.clone());
        let refresh: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let (subscribers, lag) = feed.lag();
            metrics::gauge!("pwreset_event_subscribers").set(subscribers as f64);
            metrics::gauge!("pwreset_outbox_lag").set(lag as f64);
            let (open, in_use) = store.pool_use();
            metrics::gauge!("pwreset_db_pool_connections", "state" => "open").set(f64::from(open));
            metrics::gauge!("pwreset_db_pool_connections", "state" => "in_use").set(f64::from(in_use));
        });
        tokio::spawn(crate::telemetry::serve_metrics(listener, refresh, self.shutdown.clone()));
    }

    /// On PostgreSQL: commits by other replicas wake this replica's subscribers at once,
    /// and their deactivations empty this replica's token cache for the account.
    /// Returns once LISTEN is in place (so no commit after start-up goes unannounced),
    /// or after 5 s without it (subscribers still poll).
    async fn follow_other_replicas(&self) {
        if !self.store.is_postgres() {
            return;
        }
        let (bus, cache) = (self.bus.clone(), Arc::clone(self.reset.cache()));
        let (listening, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(crate::store::follow_commits(
            self.database_url.as_str().to_owned(),
            self.shutdown.clone(),
            listening,
            move |notice| match notice {
                Notice::Committed(sequence) => bus.published(sequence),
                Notice::Revoked(account_id) => cache.forget(account_id, None),
            },
        ));
        if tokio::time::timeout(Duration::from_secs(5), ready).await.is_err() {
            warn!("event notifications not available yet; subscribers fall back to polling");
        }
    }
}

/// Health as load balancers see it: readiness following the database until draining
/// starts, liveness for as long as the process runs.
struct Readiness {
    reporter: HealthReporter,
    service: HealthServer<EndingHealth>,
    draining: CancellationToken,
    readiness: tokio::task::JoinHandle<()>,
}

impl Readiness {
    async fn start(store: &Store, server: &ServerSettings, stop: CancellationToken) -> Readiness {
        let reporter = HealthReporter::new();
        // Open Watch streams (what load balancers and sidecars hold) end at shutdown;
        // tonic's graceful shutdown would otherwise wait on them for the whole grace.
        let service = HealthServer::new(EndingHealth {
            inner: tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
            stop,
        });
        for name in READINESS.into_iter().chain([LIVENESS_SERVICE_NAME]) {
            reporter.set_service_status(name, ServingStatus::Serving).await;
        }
        let draining = CancellationToken::new();
        let readiness =
            tokio::spawn(readiness(store.clone(), reporter.clone(), server.health_check_interval, draining.clone()));
        Readiness { reporter, service, draining, readiness }
    }

    /// NOT_SERVING, then `delay` for load balancers and sidecars to stop routing here.
    async fn drain(self, delay: Duration) {
        self.draining.cancel();
        let _ = self.readiness.await;
        set_status(&self.reporter, &READINESS, ServingStatus::NotServing).await;
        if !delay.is_zero() {
            info!(?delay, "NOT_SERVING; draining before closing the listener");
            clock::pause(delay).await;
        }
    }
}

/// Reflection v1 and v1alpha (grpcurl 1.8 speaks only the latter), knowing the
/// contract, health and the error detail types.
fn reflection() -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
)> {
    let configure = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = configure().build_v1().context("building reflection v1")?;
    let v1alpha = configure().build_v1alpha().context("building reflection v1alpha")?;
    Ok((v1, v1alpha))
}

/// The transport settings, chosen deliberately (the README explains each), TLS, and the
/// caller keys (which accept client certificates when a client CA is set).
fn transport(server: &ServerSettings) -> anyhow::Result<(Server, CallerKeys)> {
    let mut builder = Server::builder();
    let mut keys = CallerKeys::new(server.caller_keys.clone());
    if let Some(tls) = &server.tls {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert, &tls.key));
        if let Some(ca) = &tls.client_ca {
            // Optional: callers without a certificate may still use a key.
            config = config.client_ca_root(Certificate::from_pem(ca)).client_auth_optional(true);
            keys = keys.with_client_certificates(true);
        }
        builder = builder.tls_config(config).context("TLS configuration")?;
    }
    let builder = builder
        // Every unary call and the start of every stream must be done within this;
        // a stream's body (SubscribeEvents) is not cut by it.
        .timeout(REQUEST_TIMEOUT)
        // Event subscribers hold a stream each; several share one connection.
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_max_header_list_size(MAX_HEADER_LIST)
        // Dead peers are found and their streams ended.
        .http2_keepalive_interval(Some(server.keepalive_interval))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(TCP_KEEPALIVE))
        .tcp_nodelay(true)
        // HTTP/2 rapid reset (CVE-2023-44487): a connection that opens and resets
        // streams faster than they are served is closed.
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS));
    Ok((builder, keys))
}

/// The builder's TCP settings only apply to listeners it binds itself: set them on this
/// one explicitly (without TCP_NODELAY small replies wait ~40 ms for ACKs).
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)).with_keepalive(Some(TCP_KEEPALIVE))
}

/// The standard health service, whose `Watch` streams end when `stop` fires.
struct EndingHealth {
    inner: tonic_health::server::HealthService,
    stop: CancellationToken,
}

type WatchStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<tonic_health::pb::HealthCheckResponse, tonic::Status>> + Send>,
>;

#[tonic::async_trait]
impl Health for EndingHealth {
    async fn check(
        &self,
        request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<WatchStream>, tonic::Status> {
        use futures_util::StreamExt;
        let stream = self.inner.watch(request).await?.into_inner();
        let stop = self.stop.clone();
        Ok(tonic::Response::new(Box::pin(stream.take_until(async move { stop.cancelled_owned().await }))))
    }
}

async fn set_status(health: &HealthReporter, names: &[&str], status: ServingStatus) {
    for name in names {
        health.set_service_status(*name, status).await;
    }
}

/// Readiness follows the database: NOT_SERVING while it does not answer, SERVING again
/// when it does. Ends when draining starts.
async fn readiness(store: Store, health: HealthReporter, every: Duration, draining: CancellationToken) {
    let mut ready = true;
    loop {
        tokio::select! {
            () = clock::pause(every) => {}
            () = draining.cancelled() => return,
        }
        let answered = tokio::time::timeout(every.max(Duration::from_secs(1)), store.ping()).await;
        let now_ready = matches!(answered, Ok(Ok(())));
        if now_ready != ready {
            ready = now_ready;
            if ready {
                info!("database answers again; SERVING");
                set_status(&health, &READINESS, ServingStatus::Serving).await;
            } else {
                warn!("database does not answer; NOT_SERVING");
                set_status(&health, &READINESS, ServingStatus::NotServing).await;
            }
        }
    }
}

/// Periodically purges what is past retention and forgets idle rate-limit keys.
async fn sweep(
    reset: Arc<ResetService>,
    accounts: Arc<AccountService>,
    limits: Arc<Limits>,
    guard: Arc<FailureGuard>,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    /// How often the stored hashes are read again for the answer floor (a read pages
    /// through every imported hash still stored).
    const SCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut scanned = clock::monotonic();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        if scanned.elapsed() >= SCAN_EVERY {
            scanned = clock::monotonic();
            if let Err(e) = accounts.scan_stored_hashes().await {
                warn!(error = %e, "reading the stored hashes' costs failed; will retry");
            }
        }
        limits.evict_idle();
        if let Err(e) = guard.evict_idle().await {
            warn!(error = %e, "forgetting old password-check failures failed; will retry");
        }
        match reset.purge().await {
            Ok(counts) if counts.tokens + counts.events > 0 => {
                info!(tokens = counts.tokens, events = counts.events, "purged");
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "purge failed; will retry"),
        }
    }
}

/// Installs the SIGTERM and Ctrl-C handlers now, so a signal that arrives before the
/// server is polled is not lost; the future completes on either.
fn termination() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
