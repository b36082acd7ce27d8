//! Following the event stream: subscribes from the cursor, hands each event to the
//! dispatcher in order, and reconnects with jittered backoff after the stream ends or
//! fails transiently. Stops at shutdown, on a refused key, on a cursor older than the
//! server retains (unless `--skip-gaps`), or with `--once` when caught up.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pwreset_proto::clock::{self, Clock, SystemClock};
use pwreset_proto::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset_proto::proto::{Event, SubscribeEventsRequest};
use pwreset_proto::secret::Secret;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::deliver::{self, Delivery};
use crate::dispatch::Dispatcher;
use crate::health::Health;

/// The first reconnect delay, and the delay again once an event has arrived.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// With `--once`: caught up when no event has come for this long.
const CAUGHT_UP_AFTER: Duration = Duration::from_secs(1);

/// How the stream is followed, from the flags.
pub struct Follower {
    /// pwreset's gRPC address.
    pub endpoint: String,
    pub events_key: Option<Secret>,
    /// Without a stored cursor: live events only, rather than every retained one.
    pub start_now: bool,
    pub once: bool,
    pub skip_gaps: bool,
}

/// What follows the end of a stream.
enum Next {
    Reconnect,
    Exit(ExitCode),
}

impl Follower {
    /// Subscribes from the cursor and hands events to the lanes until shutdown (or, with
    /// --once, until caught up); reconnects after transient stream errors. The lanes end
    /// once `dispatcher` is dropped, when this returns.
    pub async fn follow(
        &self,
        dispatcher: Dispatcher,
        health: &Health,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<ExitCode> {
        let delivery = Arc::clone(&dispatcher.delivery);
        let mut after = self.first_after(&delivery).await;
        let mut backoff = FIRST_BACKOFF;
        let channel =
            tonic::transport::Endpoint::from_shared(self.endpoint.clone()).context("--endpoint")?.connect_lazy();
        loop {
            let subscribed = tokio::select! {
                subscribed = self.subscribe(&channel, after) => subscribed?,
                _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
            };
            let next = match subscribed {
                Ok(stream) => {
                    health.set_subscribed(true);
                    tracing::info!(after = ?after, "subscribed");
                    let next = self.read(stream, &dispatcher, &mut after, &mut backoff, shutdown).await?;
                    if let Next::Reconnect = next {
                        health.set_subscribed(false);
                        // Resume from the ledger: before any loaded message the replay has
                        // not reached yet, else after the newest event read.
                        after = delivery.ledger().lock().await.resume_after().or(after);
                    }
                    next
                }
                Err(status) => self.stream_error(&status, &mut after, &delivery).await?,
            };
            if let Next::Exit(code) = next {
                return Ok(code);
            }
            if !pause(&mut backoff, shutdown).await {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }

    /// Where the first subscription starts: the stored cursor, else every retained
    /// event (`None`: live events only, with `--start now`).
    async fn first_after(&self, delivery: &Delivery) -> Option<u64> {
        let stored = delivery.ledger().lock().await.resume_after();
        match stored {
            Some(sequence) => Some(sequence),
            None if self.start_now => None,
            None => Some(0),
        }
    }

    async fn subscribe(
        &self,
        channel: &Channel,
        after: Option<u64>,
    ) -> anyhow::Result<Result<tonic::Streaming<Event>, tonic::Status>> {
        let mut client = PasswordResetServiceClient::new(channel.clone());
        let mut request = tonic::Request::new(SubscribeEventsRequest { after_sequence: after });
        if let Some(key) = &self.events_key {
            let value: MetadataValue<_> = format!("Bearer {}", key.expose()).parse().context("--events-key")?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(client.subscribe_events(request).await.map(tonic::Response::into_inner))
    }

    /// Reads one stream until it ends, fails or the notifier stops.
    async fn read(
        &self,
        mut stream: tonic::Streaming<Event>,
        dispatcher: &Dispatcher,
        after: &mut Option<u64>,
        backoff: &mut Duration,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Next> {
        loop {
            let next = tokio::select! {
                next = stream.message() => next,
                _ = shutdown.cancelled() => return Ok(Next::Exit(ExitCode::SUCCESS)),
                () = self.idle() => {
                    tracing::info!(after = ?after, "caught up (--once)");
                    return Ok(Next::Exit(ExitCode::SUCCESS));
                }
            };
            match next {
                Ok(Some(event)) => {
                    *backoff = FIRST_BACKOFF;
                    let occurred = event.occurred_at;
                    if !dispatcher.dispatch(event, shutdown).await {
                        return Ok(Next::Exit(ExitCode::SUCCESS));
                    }
                    if let Some(occurred) = occurred {
                        record_lag(&occurred);
                    }
                }
                Ok(None) => return Ok(Next::Reconnect),
                Err(status) => return self.stream_error(&status, after, &dispatcher.delivery).await,
            }
        }
    }

    /// With `--once`, ends when no event has come for a while; never otherwise.
    async fn idle(&self) {
        if self.once {
            clock::pause(CAUGHT_UP_AFTER).await;
        } else {
            std::future::pending::<()>().await;
        }
    }

    /// A failed subscription or stream: exit 3 on a cursor older than the server
    /// retains (or go on live with `--skip-gaps`), an error on a refused key, else
    /// reconnect.
    async fn stream_error(
        &self,
        status: &tonic::Status,
        after: &mut Option<u64>,
        delivery: &Delivery,
    ) -> anyhow::Result<Next> {
        if status.code() == Code::OutOfRange {
            if self.skip_gaps {
                tracing::error!(after = ?after, "the cursor is older than the server retains: events were missed; going on from the live stream (--skip-gaps)");
                let forgotten = delivery.ledger().lock().await.forget_replay();
                if forgotten > 0 {
                    metrics::counter!("pwreset_notify_failed_total", "reason" => "purged").increment(forgotten as u64);
                }
                *after = None;
                return Ok(Next::Reconnect);
            }
            tracing::error!(after = ?after, "the cursor is older than the server retains: events were missed. Exiting; restart with --skip-gaps to go on from the live stream");
            return Ok(Next::Exit(ExitCode::from(3)));
        }
        if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) {
            anyhow::bail!("the server refused the events key: {}", status.message());
        }
        tracing::warn!(code = ?status.code(), message = status.message(), "the event stream failed; reconnecting");
        Ok(Next::Reconnect)
    }
}

/// How far behind the stream the notifier is, from the event's own time.
fn record_lag(occurred: &prost_types::Timestamp) {
    let lag = SystemClock.now().timestamp() - occurred.seconds;
    metrics::gauge!("pwreset_notify_lag_seconds").set(lag.max(0) as f64);
}

/// Waits `delay` (with up to 50 % jitter), then doubles it up to a minute; `false` if
/// shutdown came first.
async fn pause(delay: &mut Duration, shutdown: &CancellationToken) -> bool {
    let wait = deliver::jittered(delay);
    tokio::select! {
        _ = clock::pause(wait) => true,
        _ = shutdown.cancelled() => false,
    }
}
