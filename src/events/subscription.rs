//! Subscriptions: replay from the outbox after a cursor, then follow new commits.
//!
//! One fetcher task per process reads each new event from the outbox once (woken by the
//! bus, by PostgreSQL NOTIFY via the bus, or by a poll tick for safety), unseals it once
//! and broadcasts it. A subscriber replays from the database until it reaches the
//! fetcher's position, then takes broadcast events; if it falls behind the broadcast
//! buffer it goes back to the database from its own cursor. Nobody is dropped, nothing
//! is skipped, and a slow subscriber never holds up another one or a writer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pwreset_proto::clock;
use pwreset_proto::clock::SharedClock;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::domain::model::event::{DomainEvent, Event, Sequence, TokenCopy};
use crate::domain::model::persistence::EventStore;
use crate::domain::model::seal::{SealContext, Sealer};
use crate::domain::model::{Error, Result};
use crate::domain::runtime::bus::EventBus;
use crate::domain::runtime::cache::TokenCache;

const BATCH: u64 = 256;

#[derive(Clone)]
pub struct EventFeed {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn EventStore>,
    bus: EventBus,
    /// Dropped from as events show accounts' tokens changing (on any replica).
    cache: Arc<TokenCache>,
    sealer: Sealer,
    clock: SharedClock,
    poll_interval: Duration,
    shutdown: CancellationToken,
    live: broadcast::Sender<Arc<Event>>,
    /// Highest sequence the fetcher has broadcast (stored before each send).
    position: AtomicI64,
    /// Each subscriber's cursor, for the outbox-lag metric.
    cursors: Mutex<HashMap<u64, Arc<AtomicI64>>>,
    next_subscriber: AtomicU64,
}

/// A subscriber's entry in the cursor registry; leaves it when dropped.
struct CursorSlot<'a> {
    inner: &'a Inner,
    id: u64,
    cursor: Arc<AtomicI64>,
}

impl CursorSlot<'_> {
    fn set(&self, sequence: i64) {
        self.cursor.store(sequence, Ordering::Relaxed);
    }
}

