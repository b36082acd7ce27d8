//! One subscription: replay from the outbox after a cursor, then follow new commits.
//!
//! Every subscriber reads the outbox itself, woken by the bus or, as a fallback for
//! events committed by other replicas, by a poll interval. Reading by cursor makes the
//! switch from replay to live free of gaps and duplicates by construction.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus::EventBus;
use super::seal::Sealer;
use super::{Event, Payload};
use crate::domain::clock::SharedClock;
use crate::domain::{Error, Result};
use crate::store::{EventKind, Store, StoredEvent};

const BATCH: u64 = 256;

#[derive(Clone)]
pub struct EventFeed {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    bus: EventBus,
    sealer: Sealer,
    clock: SharedClock,
    poll_interval: Duration,
    shutdown: CancellationToken,
}

impl EventFeed {
    pub fn new(
        store: Store,
        bus: EventBus,
        sealer: Sealer,
        clock: SharedClock,
        poll_interval: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self { inner: Arc::new(Inner { store, bus, sealer, clock, poll_interval, shutdown }) }
    }

    /// Starts a subscription. `after`: `None` for live events only, else every retained
    /// event with a larger sequence first. The stream ends at shutdown.
    pub async fn subscribe(&self, after: Option<u64>) -> Result<mpsc::Receiver<Result<Event>>> {
        let inner = Arc::clone(&self.inner);
        // Watch before reading the cursor: a commit in between then still wakes us.
        let mut wake = inner.bus.watch();
        let mut cursor = match after {
            Some(after) => {
                let after = i64::try_from(after).map_err(|_| Error::invalid("after_sequence", "is too large"))?;
                if after < inner.store.purged_through().await? {
                    return Err(Error::CursorExpired);
                }
                after
            }
            None => inner.store.last_sequence().await?,
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let batch = match inner.store.events_after(cursor, BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                // A hole after the cursor is normal on PostgreSQL (rolled-back sequence
                // values), but it may also be events purged while this subscriber lagged:
                // then it must not skip them silently.
                let hole = batch.first().is_some_and(|e| e.sequence > cursor + 1);
                if hole {
                    match inner.store.purged_through().await {
                        Ok(purged) if purged > cursor => {
                            let _ = tx.send(Err(Error::CursorExpired)).await;
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
                let full = batch.len() as u64 == BATCH;
                for stored in batch {
                    cursor = stored.sequence;
                    let event = inner.deliverable(stored);
                    tokio::select! {
                        sent = tx.send(Ok(event)) => if sent.is_err() { return },
                        () = inner.shutdown.cancelled() => return,
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    changed = wake.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(inner.poll_interval) => {}
                    () = tx.closed() => return,
                    () = inner.shutdown.cancelled() => return,
                }
            }
        });
        Ok(rx)
    }
}

impl Inner {
    fn deliverable(&self, e: StoredEvent) -> Event {
        let payload = match e.kind {
            EventKind::TokenCreated => {
                let expires_at = e.expires_at.unwrap_or(e.occurred_at);
                let live = expires_at > self.clock.now();
                let token = match (live, &e.sealed_token, e.token_id) {
                    (true, Some(sealed), Some(id)) => self.sealer.open(sealed, id.as_bytes()).unwrap_or_default(),
                    _ => String::new(),
                };
                Payload::TokenCreated {
                    account_id: e.account_id,
                    email: e.email,
                    token,
                    expires_at,
                    client_ip: e.client_ip,
                    user_agent: e.user_agent,
                    locale: e.locale,
                }
            }
            EventKind::PasswordChanged => Payload::PasswordChanged {
                account_id: e.account_id,
                email: e.email,
                client_ip: e.client_ip,
                user_agent: e.user_agent,
            },
            EventKind::ResetRequestedForUnknownEmail => Payload::ResetRequestedForUnknownEmail {
                email: e.email,
                client_ip: e.client_ip,
                user_agent: e.user_agent,
                locale: e.locale,
            },
        };
        Event { sequence: e.sequence.max(0) as u64, occurred_at: e.occurred_at, payload }
    }
}
