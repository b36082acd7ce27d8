//! In-process signal that new events were committed. It carries no events, only the
//! newest sequence known here: subscribers read the events themselves from the outbox,
//! so a slow subscriber never holds up a writer or another subscriber.

use tokio::sync::watch;

use crate::domain::model::event::Sequence;

#[derive(Clone)]
pub struct EventBus {
    newest: watch::Sender<Sequence>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self { newest: watch::Sender::new(Sequence::ZERO) }
    }
}

impl EventBus {
    /// Called after the transaction that wrote event `sequence` committed.
    pub fn published(&self, sequence: Sequence) {
        self.newest.send_if_modified(|newest| {
            let newer = sequence > *newest;
            if newer {
                *newest = sequence;
            }
            newer
        });
    }

    pub fn watch(&self) -> watch::Receiver<Sequence> {
        self.newest.subscribe()
    }
}
