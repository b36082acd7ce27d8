//! The event log: how long events stay replayable, and how subscribers follow it.

use std::time::Duration;

use crate::cli::EventArgs;

/// Events kept in memory for subscribers a little behind.
pub(super) const BROADCAST_CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
pub struct EventSettings {
    pub retention: Duration,
    pub poll_interval: Duration,
    /// Events kept in memory for subscribers a little behind; past it they read the
    /// database from their own cursor.
    pub broadcast_capacity: usize,
    pub emit_unknown_account_events: bool,
}

pub(super) fn events(args: &EventArgs) -> EventSettings {
    EventSettings {
        retention: args.event_retention,
        poll_interval: args.event_poll_interval.max(Duration::from_millis(10)),
        broadcast_capacity: BROADCAST_CAPACITY,
        emit_unknown_account_events: args.emit_unknown_account_events,
    }
}
