//! PostgreSQL commit notifications between replicas: the channels, the advisory lock
//! key they share, and the LISTEN loop with its reconnects.

use std::time::Duration;

use uuid::Uuid;

use crate::domain::model::AccountId;
use crate::domain::model::event::Sequence;

/// Arbitrary, fixed key of the PostgreSQL advisory lock that serialises outbox writers.
pub const OUTBOX_LOCK_KEY: i64 = 0x7077_7265_7365_7401;
/// PostgreSQL channel on which every outbox commit is announced to all replicas.
pub const EVENTS_CHANNEL: &str = "pwreset_events";
/// PostgreSQL channel on which a revocation that has no event of its own (deactivating
/// an account) is announced, with the account's id, so replicas drop cached tokens.
pub const REVOKED_CHANNEL: &str = "pwreset_tokens_revoked";
/// A PostgreSQL notification, as [`follow_commits`] passes it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// An outbox commit, with its newest sequence.
    Committed(Sequence),
    /// The account's tokens were revoked without an event.
    Revoked(AccountId),
}

/// Calls `on_notice` with every outbox commit and every revocation announced on
/// PostgreSQL by any replica, until `stop`. Reconnects after failures; subscribers also
/// poll and token caches expire, so a notification lost meanwhile only delays things.
/// `listening` fires once the first LISTEN is in place.
pub async fn follow_commits(
    url: String,
    stop: tokio_util::sync::CancellationToken,
    listening: tokio::sync::oneshot::Sender<()>,
    on_notice: impl Fn(Notice),
) {
    use sea_orm::sqlx::postgres::PgListener;
    let mut listening = Some(listening);
    loop {
        let follow = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen_all([EVENTS_CHANNEL, REVOKED_CHANNEL]).await?;
            if let Some(ready) = listening.take() {
                let _ = ready.send(());
            }
            loop {
                let notification = listener.recv().await?;
                let notice = match notification.channel() {
                    REVOKED_CHANNEL => {
                        notification.payload().parse::<Uuid>().ok().map(|id| Notice::Revoked(AccountId::from_uuid(id)))
                    }
                    _ => notification.payload().parse::<i64>().ok().map(|s| Notice::Committed(Sequence::from_db(s))),
                };
                if let Some(notice) = notice {
                    on_notice(notice);
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sea_orm::sqlx::Error>(())
        };
        tokio::select! {
            result = follow => {
                if let Err(e) = result {
                    tracing::warn!(error = %crate::redact::scrub(&e.to_string(), &crate::redact::secrets_of_url(&url)), "event notifications interrupted; reconnecting");
                }
            }
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = crate::domain::runtime::clock::pause(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}
