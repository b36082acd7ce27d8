//! Ending an account's live tokens: the revocation statement, destroying the sealed
//! copies of tokens that are no longer live, and telling other replicas to forget
//! what they cached of them. Each runs under the outbox lock ([`OutboxTxn`]).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{CommonTableExpression, Expr, PostgresQueryBuilder, Query, UpdateStatement, WithClause};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryTrait, Statement,
    Value,
};
use uuid::Uuid;

use super::entity::{events, reset_tokens};
use super::listen::REVOKED_CHANNEL;
use super::row::live_at;
use super::txn::OutboxTxn;
use super::{Classify, millis};
use crate::domain::model::token::TokenPurpose;
use crate::domain::model::{AccountId, Result};

/// Announces a revocation without an event (PostgreSQL only), on commit.
pub(super) async fn notify_revoked(db: &OutboxTxn, account_id: AccountId) -> Result<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_notify('{REVOKED_CHANNEL}', '{account_id}')")).await.db()?;
    }
    Ok(())
}

/// Destroys the sealed copies of these tokens (they are no longer live).
pub(super) async fn destroy_copies(db: &OutboxTxn, tokens: &[Uuid]) -> Result<()> {
    destroy_copies_of(tokens).exec(&**db).await.db()?;
    Ok(())
}

fn destroy_copies_of(tokens: &[Uuid]) -> sea_orm::UpdateMany<events::Entity> {
    events::Entity::update_many()
        .col_expr(events::Column::SealedToken, Expr::value(Value::Bytes(None)))
        .filter(events::Column::TokenId.is_in(tokens.iter().copied()))
}

/// Which of an account's tokens a revocation ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct RevokeScope {
    /// Every token but this one (the one a Confirm consumes).
    pub keep: Option<Uuid>,
    /// Only tokens of this purpose; `None`: every purpose.
    pub purpose: Option<TokenPurpose>,
}

impl RevokeScope {
    pub const ALL: RevokeScope = RevokeScope { keep: None, purpose: None };

    pub fn purpose(purpose: TokenPurpose) -> Self {
        RevokeScope { keep: None, purpose: Some(purpose) }
    }
}

/// Ending the accounts' live tokens that a [`RevokeScope`] names, and destroying the sealed
/// copies of those tokens and of the token it keeps (a Confirm has just used it). Both
/// parts go by index to exactly the rows they change (the live-token index, then the
/// events by token id), so their cost does not grow with an account's history. Copies
/// of tokens that expired unrevoked go at the next purge.
pub(super) struct RevokeStatement {
    /// The update of the live tokens, returning their ids.
    update: UpdateStatement,
    keep: Option<Uuid>,
}

impl RevokeStatement {
    pub fn new(accounts: &[AccountId], which: RevokeScope, now: DateTime<Utc>) -> Self {
        let mut revoke = reset_tokens::Entity::update_many()
            .col_expr(reset_tokens::Column::RevokedAt, Expr::value(millis(now)))
            .filter(reset_tokens::Column::AccountId.is_in(accounts.iter().map(|a| a.uuid())))
            .filter(live_at(now));
        if let Some(keep) = which.keep {
            revoke = revoke.filter(reset_tokens::Column::Id.ne(keep));
        }
        if let Some(purpose) = which.purpose {
            revoke = revoke.filter(reset_tokens::Column::Purpose.eq(purpose.code()));
        }
        let mut update = revoke.into_query();
        update.returning_col(reset_tokens::Column::Id);
        RevokeStatement { update, keep: which.keep }
    }

    /// Both parts as `WITH` entries: `revoked` (the ids ended) and the copies destroyed.
    pub(super) fn add_to(self, with: &mut WithClause) {
        with.cte(CommonTableExpression::new().query(self.update).table_name("revoked").to_owned());
        let mut ended = Condition::any()
            .add(events::Column::TokenId.in_subquery(Query::select().column("id").from("revoked").to_owned()));
        if let Some(keep) = self.keep {
            ended = ended.add(events::Column::TokenId.eq(keep));
        }
        let destroy = events::Entity::update_many()
            .col_expr(events::Column::SealedToken, Expr::value(Value::Bytes(None)))
            .filter(ended)
            .into_query();
        with.cte(CommonTableExpression::new().query(destroy).table_name("destroyed").to_owned());
    }

    /// Runs the parts one statement each (SQLite, which has no `UPDATE` in `WITH`); how
    /// many live tokens were revoked.
    pub(super) async fn run_each<C: ConnectionTrait>(self, db: &C) -> std::result::Result<u64, DbErr> {
        let rows = db.query_all(&self.update).await?;
        let mut ended = Vec::with_capacity(rows.len() + 1);
        for row in rows {
            ended.push(row.try_get::<Uuid>("", "id")?);
        }
        let revoked = ended.len() as u64;
        ended.extend(self.keep);
        // Run for none too: the writer's batches run the same statements whatever they hold.
        destroy_copies_of(&ended).exec(db).await?;
        Ok(revoked)
    }

    /// Runs it (one statement on PostgreSQL); how many live tokens were revoked.
    pub async fn run(self, txn: &OutboxTxn) -> Result<u64> {
        let db: &sea_orm::DatabaseTransaction = txn;
        if db.get_database_backend() != DatabaseBackend::Postgres {
            return self.run_each(db).await.db();
        }
        let mut with = WithClause::new();
        self.add_to(&mut with);
        let count = Query::select().expr_as(Expr::cust("count(*)"), "revoked").from("revoked").to_owned();
        let (sql, values) = with.query(count).build(PostgresQueryBuilder);
        let row =
            db.query_one_raw(Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)).await.db()?;
        let revoked = match row {
            Some(row) => row.try_get::<i64>("", "revoked").db()?,
            None => 0,
        };
        Ok(u64::try_from(revoked).unwrap_or(0))
    }
}

/// Revokes the accounts' live tokens that `which` names and destroys their sealed copies
/// (see [`RevokeStatement`]); how many live tokens were revoked.
pub(super) async fn revoke_live_tokens(
    txn: &OutboxTxn,
    accounts: &[AccountId],
    which: RevokeScope,
    now: DateTime<Utc>,
) -> Result<u64> {
    RevokeStatement::new(accounts, which, now).run(txn).await
}
