//! Structured logs with `tracing` (filter with `RUST_LOG`, default `info`), OTLP trace
//! export switched on by the standard `OTEL_*` variables, and the Prometheus endpoint.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use pwreset_proto::ops_endpoint::{self, Method, Reply};
use pwreset_proto::redact::SECRET_BEARING_SPANS_OFF;
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
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(SECRET_BEARING_SPANS_OFF.parse().unwrap_or_default());
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
/// the gauges that are read on demand (pool use, subscribers, outbox lag) first. The
/// exporter's own listener is not used: one process may run several servers (tests)
/// with one recorder, and the shared endpoint bounds slow and idle clients.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    refresh: std::sync::Arc<dyn Fn() + Send + Sync>,
    stop: tokio_util::sync::CancellationToken,
) {
    let Some(handle) = metrics_handle() else {
        tracing::warn!("another metrics recorder is installed; /metrics is not served");
        return;
    };
    let answer = move |method: &Method, path: &str| match (method, path) {
        (&Method::GET, "/metrics") => {
            refresh();
            handle.run_upkeep();
            Reply::metrics(handle.render())
        }
        _ => Reply::not_found(),
    };
    ops_endpoint::serve(listener, answer, stop).await;
}
