//! The tasks that run beside the gRPC port while it serves: the sweeper, `/metrics`,
//! and following other replicas' commits on PostgreSQL. Each ends when the server's
//! shutdown token fires.

use std::sync::Arc;
use std::time::Duration;

use pwreset_proto::clock;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::domain::runtime::bus::EventBus;
use crate::domain::runtime::cache::TokenCache;
use crate::domain::runtime::guard::FailureGuard;
use crate::domain::runtime::limits::Limits;
use crate::domain::service::accounts::AccountService;
use crate::domain::service::reset::ResetService;
use crate::events::subscription::EventFeed;
use crate::store::{Notice, Store};

/// How often the stored hashes are read again for the answer floor (a read pages
/// through every imported hash still stored).
const SCAN_EVERY: Duration = Duration::from_secs(600);

/// How long start-up waits for LISTEN to be in place before going on without it.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// What the sweeper keeps small.
pub(super) struct Sweeper {
    pub(super) reset: Arc<ResetService>,
    pub(super) accounts: Arc<AccountService>,
    pub(super) limits: Arc<Limits>,
    pub(super) guard: Arc<FailureGuard>,
}

impl Sweeper {
    /// Every `every` until `stop`: purges what is past retention and forgets idle
    /// rate-limit keys; every `SCAN_EVERY`, reads the stored hashes' costs again.
    pub(super) fn spawn(self, every: Duration, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
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
                    self.scan_stored_hashes().await;
                }
                self.sweep().await;
            }
        })
    }

    async fn scan_stored_hashes(&self) {
        if let Err(e) = self.accounts.scan_stored_hashes().await {
            warn!(error = %e, "reading the stored hashes' costs failed; will retry");
        }
    }

    async fn sweep(&self) {
        self.limits.evict_idle();
        if let Err(e) = self.guard.evict_idle().await {
            warn!(error = %e, "forgetting old password-check failures failed; will retry");
        }
        match self.reset.purge().await {
            Ok(counts) if counts.tokens + counts.events > 0 => {
                info!(tokens = counts.tokens, events = counts.events, "purged");
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "purge failed; will retry"),
        }
    }
}

/// `/metrics` on `listener`, with the gauges read at each scrape.
pub(super) fn serve_metrics(listener: TcpListener, feed: EventFeed, store: Store, stop: CancellationToken) {
    let refresh: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let (subscribers, lag) = feed.lag();
        metrics::gauge!("pwreset_event_subscribers").set(subscribers as f64);
        metrics::gauge!("pwreset_outbox_lag").set(lag as f64);
        let (open, in_use) = store.pool_use();
        metrics::gauge!("pwreset_db_pool_connections", "state" => "open").set(f64::from(open));
        metrics::gauge!("pwreset_db_pool_connections", "state" => "in_use").set(f64::from(in_use));
    });
    tokio::spawn(crate::telemetry::serve_metrics(listener, refresh, stop));
}

/// On PostgreSQL: commits by other replicas wake this replica's subscribers at once,
/// and their deactivations empty this replica's token cache for the account.
/// Returns once LISTEN is in place (so no commit after start-up goes unannounced),
/// or after `LISTEN_WAIT` without it (subscribers still poll).
pub(super) async fn follow_other_replicas(
    database_url: &str,
    bus: EventBus,
    cache: Arc<TokenCache>,
    stop: CancellationToken,
) {
    let (listening, ready) = tokio::sync::oneshot::channel();
    tokio::spawn(crate::store::follow_commits(database_url.to_owned(), stop, listening, move |notice| match notice {
        Notice::Committed(sequence) => bus.published(sequence),
        Notice::Revoked(account_id) => cache.forget(account_id, None),
    }));
    if tokio::time::timeout(LISTEN_WAIT, ready).await.is_err() {
        warn!("event notifications not available yet; subscribers fall back to polling");
    }
}
