//! OTLP trace export end to end: the built binary, switched on by the standard
//! OTEL_* variables, sends the RPC's server span, in the caller's trace, to a collector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use pwreset::proto::CreateAccountRequest;
use pwreset::proto::account_service_client::AccountServiceClient;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A collector that hands every span it receives to the test: (name, trace id hex).
struct Collector(mpsc::UnboundedSender<(String, String)>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        for spans in request.into_inner().resource_spans {
            for scope in spans.scope_spans {
                for span in scope.spans {
                    let trace: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    let _ = self.0.send((span.name, trace));
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

// Multi-threaded: the collector must keep answering while the test waits for the
// server to exit (it flushes its last spans on the way out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_spans_reach_the_collector_in_the_callers_trace() {
    let (spans, mut received) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(spans)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let dir = tempfile::TempDir::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pwreset"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("PWRESET_DATABASE_URL")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("address=") {
                let address = line[at + "address=".len()..].split_whitespace().next().unwrap_or_default().to_owned();
                let _ = address_tx.send(address);
            }
        }
    });
    let address = address_rx.recv_timeout(Duration::from_secs(15)).expect("server announced its address");

    let mut client = AccountServiceClient::connect(format!("http://{address}")).await.unwrap();
    let mut request =
        Request::new(CreateAccountRequest { email: "ada@example.com".into(), password: None, ..Default::default() });
    request.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01").parse().unwrap());
    client.create_account(request).await.unwrap();

    let found = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some((name, trace)) = received.recv().await {
            if name == "identity.passwordreset.v1.AccountService/CreateAccount" {
                return Some(trace);
            }
        }
        None
    })
    .await;
    drop(client);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    assert_eq!(
        found.expect("the span arrives within 15 s"),
        Some(TRACE_ID.to_owned()),
        "it continues the caller's trace"
    );
}
