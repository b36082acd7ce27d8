//! The only place that reads the wall clock. Expiry, rate windows and retention all
//! read time through [`Clock`], so tests can move it with [`ManualClock`]. Measuring
//! and pacing (metrics, backoff, poll intervals) use the runtime's monotonic timers
//! through [`monotonic`], [`pause`] and [`pause_until`]. `clippy.toml` forbids reading
//! time or sleeping anywhere else.
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