impl Drop for CursorSlot<'_> {
    fn drop(&mut self) {
        self.inner.cursors.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

impl EventFeed {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn EventStore>,
        bus: EventBus,
        cache: Arc<TokenCache>,
        sealer: Sealer,
        clock: SharedClock,
        poll_interval: Duration,
        broadcast_capacity: usize,
        shutdown: CancellationToken,
    ) -> Self {
        let (live, _) = broadcast::channel(broadcast_capacity.max(1));
        let inner = Inner {
            store,
            bus,
            cache,
            sealer,
            clock,
            poll_interval,
            shutdown,
            live,
            position: AtomicI64::new(-1),
            cursors: Mutex::new(HashMap::new()),
            next_subscriber: AtomicU64::new(0),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Starts the fetcher from the newest committed event. If the database cannot be read
    /// yet, the fetcher keeps trying and subscribers wait for it.
    pub async fn start(&self) -> tokio::task::JoinHandle<()> {
        if let Ok(last) = self.inner.store.last_sequence().await {
            self.inner.position.store(last.db(), Ordering::SeqCst);
        }
        tokio::spawn(Arc::clone(&self.inner).fetch())
    }

    /// Starts a subscription. `after`: `None` for live events only, else every retained
    /// event with a larger sequence first. The stream ends at shutdown.
    pub async fn subscribe(&self, after: Option<Sequence>) -> Result<mpsc::Receiver<Result<Event>>> {
        let inner = Arc::clone(&self.inner);
        let cursor = match after {
            Some(after) => {
                if after < inner.store.purged_through().await? {
                    return Err(Error::CursorExpired);
                }
                after.db()
            }
            None => inner.store.last_sequence().await?.db(),
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            if let Err(e) = inner.follow(cursor, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(rx)
    }

    /// (subscribers connected, newest fetched sequence minus the slowest cursor).
    pub fn lag(&self) -> (usize, i64) {
        let newest = self.inner.position.load(Ordering::SeqCst).max(0);
        let cursors = self.inner.cursors.lock().unwrap_or_else(|p| p.into_inner());
        let slowest = cursors.values().map(|c| c.load(Ordering::Relaxed)).min().unwrap_or(newest);
        (cursors.len(), (newest - slowest).max(0))
    }
}

impl Inner {
    /// The fetcher: reads new events once and broadcasts them, in sequence order.
    async fn fetch(self: Arc<Self>) {
        let mut wake = self.bus.watch();
        let started = self.position.load(Ordering::SeqCst);
        let mut cursor = loop {
            if started >= 0 {
                break started;
            }
            match self.store.last_sequence().await {
                Ok(last) => break last.db(),
                Err(e) => {
                    tracing::warn!(error = %e, "event fetcher cannot read the outbox; retrying");
                    tokio::select! {
                        () = clock::pause(self.poll_interval) => {}
                        () = self.shutdown.cancelled() => return,
                    }
                }
            }
        };
        self.position.store(cursor, Ordering::SeqCst);
        loop {
            match self.store.events_after(Sequence::from_db(cursor), BATCH).await {
                Ok(batch) => {
                    let full = batch.len() as u64 == BATCH;
                    for stored in batch {
                        cursor = stored.sequence.db();
                        self.forget_changed_tokens(&stored);
                        let event = Arc::new(self.deliverable(stored));
                        // Position first, then send: a subscriber that reads position P
                        // after subscribing receives every event above P.
                        self.position.store(cursor, Ordering::SeqCst);
                        let _ = self.live.send(event);
                    }
                    if full {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event fetcher cannot read the outbox; retrying"),
            }
            tokio::select! {
                changed = wake.changed() => if changed.is_err() { return },
                () = clock::pause(self.poll_interval) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// One subscriber from `cursor` on, until the client goes, shutdown, or an error.
    async fn follow(&self, mut cursor: i64, tx: &mpsc::Sender<Result<Event>>) -> Result<()> {
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let slot = CursorSlot { inner: self, id, cursor: Arc::new(AtomicI64::new(cursor)) };
        self.cursors.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Arc::clone(&slot.cursor));
        loop {
            // Subscribe before reading the position; see `fetch`.
            let mut live = self.live.subscribe();
            let position = self.position.load(Ordering::SeqCst);
            if position < 0 {
                // The fetcher has not started: wait for it without missing anything.
                tokio::select! {
                    () = clock::pause(Duration::from_millis(10)) => continue,
                    () = self.shutdown.cancelled() => return Ok(()),
                }
            }
            // Catch up from the database to the fetcher's position.
            while cursor < position {
                let batch = self.store.events_after(Sequence::from_db(cursor), BATCH).await?;
                if batch.is_empty() {
                    break;
                }
                self.check_retention(cursor, &batch).await?;
                for stored in batch {
                    cursor = stored.sequence.db();
                    if !self.send(tx, Arc::new(self.deliverable(stored))).await {
                        return Ok(());
                    }
                    slot.set(cursor);
                }
            }
            // Then live, dropping what the replay already delivered.
            loop {
                let event = tokio::select! {
                    received = live.recv() => received,
                    () = tx.closed() => return Ok(()),
                    () = self.shutdown.cancelled() => return Ok(()),
                };
                match event {
                    Ok(event) => {
                        let sequence = event.sequence.db();
                        if sequence <= cursor {
                            continue;
                        }
                        cursor = sequence;
                        if !self.send(tx, event).await {
                            return Ok(());
                        }
                        slot.set(cursor);
                    }
                    // Fell behind the buffer: back to the database from our cursor.
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    }

    /// Whether the event reached the subscriber's stream: not once the subscriber has
    /// hung up or the server is shutting down (the loop then ends without an error).
    async fn send(&self, tx: &mpsc::Sender<Result<Event>>, event: Arc<Event>) -> bool {
        let event = Arc::unwrap_or_clone(event);
        tokio::select! {
            sent = tx.send(Ok(event)) => sent.is_ok(),
            () = self.shutdown.cancelled() => false,
        }
    }

    /// A hole after the cursor is normal on PostgreSQL (rolled-back sequence values),
    /// but it may also be events purged while this subscriber lagged: then it must not
    /// skip them silently.
    async fn check_retention(&self, cursor: i64, batch: &[Event]) -> Result<()> {
        if batch.first().is_some_and(|e| e.sequence.db() > cursor + 1)
            && self.store.purged_through().await?.db() > cursor
        {
            return Err(Error::CursorExpired);
        }
        Ok(())
    }

    /// A new token revoked the account's others; a password change revoked them all.
    fn forget_changed_tokens(&self, e: &Event) {
        match &e.event {
            DomainEvent::TokenCreated(created) => self.cache.forget(created.account_id, Some(created.token_id)),
            DomainEvent::PasswordChanged { account_id, .. } => self.cache.forget(*account_id, None),
            DomainEvent::ResetRequestedForUnknownEmail { .. } => {}
        }
    }

    /// The event as a subscriber gets it: a live token's sealed copy opened.
    fn deliverable(&self, mut e: Event) -> Event {
        if let DomainEvent::TokenCreated(created) = &mut e.event {
            let live = created.expires_at > self.clock.now();
            let copy = std::mem::replace(&mut created.token, TokenCopy::Gone);
            created.token = match copy {
                TokenCopy::Sealed(sealed) if live => match self.sealer.open_event(&sealed, &SealContext::of(created)) {
                    Some(raw) => TokenCopy::Raw(raw),
                    None => {
                        // Tampered with, or sealed under a key no longer configured.
                        tracing::warn!(sequence = %e.sequence, "a sealed token did not open; delivered without it");
                        TokenCopy::Gone
                    }
                },
                _ => TokenCopy::Gone,
            };
        }
        e
    }
}
