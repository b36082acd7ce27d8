//! The HTTP endpoint both binaries serve for operations: Prometheus scrapes `/metrics`,
//! and the notifier's liveness probe `/healthz`. Each binary says what a path answers;
//! this module owns the connection handling and its protections, so a scraper or probe
//! is always answered and an idle or hostile client cannot hold the port:
//!
//! - a request's head must arrive whole within [`HEAD_TIMEOUT`] (a probe or a scraper
//!   sends it at once) and be at most [`HEAD_CAP`] bytes (else `431`);
//! - one exchange takes at most [`HEAD_TIMEOUT`] + [`ANSWER_TIMEOUT`] in all;
//! - at most [`CONNECTIONS`] are open at once; past that the one that has waited
//!   longest for its head is closed to admit the new one, so idle connections cannot
//!   starve a probe;
//! - one request per connection (`connection: close`), which is all a scraper needs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The request's method and the reply's status, as the callers name them.
pub use hyper::{Method, StatusCode};

/// How long a client has to send its whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(1);
/// How long writing the answer may take once the head has arrived.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read (hyper accepts no smaller cap).
pub const HEAD_CAP: usize = 8 * 1024;
/// Connections open at once.
pub const CONNECTIONS: usize = 64;

/// What a path answers: a status and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    /// A scrape: the Prometheus text exposition format.
    pub fn metrics(body: String) -> Self {
        Reply { status: StatusCode::OK, content_type: "text/plain; version=0.0.4", body }
    }

    pub fn text(status: StatusCode, body: &str) -> Self {
        Reply { status, content_type: "text/plain", body: body.to_owned() }
    }

    pub fn not_found() -> Self {
        Reply::text(StatusCode::NOT_FOUND, "")
    }
}

/// Serves `answer(method, path)` on `listener` until `stop`. `path` is the request
/// target as sent (with its query, if any).
pub async fn serve<A>(listener: TcpListener, answer: A, stop: CancellationToken)
where
    A: Fn(&Method, &str) -> Reply + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    let connections = Arc::new(Mutex::new(Connections::default()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let Ok((socket, _)) = accepted else { continue };
        // Every slot is being answered (each for a moment): closed rather than queued.
        let Some(slot) = Slot::admit(&connections) else { continue };
        tokio::spawn(exchange(socket, slot, Arc::clone(&answer)));
    }
}

/// One connection: its head, then one answer, within the timeouts; given up at once if
/// a newer connection needs its slot while it still waits for its head.
async fn exchange<A>(socket: TcpStream, slot: Slot, answer: Arc<A>)
where
    A: Fn(&Method, &str) -> Reply + Send + Sync + 'static,
{
    let closed = slot.closed.clone();
    let slot = Arc::new(slot);
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        // Closed while its head arrived: no answer (an error drops the connection).
        let reply = slot.answer().then(|| respond(answer.as_ref(), &request)).ok_or(Evicted);
        std::future::ready(reply)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(HEAD_CAP)
        .keep_alive(false)
        .serve_connection(TokioIo::new(socket), service);
    tokio::select! {
        _ = tokio::time::timeout(HEAD_TIMEOUT + ANSWER_TIMEOUT, connection) => {}
        () = closed.cancelled() => {}
    }
}

fn respond<A>(answer: &A, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>>
where
    A: Fn(&Method, &str) -> Reply,
{
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let reply = answer(request.method(), path);
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = reply.status;
    response.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(reply.content_type));
    response
}

/// A connection closed to make room before its head arrived.
#[derive(Debug)]
struct Evicted;

impl std::fmt::Display for Evicted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed to admit a newer connection")
    }
}

impl std::error::Error for Evicted {}

/// The open connections: those still waiting for their head (by arrival, each
/// closable), and how many are being answered.
#[derive(Default)]
struct Connections {
    waiting: BTreeMap<u64, CancellationToken>,
    answering: usize,
    next: u64,
}

impl Connections {
    /// Admits a connection, closing the one waiting longest for its head if full;
    /// `None` if every slot is being answered.
    fn admit(&mut self) -> Option<(u64, CancellationToken)> {
        if self.waiting.len() + self.answering >= CONNECTIONS {
            let (_, oldest) = self.waiting.pop_first()?;
            oldest.cancel();
        }
        let (id, closed) = (self.next, CancellationToken::new());
        self.next += 1;
        self.waiting.insert(id, closed.clone());
        Some((id, closed))
    }
}

/// A connection's slot, given back however its task ends.
struct Slot {
    connections: Arc<Mutex<Connections>>,
    id: u64,
    /// Cancelled when a newer connection takes this slot.
    closed: CancellationToken,
    answering: std::sync::atomic::AtomicBool,
}

impl Slot {
    fn admit(connections: &Arc<Mutex<Connections>>) -> Option<Self> {
        let (id, closed) = lock(connections).admit()?;
        let answering = std::sync::atomic::AtomicBool::new(false);
        Some(Slot { connections: Arc::clone(connections), id, closed, answering })
    }

    /// Its head arrived: it is answered unless it was closed meanwhile.
    fn answer(&self) -> bool {
        let mut connections = lock(&self.connections);
        if connections.waiting.remove(&self.id).is_none() {
            return false;
        }
        connections.answering += 1;
        self.answering.store(true, std::sync::atomic::Ordering::Relaxed);
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut connections = lock(&self.connections);
        if *self.answering.get_mut() {
            connections.answering -= 1;
        } else {
            connections.waiting.remove(&self.id);
        }
    }
}

/// The connection table is consistent after every statement, so a panic elsewhere
/// leaves nothing to repair.
fn lock(connections: &Mutex<Connections>) -> std::sync::MutexGuard<'_, Connections> {
    connections.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_full_table_closes_the_connection_waiting_longest() {
        let mut connections = Connections::default();
        let first = connections.admit().unwrap();
        for _ in 1..CONNECTIONS {
            connections.admit().unwrap();
        }
        let newest = connections.admit().unwrap();
        assert!(first.1.is_cancelled(), "the oldest waiting one made room");
        assert!(!newest.1.is_cancelled());
        assert_eq!(connections.waiting.len(), CONNECTIONS);
    }

    #[test]
    fn a_table_of_answers_in_progress_admits_no_one() {
        let mut connections = Connections { answering: CONNECTIONS, ..Connections::default() };
        assert!(connections.admit().is_none());
    }
}
