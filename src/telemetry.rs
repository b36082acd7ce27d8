//! Structured logs with `tracing` (filter with `RUST_LOG`, default `info`), OTLP trace
//! export switched on by the standard `OTEL_*` variables, and the Prometheus endpoint.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

/// Keeps the trace exporter alive; `shutdown` flushes what is still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "flushing traces at exit failed");
        }
    }
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
}

/// OTLP export is on when an OTLP endpoint is configured the standard way, unless
/// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
fn otlp_configured() -> bool {
    let endpoint = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
    endpoint && !env_is("OTEL_SDK_DISABLED", "true") && !env_is("OTEL_TRACES_EXPORTER", "none")
}

/// Exports spans over OTLP/gRPC; the exporter reads the remaining `OTEL_EXPORTER_OTLP_*`
/// variables (endpoint, headers, timeout) itself. Must run inside the Tokio runtime.
fn otlp_provider() -> Option<SdkTracerProvider> {
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("pwreset: OTLP trace export not started: {e}");
            return None;
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("pwreset");
    }
    Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
}

pub fn init(format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or log pipelines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        // Every line carries its spans, so request_id and trace_id of the RPC's span.
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(true).boxed(),
    };
    let provider = if otlp_configured() { otlp_provider() } else { None };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("pwreset")));
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let _ = tracing_subscriber::registry().with(fmt).with(otel).with(filter).try_init();
    Telemetry { provider }
}

/// Histogram buckets (seconds) for every `*_seconds` series: RPCs from sub-millisecond
/// reads to argon2-bound calls waiting in the hashing queue.
const SECONDS_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const MAX_SCRAPE_REQUEST: usize = 8 * 1024;

static RECORDER: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
    std::sync::OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. `None` if another
/// recorder was installed first.
pub fn metrics_handle() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Serves `GET /metrics` in the Prometheus text format until `stop`. `refresh` updates
/// the gauges that are read on demand (pool use, subscribers, outbox lag) first.
///
/// A minimal HTTP/1.1 responder rather than the exporter's own listener: it answers one
/// request per connection, which is all a scraper needs.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    refresh: std::sync::Arc<dyn Fn() + Send + Sync>,
    stop: tokio_util::sync::CancellationToken,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(handle) = metrics_handle() else {
        tracing::warn!("another metrics recorder is installed; /metrics is not served");
        return;
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let Ok((mut socket, _)) = accepted else { continue };
        let refresh = std::sync::Arc::clone(&refresh);
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_SCRAPE_REQUEST {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
            });
            if read.await.is_err() {
                return;
            }
            let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
            let response = if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
                refresh();
                handle.run_upkeep();
                let body = handle.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
            };
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
