//! What ends the server: SIGTERM or Ctrl-C, and the grace period the work in flight
//! gets once it stops accepting calls.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tracing::warn;

/// Installs the SIGTERM and Ctrl-C handlers now, so a signal that arrives before the
/// server is polled is not lost; the future completes on either.
pub(super) fn termination() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Waits for `finish` (the in-flight calls, then the work they left behind) for at most
/// `grace`; past it the rest is dropped, which is not an error.
pub(super) async fn within_grace(
    grace: Duration,
    finish: impl Future<Output = Result<(), tonic::transport::Error>>,
) -> anyhow::Result<()> {
    match tokio::time::timeout(grace, finish).await {
        Ok(result) => result.context("serving"),
        Err(_) => {
            warn!(?grace, "shutdown grace elapsed; dropping remaining work");
            Ok(())
        }
    }
}
