//! The outbox as the domain's [`EventStore`]: the batch writer (in `batch`), reading
//! events back in sequence order, and retention.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value};
use tracing::instrument;

use super::entity::{event_retention, events, reset_tokens};
use super::row::to_event;
use super::{Classify, Store, millis};
use crate::domain::model::Result;
use crate::domain::model::event::{Event, Sequence};
use crate::domain::model::persistence::{EventStore, PurgeCounts, TokenBatch};

#[async_trait]
impl EventStore for Store {
    async fn begin_token_batch(&self) -> Result<Box<dyn TokenBatch>> {
        Ok(Box::new(self.begin_batch().await?))
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn events_after(&self, after: Sequence, limit: u64) -> Result<Vec<Event>> {
        let rows = events::Entity::find()
            .filter(events::Column::Sequence.gt(after.db()))
            .order_by_asc(events::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await
            .db()?;
        Ok(rows.into_iter().filter_map(to_event).collect())
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn last_sequence(&self) -> Result<Sequence> {
        let max = events::Entity::find()
            .select_only()
            .column_as(events::Column::Sequence.max(), "max")
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await
            .db()?;
        Ok(Sequence::from_db(max.flatten().unwrap_or(0)))
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn purged_through(&self) -> Result<Sequence> {
        let row = event_retention::Entity::find_by_id(1).one(&self.db).await.db()?;
        Ok(Sequence::from_db(row.map_or(0, |r| r.purged_through)))
    }

    #[instrument(skip_all, err, level = "debug")]
    async fn purge(&self, now: DateTime<Utc>) -> Result<PurgeCounts> {
        let now = millis(now);
        let txn = self.begin_outbox().await?;
        let sealed = events::Entity::update_many()
            .col_expr(events::Column::SealedToken, Expr::value(Value::Bytes(None)))
            .filter(events::Column::SealedToken.is_not_null())
            .filter(events::Column::ExpiresAt.lte(now))
            .exec(&*txn)
            .await
            .db()?;
        let tokens = reset_tokens::Entity::delete_many()
            .filter(reset_tokens::Column::ExpiresAt.lte(now))
            .exec(&*txn)
            .await
            .db()?;
        let newest_purged = events::Entity::find()
            .select_only()
            .column_as(events::Column::Sequence.max(), "max")
            .filter(events::Column::RetainUntil.lte(now))
            .into_tuple::<Option<i64>>()
            .one(&*txn)
            .await
            .db()?
            .flatten();
        let mut purged_events = 0;
        if let Some(newest) = newest_purged {
            // Everything at or below the newest purged event goes, so the retained
            // events are always one contiguous run and the watermark is exact.
            purged_events = events::Entity::delete_many()
                .filter(events::Column::Sequence.lte(newest))
                .exec(&*txn)
                .await
                .db()?
                .rows_affected;
            event_retention::Entity::update_many()
                .col_expr(event_retention::Column::PurgedThrough, Expr::value(newest))
                .filter(event_retention::Column::Id.eq(1))
                .filter(event_retention::Column::PurgedThrough.lt(newest))
                .exec(&*txn)
                .await
                .db()?;
        }
        txn.commit().await?;
        tracing::debug!(sealed_destroyed = sealed.rows_affected, "purge");
        Ok(PurgeCounts { tokens: tokens.rows_affected, events: purged_events })
    }
}
