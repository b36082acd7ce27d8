//! The gRPC health service as load balancers see it: readiness follows the database
//! until draining starts, liveness stays SERVING for as long as the process runs.

use std::time::Duration;

use pwreset_proto::clock;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::proto;
use crate::store::Store;

pub const RESET_SERVICE_NAME: &str = proto::password_reset_service_server::SERVICE_NAME;
pub const ACCOUNT_SERVICE_NAME: &str = proto::account_service_server::SERVICE_NAME;
/// Health service name for liveness: SERVING for as long as the process runs, draining
/// included, unlike "" and the services, which follow the database and shutdown.
pub const LIVENESS_SERVICE_NAME: &str = "liveness";
const READINESS: [&str; 3] = ["", RESET_SERVICE_NAME, ACCOUNT_SERVICE_NAME];

/// The health service of the port, and the task that keeps its readiness current.
pub(super) struct Readiness {
    reporter: HealthReporter,
    pub(super) service: HealthServer<EndingHealth>,
    draining: CancellationToken,
    readiness: tokio::task::JoinHandle<()>,
}

impl Readiness {
    /// Everything SERVING, then readiness checked against the database every `every`.
    pub(super) async fn start(store: &Store, every: Duration, stop: CancellationToken) -> Readiness {
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
        let readiness = tokio::spawn(follow_database(store.clone(), reporter.clone(), every, draining.clone()));
        Readiness { reporter, service, draining, readiness }
    }

    /// NOT_SERVING, then `delay` for load balancers and sidecars to stop routing here.
    pub(super) async fn drain(self, delay: Duration) {
        self.draining.cancel();
        let _ = self.readiness.await;
        set_status(&self.reporter, &READINESS, ServingStatus::NotServing).await;
        if !delay.is_zero() {
            info!(?delay, "NOT_SERVING; draining before closing the listener");
            clock::pause(delay).await;
        }
    }
}

/// The standard health service, whose `Watch` streams end when `stop` fires.
pub(super) struct EndingHealth {
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
async fn follow_database(store: Store, health: HealthReporter, every: Duration, draining: CancellationToken) {
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
