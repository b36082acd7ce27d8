//! The gRPC port: tonic's server with its transport settings and TLS, caller
//! authentication, reflection, and the services behind them.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::pb::health_server::HealthServer;

use super::health::EndingHealth;
use crate::config::ServerSettings;
use crate::grpc::accounts::AccountGrpc;
use crate::grpc::auth::{AuthLayer, CallerKeys};
use crate::grpc::observe::ObserveLayer;
use crate::grpc::reset::ResetGrpc;
use crate::proto;
use crate::proto::account_service_server::AccountServiceServer;
use crate::proto::password_reset_service_server::PasswordResetServiceServer;

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

/// What the port serves besides reflection.
pub(super) struct Services {
    pub(super) health: HealthServer<EndingHealth>,
    pub(super) reset: ResetGrpc,
    pub(super) accounts: AccountGrpc,
}

/// Serves `services` on `listener` until `stop` completes (then tonic's graceful
/// shutdown: no new calls, in-flight ones finish).
pub(super) fn serve(
    server: &ServerSettings,
    services: Services,
    listener: TcpListener,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<impl Future<Output = Result<(), tonic::transport::Error>>> {
    let (v1, v1alpha) = reflection()?;
    let max = server.max_message_bytes;
    let (builder, keys) = transport(server)?;
    // The message-size limit on every service of the port, the unauthenticated
    // health and reflection included (tonic's own default is 4 MiB).
    Ok(builder
        .layer(ObserveLayer)
        .layer(AuthLayer::new(keys))
        .add_service(services.health.max_decoding_message_size(max))
        .add_service(v1.max_decoding_message_size(max))
        .add_service(v1alpha.max_decoding_message_size(max))
        .add_service(PasswordResetServiceServer::new(services.reset).max_decoding_message_size(max))
        .add_service(AccountServiceServer::new(services.accounts).max_decoding_message_size(max))
        .serve_with_incoming_shutdown(incoming(listener), stop))
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
