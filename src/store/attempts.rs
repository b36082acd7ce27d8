//! Consecutive failed password checks per address, in the database so the count holds
//! across replicas. An attempt is counted *before* it is evaluated, in one atomic
//! statement, so N concurrent guesses cannot all pass a check made before any of them
//! is recorded.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Statement, Value};
use tracing::instrument;

use super::entity::verify_failures;
use super::{Classify, Store, from_millis, millis};
use crate::domain::model::Result;
use crate::domain::model::persistence::{AttemptStore, Reservation};

/// Counts one attempt unless `max` attempts are already counted after `window_start`;
/// a count older than the window starts again at one. One statement on both databases.
const RESERVE: &str = "INSERT INTO verify_failures (email_digest, failures, last_attempt_at) VALUES ($1, 1, $2) \
     ON CONFLICT (email_digest) DO UPDATE SET \
     failures = CASE WHEN verify_failures.last_attempt_at <= $3 THEN 1 ELSE verify_failures.failures + 1 END, \
     last_attempt_at = $2 \
     WHERE verify_failures.failures < $4 OR verify_failures.last_attempt_at <= $3 \
     RETURNING failures";

#[async_trait]
impl AttemptStore for Store {
    /// Reserves one attempt for the address (see [`RESERVE`]).
    #[instrument(skip_all, err, level = "debug")]
    async fn reserve_attempt(
        &self,
        digest: &[u8; 32],
        max: u32,
        window_start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Reservation> {
        let values: [Value; 4] =
            [digest.to_vec().into(), millis(now).into(), millis(window_start).into(), i64::from(max).into()];
        let statement = Statement::from_sql_and_values(self.backend(), RESERVE, values);
        let _turn = self.write_turn().await;
        if self.write_db.query_one_raw(statement).await.db()?.is_some() {
            return Ok(Reservation::Granted);
        }
        let row = verify_failures::Entity::find_by_id(digest.to_vec()).one(&self.write_db).await.db()?;
        Ok(Reservation::Locked { last_attempt_at: from_millis(row.map_or(millis(now), |r| r.last_attempt_at)) })
    }

    /// Gives back an attempt that was never evaluated (hashing was at capacity).
    #[instrument(skip_all, err, level = "debug")]
    async fn release_attempt(&self, digest: &[u8; 32]) -> Result<()> {
        let _turn = self.write_turn().await;
        verify_failures::Entity::update_many()
            .col_expr(verify_failures::Column::Failures, Expr::col(verify_failures::Column::Failures).sub(1))
            .filter(verify_failures::Column::EmailDigest.eq(digest.to_vec()))
            .filter(verify_failures::Column::Failures.gt(0))
            .exec(&self.write_db)
            .await
            .db()?;
        Ok(())
    }

    /// Forgets the address's failures: the right password was given, or a reset
    /// succeeded.
    #[instrument(skip_all, err, level = "debug")]
    async fn clear_attempts(&self, digest: &[u8; 32]) -> Result<()> {
        let _turn = self.write_turn().await;
        verify_failures::Entity::delete_by_id(digest.to_vec()).exec(&self.write_db).await.db()?;
        Ok(())
    }

    /// Deletes counts whose last attempt is at or before `window_start`; returns how many.
    #[instrument(skip_all, err, level = "debug")]
    async fn forget_attempts(&self, window_start: DateTime<Utc>) -> Result<u64> {
        let _turn = self.write_turn().await;
        let deleted = verify_failures::Entity::delete_many()
            .filter(verify_failures::Column::LastAttemptAt.lte(millis(window_start)))
            .exec(&self.write_db)
            .await
            .db()?;
        Ok(deleted.rows_affected)
    }
}

impl Store {
    /// Addresses with a count (for tests and metrics).
    #[instrument(skip_all, err, level = "debug")]
    pub async fn tracked_attempts(&self) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        verify_failures::Entity::find().count(&self.db).await.db()
    }
}
