//! `/metrics` (Prometheus text) and `/healthz` (200 while subscribed to the event
//! stream, else 503), served by the endpoint the service uses too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use pwreset_proto::ops_endpoint::{self, Method, Reply, StatusCode};
use tokio_util::sync::CancellationToken;

/// What the follow loop tells the health endpoint.
#[derive(Default)]
pub struct Health {
    subscribed: AtomicBool,
}

impl Health {
    pub fn set_subscribed(&self, subscribed: bool) {
        self.subscribed.store(subscribed, Ordering::SeqCst);
    }

    fn answer(&self, metrics: &metrics_exporter_prometheus::PrometheusHandle, path: &str) -> Reply {
        match path {
            "/metrics" => Reply::metrics(metrics.render()),
            "/healthz" if self.subscribed.load(Ordering::SeqCst) => Reply::text(StatusCode::OK, "serving\n"),
            "/healthz" => Reply::text(StatusCode::SERVICE_UNAVAILABLE, "not subscribed\n"),
            _ => Reply::not_found(),
        }
    }
}

/// Installs the metrics recorder and serves both paths on `addr` for the life of the
/// process (a probe still gets its answer while the notifier drains at a stop).
pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> anyhow::Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "metrics and health listening");
    let answer = move |_: &Method, path: &str| health.answer(&metrics, path);
    tokio::spawn(ops_endpoint::serve(listener, answer, CancellationToken::new()));
    Ok(())
}
