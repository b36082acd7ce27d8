//! The gRPC port: where it listens, TLS, who may call it, and the server's lifecycle
//! (draining, health checks, keep-alives, the sweeper).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use crate::cli::ServerArgs;
use crate::domain::model::textfile;
use crate::grpc::auth::{CallerKey, Role};

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub caller_keys: Vec<CallerKey>,
    pub allow_unauthenticated: bool,
    pub max_message_bytes: usize,
    pub shutdown_grace: Duration,
    pub sweep_interval: Duration,
    pub metrics_listen: Option<SocketAddr>,
    pub drain_delay: Duration,
    pub health_check_interval: Duration,
    /// HTTP/2 keep-alive pings to clients (and to a proxy in front).
    pub keepalive_interval: Duration,
    pub tls: Option<TlsSettings>,
}

/// PEM contents, read at start-up.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

/// Largest TLS certificate chain, key or CA file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The smallest `--max-message-bytes`.
const MIN_MESSAGE_BYTES: usize = 1024;

pub(super) fn server(args: &ServerArgs) -> anyhow::Result<ServerSettings> {
    let tls = tls(args)?;
    let caller_keys = caller_keys(args)?;
    let client_certificates = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    refuse_open_listener(args, &caller_keys, client_certificates)?;
    if args.max_message_bytes < MIN_MESSAGE_BYTES {
        bail!("--max-message-bytes must be at least 1024");
    }
    Ok(ServerSettings {
        listen: args.listen,
        caller_keys,
        allow_unauthenticated: args.allow_unauthenticated,
        max_message_bytes: args.max_message_bytes,
        shutdown_grace: args.shutdown_grace,
        sweep_interval: args.sweep_interval.max(Duration::from_secs(1)),
        metrics_listen: args.metrics_listen,
        drain_delay: args.drain_delay,
        health_check_interval: args.health_check_interval.max(Duration::from_millis(100)),
        keepalive_interval: args.http2_keepalive_interval.max(Duration::from_millis(100)),
        tls,
    })
}

/// The certificate chain, key and client CA, read now. PEM files are a few KiB: a
/// device or directory named by mistake is refused.
fn tls(args: &ServerArgs) -> anyhow::Result<Option<TlsSettings>> {
    let read = |p: &PathBuf| textfile::read_small(p, MAX_PEM_BYTES);
    Ok(match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsSettings {
            cert: read(cert)?,
            key: read(key)?,
            client_ca: args.tls_client_ca.as_ref().map(read).transpose()?,
        }),
        _ => None,
    })
}

/// Each `--caller-key`, parsed without echoing a refused one.
fn caller_keys(args: &ServerArgs) -> anyhow::Result<Vec<CallerKey>> {
    args.caller_keys
        .iter()
        .map(|k| k.expose().parse::<CallerKey>().map_err(|e| anyhow::anyhow!("--caller-key: {e}")))
        .collect()
}

/// A reachable address needs a key for every role, client certificates, or
/// `--allow-unauthenticated`: an open `reset` role lets anyone guess tokens and claim
/// any client address.
fn refuse_open_listener(args: &ServerArgs, keys: &[CallerKey], client_certificates: bool) -> anyhow::Result<()> {
    if args.listen.ip().is_loopback() || args.allow_unauthenticated || client_certificates {
        return Ok(());
    }
    let missing: Vec<String> =
        Role::ALL.into_iter().filter(|role| !keys.iter().any(|k| k.role == *role)).map(|r| r.to_string()).collect();
    if !missing.is_empty() {
        bail!(
            "refusing to serve on {} with no caller key for: {} (set --caller-key ROLE=KEY, or --allow-unauthenticated on purpose)",
            args.listen,
            missing.join(", ")
        );
    }
    Ok(())
}
