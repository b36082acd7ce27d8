//! Appending to the outbox: a token batch's rows, or one event, announced to every
//! listening replica on commit.

use sea_orm::sea_query::{CommonTableExpression, Expr, PostgresQueryBuilder, Query, WithClause};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, EntityTrait, QueryTrait, Statement};

use super::Classify;
use super::entity::{events, reset_tokens};
use super::listen::EVENTS_CHANNEL;
use super::revoke::RevokeStatement;
use super::row::event_model;
use super::txn::OutboxTxn;
use crate::domain::model::event::{NewEvent, Sequence};
use crate::domain::model::{Error, Result};

/// Appends one event inside the caller's transaction.
///
/// Sequence values are drawn in call order but transactions commit in any order; the
/// outbox lock, held from before the draw until commit, makes sequence order commit
/// order, so a reader that has seen N never later finds a new event < N.
pub(super) async fn insert_event(txn: &OutboxTxn, event: NewEvent) -> Result<Sequence> {
    let rows = OutboxRows { revoke: None, tokens: None, events: vec![event_model(event)] };
    let sequence = append_outbox(txn, rows).await.db()?;
    sequence
        .map(Sequence::from_db)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("an event insert returned no sequence")))
}

/// What a token batch writes: first a revocation, then new tokens (`Some` of none is
/// fine: the token writer runs the same statements whatever its batch holds), then
/// events (none is fine).
pub(super) struct OutboxRows {
    pub revoke: Option<RevokeStatement>,
    pub tokens: Option<Vec<reset_tokens::ActiveModel>>,
    pub events: Vec<events::ActiveModel>,
}

/// Writes `rows` inside the caller's transaction (under the outbox lock) and
/// announces the newest sequence (0 for none) to every listening replica on commit; the
/// newest sequence written. On PostgreSQL one statement does it all (each part a `WITH`
/// of it, `pg_notify` over the inserted events): every statement is a round trip made
/// while the outbox lock is held. All parts see the same snapshot, so the revocation
/// ends only tokens that were live before. The error is the database's own, so a caller
/// can tell a taken digest.
pub(super) async fn append_outbox(txn: &OutboxTxn, rows: OutboxRows) -> std::result::Result<Option<i64>, DbErr> {
    let db: &DatabaseTransaction = txn;
    let OutboxRows { revoke, tokens, events } = rows;
    if db.get_database_backend() != DatabaseBackend::Postgres {
        if let Some(revoke) = revoke {
            revoke.run_each(db).await?;
        }
        match tokens {
            Some(tokens) if tokens.is_empty() => insert_nothing(db, "reset_tokens").await?,
            Some(tokens) => {
                reset_tokens::Entity::insert_many(tokens).exec_without_returning(db).await?;
            }
            None => {}
        }
        if events.is_empty() {
            insert_nothing(db, "events").await?;
            return Ok(None);
        }
        return Ok(events::Entity::insert_many(events).exec_with_returning_keys(db).await?.into_iter().max());
    }
    let mut with = WithClause::new();
    if let Some(revoke) = revoke {
        revoke.add_to(&mut with);
    }
    if let Some(tokens) = tokens.filter(|t| !t.is_empty()) {
        let insert = reset_tokens::Entity::insert_many(tokens).into_query();
        with.cte(CommonTableExpression::new().query(insert).table_name("tokens_written").to_owned());
    }
    let mut insert = if events.is_empty() {
        // No rows: the same statement's shape, inserting nothing.
        Query::insert()
            .into_table(events::Entity)
            .columns([events::Column::Sequence])
            .select_from(
                Query::select()
                    .column(events::Column::Sequence)
                    .from(events::Entity)
                    .and_where(Expr::cust("1 = 0"))
                    .to_owned(),
            )
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .to_owned()
    } else {
        events::Entity::insert_many(events).into_query()
    };
    insert.returning_col(events::Column::Sequence);
    with.cte(CommonTableExpression::new().query(insert).table_name("events_written").to_owned());
    let announce = format!("pg_notify('{EVENTS_CHANNEL}', coalesce(max(sequence), 0)::text)::text");
    let select = Query::select()
        .expr_as(Expr::cust("max(sequence)"), "newest")
        .expr_as(Expr::cust(announce), "announced")
        .from("events_written")
        .to_owned();
    let (sql, values) = with.query(select).build(PostgresQueryBuilder);
    let row = db.query_one_raw(Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)).await?;
    match row {
        Some(row) => row.try_get::<Option<i64>>("", "newest"),
        None => Ok(None),
    }
}

/// An insert of no rows into `table`: the statement an empty batch runs in place of
/// its multi-row insert.
async fn insert_nothing<C: ConnectionTrait>(db: &C, table: &str) -> std::result::Result<(), DbErr> {
    db.execute_unprepared(&format!("INSERT INTO {table} SELECT * FROM {table} WHERE 1 = 0")).await?;
    Ok(())
}
