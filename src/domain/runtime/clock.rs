//! The only place that reads the wall clock. Expiry, rate windows and retention all
//! read time through [`Clock`], so tests can move it with [`ManualClock`]. Measuring
//! and pacing (metrics, backoff, poll intervals) use the runtime's monotonic timers
//! through [`monotonic`], [`pause`], [`pause_until`] and [`pause_until_precisely`].
//! `clippy.toml` forbids reading time or sleeping anywhere else.
#![allow(clippy::disallowed_methods)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub type SharedClock = Arc<dyn Clock>;

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: std::time::Duration) {
        let by = Duration::from_std(by).unwrap_or(Duration::MAX);
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new(Utc::now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Monotonic time, for measuring durations and pacing: never domain time.
pub fn monotonic() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Waits `duration` without blocking a thread (poll intervals, backoff, drain delays).
pub async fn pause(duration: std::time::Duration) {
    tokio::time::sleep(duration).await;
}

/// Waits until `deadline` without blocking a thread.
pub async fn pause_until(deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await;
}

/// Waits until `deadline` to within the operating system's timer slack (tens of
/// microseconds) rather than the runtime's timer tick: tokio's timer wheel counts whole
/// milliseconds and wakes at the first tick after the deadline, so how late a wait ends
/// would depend on where in its millisecond it began. The runtime's timer wakes one to
/// two milliseconds early; a blocking-pool thread sleeps the rest.
pub async fn pause_until_precisely(deadline: tokio::time::Instant) {
    const MARGIN: std::time::Duration = std::time::Duration::from_millis(2);
    if let Some(coarse) = deadline.checked_sub(MARGIN)
        && coarse > monotonic()
    {
        tokio::time::sleep_until(coarse).await;
    }
    let rest = deadline.saturating_duration_since(monotonic());
    if !rest.is_zero() {
        // A failed join means the sleeping thread was lost; the wait is over either way.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_precise_pause_never_ends_before_its_deadline() {
        for micros in [0, 300, 1_000, 1_999, 2_500, 7_300] {
            let deadline = monotonic() + std::time::Duration::from_micros(micros);
            pause_until_precisely(deadline).await;
            assert!(monotonic() >= deadline, "{micros} µs");
        }
        // A deadline already past returns at once.
        pause_until_precisely(monotonic() - std::time::Duration::from_millis(5)).await;
    }
}
