//! The assembled service: [`App::build`] wires the components from `Config`, and
//! [`App::serve_on`] runs them until shutdown. The port, health, the background tasks,
//! shutdown and the one-off commands each have a file of their own here.

mod background;
mod command;
mod health;
mod shutdown;
mod transport;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use pwreset_proto::clock::SharedClock;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::background::Sweeper;
pub use self::command::{import, migrate, purge};
use self::health::Readiness;
pub use self::health::{ACCOUNT_SERVICE_NAME, LIVENESS_SERVICE_NAME, RESET_SERVICE_NAME};
use self::shutdown::{termination, within_grace};
use self::transport::Services;
use crate::config::{Config, DatabaseUrl, EventSettings, ServerSettings};
use crate::domain::model::keys::ServerKey;
use crate::domain::model::persistence::Db;
use crate::domain::model::seal::Sealer;
use crate::domain::model::token::{TokenDigester, TokenGenerator};
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
use crate::grpc::client::ClientIpSettings;
use crate::grpc::reset::ResetGrpc;
use crate::store::Store;

/// The assembled service, shared by `main` and the tests.
pub struct App {
    reset: Arc<ResetService>,
    accounts: Arc<AccountService>,
    feed: EventFeed,
    limits: Arc<Limits>,
    guard: Arc<FailureGuard>,
    store: Store,
    bus: EventBus,
    database_url: DatabaseUrl,
    server: ServerSettings,
    clients: ClientIpSettings,
    shutdown: CancellationToken,
    metrics_listener: Option<TcpListener>,
}

impl App {
    pub async fn build(config: Config, clock: SharedClock) -> anyhow::Result<App> {
        // The key first: a missing one is a configuration error, before any connection.
        let key = config.key.load()?;
        let store = Store::connect(&config.database_url, config.database_max_connections).await?;
        if config.migrate {
            store.migrate().await?;
        }
        warn_of_short_codes(&config.tokens.generator);
        let db: Db = Arc::new(store.clone());
        let runtime = runtime(Arc::clone(&db), &clock, &config, &key);
        let previous_seal: Vec<[u8; 32]> = config.previous_keys.iter().map(|k| k.seal_key()).collect();
        let sealer = Sealer::with_previous(key.seal_key(), &previous_seal);
        let hasher = Arc::new(Hasher::start(&config.hasher)?);
        let limits = Arc::new(Limits::new(&config.limits, &clock));
        let guard =
            Arc::new(FailureGuard::new(config.limits.verify_failures, Arc::clone(&clock), db, key.attempts_key()));
        let shutdown = CancellationToken::new();
        let feed = event_feed(&store, &runtime, sealer.clone(), &config.events, shutdown.clone());
        let minter = Minter::new(
            config.tokens.generator.clone(),
            config.tokens.sms_codes.clone(),
            runtime.digester.clone(),
            sealer,
            config.events.retention,
        );
        let account_settings = AccountSettings {
            passwords: config.passwords.clone(),
            tokens: config.tokens.clone(),
            imports: config.hasher.imports,
            verify_answer_floor: config.hasher.verify_answer_floor,
        };
        let accounts = Arc::new(AccountService::new(
            runtime.clone(),
            Arc::clone(&hasher),
            minter.clone(),
            account_settings,
            Arc::clone(&limits),
            Arc::clone(&guard),
        ));
        // The answer floor starts from what is stored (a failed scan leaves it to the
        // hashes seen at checks and imports, and the sweeper tries again).
        if let Err(e) = accounts.scan_stored_hashes().await {
            warn!(error = %e, "reading the stored hashes' costs failed; the password-check answer floor starts at zero");
        }
        let reset_settings = ResetSettings {
            tokens: config.tokens,
            passwords: config.passwords,
            limits: config.limits,
            event_retention: config.events.retention,
            emit_unknown_account_events: config.events.emit_unknown_account_events,
        };
        let reset = Arc::new(ResetService::start(
            runtime.clone(),
            hasher,
            Arc::clone(&limits),
            Arc::clone(&guard),
            minter,
            reset_settings,
        ));
        let metrics_listener = bind_metrics(config.server.metrics_listen).await?;
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
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
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
        let health = Readiness::start(&self.store, self.server.health_check_interval, self.shutdown.clone()).await;
        if let Some(metrics) = self.metrics_listener.take() {
            background::serve_metrics(metrics, self.feed.clone(), self.store.clone(), self.shutdown.clone());
        }
        let fetcher = self.feed.start().await;
        let sweeper = self.sweeper().spawn(self.server.sweep_interval, self.shutdown.clone());
        if self.store.is_postgres() {
            let cache = Arc::clone(self.reset.cache());
            background::follow_other_replicas(&self.database_url, self.bus.clone(), cache, self.shutdown.clone()).await;
        }

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = transport::serve(&self.server, self.services(&health), listener, async {
            let _ = stop_rx.await;
        })?;
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
        let outcome = within_grace(self.server.shutdown_grace, finish).await;
        let _ = sweeper.await;
        let _ = fetcher.await;
        self.store.close().await?;
        info!("stopped");
        outcome
    }

    /// The gRPC services of the port, over the shared components.
    fn services(&self, health: &Readiness) -> Services {
        Services {
            health: health.service.clone(),
            reset: ResetGrpc { reset: Arc::clone(&self.reset), feed: self.feed.clone(), clients: self.clients.clone() },
            accounts: AccountGrpc { accounts: Arc::clone(&self.accounts), clients: self.clients.clone() },
        }
    }

    fn sweeper(&self) -> Sweeper {
        Sweeper {
            reset: Arc::clone(&self.reset),
            accounts: Arc::clone(&self.accounts),
            limits: Arc::clone(&self.limits),
            guard: Arc::clone(&self.guard),
        }
    }
}

/// What both services share: the store, the clock, the event bus, the token cache, and
/// the token digests under the current key and those being rotated out.
fn runtime(store: Db, clock: &SharedClock, config: &Config, key: &ServerKey) -> Runtime {
    Runtime {
        store,
        clock: Arc::clone(clock),
        bus: EventBus::default(),
        cache: Arc::new(TokenCache::new(config.tokens.cache_ttl, cache::DEFAULT_CAPACITY, Arc::clone(clock))),
        digester: TokenDigester::with_previous(
            key.digest_key(),
            config.previous_keys.iter().map(|k| k.digest_key()).collect(),
        ),
    }
}

/// Event subscriptions: replay from the store, then live from the bus.
fn event_feed(
    store: &Store,
    runtime: &Runtime,
    sealer: Sealer,
    events: &EventSettings,
    shutdown: CancellationToken,
) -> EventFeed {
    EventFeed::new(
        Arc::new(store.clone()),
        runtime.bus.clone(),
        Arc::clone(&runtime.cache),
        sealer,
        Arc::clone(&runtime.clock),
        events.poll_interval,
        events.broadcast_capacity,
        shutdown,
    )
}

fn warn_of_short_codes(generator: &TokenGenerator) {
    if generator.is_numeric() {
        warn!(
            bits = generator.search_space_bits(),
            "numeric reset codes have a small search space; each is bound to its login and revoked after --max-code-attempts failures"
        );
    }
}

/// The `/metrics` listener, bound at build so that a taken port fails start-up.
async fn bind_metrics(addr: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding metrics on {addr}"))?;
    crate::telemetry::metrics_handle();
    Ok(Some(listener))
}
