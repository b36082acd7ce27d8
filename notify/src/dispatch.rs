//! One event from the stream to its lane: admitted to the ledger (skipped if finished
//! before a restart), composed into a message, and queued on the e-mail or the text
//! lane; an event with nothing to send is finished at once.

use std::sync::Arc;

use pwreset_proto::proto::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::compose::{Composer, Plan};
use crate::cursor::Admit;
use crate::deliver::{Delivery, Job, Work};

/// The reader's end of the lanes. Dropping it ends the lanes once their queues are done.
pub struct Dispatcher {
    pub composer: Composer,
    pub delivery: Arc<Delivery>,
    pub mail_lane: mpsc::Sender<Job>,
    pub text_lane: mpsc::Sender<Job>,
}

impl Dispatcher {
    /// Admits one event to the ledger and hands its message to its lane; `false` if
    /// shutdown came while a lane was full.
    pub async fn dispatch(&self, event: Event, shutdown: &CancellationToken) -> bool {
        let sequence = event.sequence;
        let (admit, gone) = self.delivery.ledger().lock().await.admit(sequence);
        for lost in gone {
            metrics::counter!("pwreset_notify_failed_total", "reason" => "purged").increment(1);
            tracing::error!(
                sequence = lost,
                "an unfinished message's event is no longer on the server (purged); given up"
            );
        }
        if admit == Admit::Skip {
            tracing::debug!(sequence, "finished before the restart");
            return true;
        }
        match self.composer.compose(event) {
            Plan::Send(job) => return self.queue(job, shutdown).await,
            Plan::Nothing(reason) => tracing::debug!(sequence, reason, "nothing to send"),
            Plan::Refused(reason, e) => {
                metrics::counter!("pwreset_notify_failed_total", "reason" => reason).increment(1);
                tracing::error!(sequence, reason, error = format!("{e:#}"), "the message cannot be sent; skipped");
            }
        }
        self.delivery.finish(sequence).await;
        true
    }

    /// Waits for room on the job's lane; `false` if shutdown came first.
    async fn queue(&self, job: Job, shutdown: &CancellationToken) -> bool {
        let lane = match job.work {
            Work::Mail(_) => &self.mail_lane,
            Work::Text(_) => &self.text_lane,
        };
        tokio::select! {
            sent = lane.send(job) => sent.is_ok(),
            _ = shutdown.cancelled() => false,
        }
    }
}
