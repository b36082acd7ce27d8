//! Retrying work that failed transiently (`Error::Unavailable`: a deadlock, a
//! serialization failure, a busy SQLite file, a lost connection) with jittered
//! exponential backoff, for work that is safe to repeat (one transaction or one read).

use std::time::Duration;

use rand::RngExt;
use tracing::warn;

use super::clock;
use crate::domain::model::error::{Error, Result};

const FIRST_RETRY: Duration = Duration::from_millis(10);
const LONGEST_RETRY: Duration = Duration::from_millis(500);

/// Runs `attempt`, retrying `Unavailable` failures for up to `budget` (calling
/// `on_retry` before each retry); any other result, or the last failure, is returned.
/// `what` names the work in the log line.
pub async fn retry_transient<T, F, Fut>(
    what: &'static str,
    budget: Duration,
    mut on_retry: impl FnMut(),
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = clock::monotonic() + budget;
    let mut delay = FIRST_RETRY;
    loop {
        match attempt().await {
            Err(Error::Unavailable(e)) if clock::monotonic() + delay < deadline => {
                on_retry();
                warn!(error = format!("{e:#}"), retry_in = ?delay, "{what} not written; retrying");
                let jitter = rand::rng().random_range(0..=delay.as_millis() as u64 / 2);
                clock::pause(delay + Duration::from_millis(jitter)).await;
                delay = (delay * 2).min(LONGEST_RETRY);
            }
            result => return result,
        }
    }
}
