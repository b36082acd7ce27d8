//! Per-RPC observability, once for every call, as a tower layer: the `x-request-id`
//! (kept or created, echoed in the response), one server span following the
//! OpenTelemetry RPC conventions (with the W3C `traceparent` ids when the caller sent
//! one), and the conventional gRPC server metrics
//! (`grpc_server_started_total`, `grpc_server_handled_total`,
//! `grpc_server_handling_seconds`).
//!
//! The status is read from the response headers: tonic sends a handler's error as a
//! trailers-only response, so a missing `grpc-status` header means OK. An error a
//! stream ends with after its first message is not seen here.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;

pub const REQUEST_ID: &str = "x-request-id";
/// The label values of a path outside the served contract: metrics stay bounded
/// whatever paths callers invent.
const UNKNOWN: &str = "unknown";

/// Every served method as `(service, method)` with its gRPC type: the contract's and
/// health's from their descriptor sets (so a new RPC is counted without a list to
/// update), and reflection.
static KNOWN_METHODS: std::sync::LazyLock<std::collections::HashMap<String, Labels>> = std::sync::LazyLock::new(|| {
    use prost::Message;
    let mut known = std::collections::HashMap::new();
    for set in [crate::proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
        let Ok(files) = prost_types::FileDescriptorSet::decode(set) else { continue };
        for file in files.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let name = format!("{package}.{}", service.name.unwrap_or_default());
                for method in service.method {
                    let kind = match (method.client_streaming(), method.server_streaming()) {
                        (false, false) => "unary",
                        (false, true) => "server_stream",
                        (true, false) => "client_stream",
                        (true, true) => "bidi_stream",
                    };
                    let method = method.name.unwrap_or_default();
                    known.insert(format!("/{name}/{method}"), (name.clone(), method, kind));
                }
            }
        }
    }
    for version in ["v1", "v1alpha"] {
        let service = format!("grpc.reflection.{version}.ServerReflection");
        let path = format!("/{service}/ServerReflectionInfo");
        known.insert(path, (service, "ServerReflectionInfo".to_owned(), "bidi_stream"));
    }
    known
});

/// The (service, method, gRPC type) labels of a request path: its own for a served
/// method, `unknown` for anything else.
fn method_labels(path: &str) -> Labels {
    KNOWN_METHODS.get(path).cloned().unwrap_or_else(|| (UNKNOWN.to_owned(), UNKNOWN.to_owned(), "unary"))
}

/// (service, method, gRPC type).
type Labels = (String, String, &'static str);
const MAX_REQUEST_ID: usize = 128;

/// gRPC code names as the Go ecosystem (and so Prometheus dashboards) spell them.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// (trace id, parent span id) of a valid W3C `traceparent`.
fn traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some((trace, parent))
}

fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Reads W3C trace context from the request headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResBody> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let started = crate::domain::runtime::clock::monotonic();
        let path = request.uri().path().to_owned();
        let (service, method, kind) = method_labels(&path);
        let id = request_id(request.headers());
        if let Ok(value) = HeaderValue::from_str(&id) {
            request.headers_mut().insert(REQUEST_ID, value);
        }
        let (trace_id, parent_id) = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(traceparent)
            .map_or((String::new(), String::new()), |(t, p)| (t.to_owned(), p.to_owned()));
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            request_id = %id,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            parent_span_id = %parent_id,
        );
        // With OTLP export on, the span continues the caller's trace.
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
        let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent);
        // With OTLP export on, log the ids the exported span has; otherwise the caller's
        // trace id, so logs still join the caller's trace.
        let exported = {
            use opentelemetry::trace::TraceContextExt;
            tracing_opentelemetry::OpenTelemetrySpanExt::context(&span).span().span_context().clone()
        };
        if exported.is_valid() {
            span.record("trace_id", tracing::field::display(exported.trace_id()));
            span.record("span_id", tracing::field::display(exported.span_id()));
        } else if !trace_id.is_empty() {
            span.record("trace_id", tracing::field::display(&trace_id));
        }
        let labels = [("grpc_type", kind.to_owned()), ("grpc_service", service), ("grpc_method", method)];
        metrics::counter!("grpc_server_started_total", &labels).increment(1);
        let future = self.inner.call(request);
        let record = span.clone();
        Box::pin(
            async move {
                let result = future.await;
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map_or(Code::Ok, Code::from_i32),
                    Err(_) => Code::Unknown,
                };
                record.record("rpc.grpc.status_code", code as i32);
                let mut handled = labels.to_vec();
                handled.push(("grpc_code", code_name(code).to_owned()));
                metrics::counter!("grpc_server_handled_total", &handled).increment(1);
                metrics::histogram!("grpc_server_handling_seconds", &labels).record(started.elapsed().as_secs_f64());
                result.map(|mut response| {
                    if let Ok(value) = HeaderValue::from_str(&id) {
                        response.headers_mut().insert(REQUEST_ID, value);
                    }
                    response
                })
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_traceparents_only() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(traceparent(ok), Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")));
        assert_eq!(traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(traceparent("garbage"), None);
    }

    #[test]
    fn keeps_a_sane_request_id_and_replaces_others() {
        let mut h = http::HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
    }

    #[test]
    fn only_served_methods_get_their_own_labels() {
        assert_eq!(
            method_labels("/identity.passwordreset.v1.PasswordResetService/Confirm"),
            ("identity.passwordreset.v1.PasswordResetService".to_owned(), "Confirm".to_owned(), "unary")
        );
        assert_eq!(method_labels("/identity.passwordreset.v1.PasswordResetService/SubscribeEvents").2, "server_stream");
        assert_eq!(method_labels("/grpc.health.v1.Health/Watch").1, "Watch");
        assert_eq!(
            method_labels("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo").1,
            "ServerReflectionInfo"
        );
        for junk in ["/junk1.Svc1/Method1", "/identity.passwordreset.v1.PasswordResetService/Nope", "/", "x"] {
            assert_eq!(method_labels(junk).0, UNKNOWN, "{junk}");
            assert_eq!(method_labels(junk).1, UNKNOWN, "{junk}");
        }
    }

    #[test]
    fn names_codes_the_go_way() {
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
