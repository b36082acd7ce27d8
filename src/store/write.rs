//! Statements every write transaction shares: the first lock of the lock order,
//! appending an event, announcing commits, revoking an account's tokens.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::sea_query::{CommonTableExpression, PostgresQueryBuilder, Query, UpdateStatement, WithClause};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryTrait, Statement,
    Value,
};
use uuid::Uuid;

use super::entity::{events, reset_tokens};
use super::listen::{EVENTS_CHANNEL, OUTBOX_LOCK_KEY, REVOKED_CHANNEL};
use super::row::event_model;
use super::{Classify, millis};
use crate::domain::model::event::{NewEvent, Sequence};
use crate::domain::model::token::TokenPurpose;
use crate::domain::model::{AccountId, Error, Result};

/// Takes the transaction-scoped outbox lock, the first lock of every write
/// transaction (PostgreSQL only; re-entrant; SQLite has one writer anyway).
pub(super) async fn outbox_lock<C: ConnectionTrait>(db: &C) -> Result<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({OUTBOX_LOCK_KEY})")).await.db()?;
    }
    Ok(())
}

/// Appends one event inside the caller's transaction.
pub(super) async fn insert_event<C: ConnectionTrait>(db: &C, event: NewEvent) -> Result<Sequence> {
    // Sequence values are drawn in call order but transactions commit in any order;
    // holding this lock from before the draw until commit makes sequence order commit
    // order, so a reader that has seen N never later finds a new event < N.
    outbox_lock(db).await?;
    let rows = OutboxRows { revoke: None, tokens: None, events: vec![event_model(event)] };
    let sequence = append_outbox(db, rows).await.db()?;
    sequence
        .map(Sequence::from_db)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("an event insert returned no sequence")))
}

/// What a token batch writes: first a revocation, then new tokens (`Some` of none is
/// fine: the token writer runs the same statements whatever its batch holds), then
/// events (none is fine).
pub(super) struct OutboxRows {
    pub revoke: Option<Revocation>,
    pub tokens: Option<Vec<reset_tokens::ActiveModel>>,
    pub events: Vec<events::ActiveModel>,
}

/// Writes `rows` inside the caller's transaction, which holds the outbox lock, and
/// announces the newest sequence (0 for none) to every listening replica on commit; the
/// newest sequence written. On PostgreSQL one statement does it all (each part a `WITH`
/// of it, `pg_notify` over the inserted events): every statement is a round trip made
/// while the outbox lock is held. All parts see the same snapshot, so the revocation
/// ends only tokens that were live before. The error is the database's own, so a caller
/// can tell a taken digest.
pub(super) async fn append_outbox<C: ConnectionTrait>(
    db: &C,
    rows: OutboxRows,
) -> std::result::Result<Option<i64>, DbErr> {
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

/// Announces a revocation without an event (PostgreSQL only), on commit.
pub(super) async fn notify_revoked<C: ConnectionTrait>(db: &C, account_id: AccountId) -> Result<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_notify('{REVOKED_CHANNEL}', '{account_id}')")).await.db()?;
    }
    Ok(())
}

/// Destroys the sealed copies of these tokens (they are no longer live).
pub(super) async fn destroy_copies<C: ConnectionTrait>(db: &C, tokens: &[Uuid]) -> Result<()> {
    destroy_copies_of(tokens).exec(db).await.db()?;
    Ok(())
}

fn destroy_copies_of(tokens: &[Uuid]) -> sea_orm::UpdateMany<events::Entity> {
    events::Entity::update_many()
        .col_expr(events::Column::SealedToken, Expr::value(Value::Bytes(None)))
        .filter(events::Column::TokenId.is_in(tokens.iter().copied()))
}

/// Which of an account's tokens a revocation ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Revoke {
    /// Every token but this one (the one a Confirm consumes).
    pub keep: Option<Uuid>,
    /// Only tokens of this purpose; `None`: every purpose.
    pub purpose: Option<TokenPurpose>,
}

impl Revoke {
    pub const ALL: Revoke = Revoke { keep: None, purpose: None };

    pub fn purpose(purpose: TokenPurpose) -> Self {
        Revoke { keep: None, purpose: Some(purpose) }
    }
}

/// Ending the accounts' live tokens that a [`Revoke`] names, and destroying the sealed
/// copies of those tokens and of the token it keeps (a Confirm has just used it). Both
/// parts go by index to exactly the rows they change (the live-token index, then the
/// events by token id), so their cost does not grow with an account's history. Copies
/// of tokens that expired unrevoked go at the next purge.
pub(super) struct Revocation {
    /// The update of the live tokens, returning their ids.
    update: UpdateStatement,
    keep: Option<Uuid>,
}

impl Revocation {
    pub fn new(accounts: &[AccountId], which: Revoke, now: DateTime<Utc>) -> Self {
        let now = millis(now);
        let mut revoke = reset_tokens::Entity::update_many()
            .col_expr(reset_tokens::Column::RevokedAt, Expr::value(now))
            .filter(reset_tokens::Column::AccountId.is_in(accounts.iter().map(|a| a.uuid())))
            .filter(reset_tokens::Column::UsedAt.is_null())
            .filter(reset_tokens::Column::RevokedAt.is_null())
            .filter(reset_tokens::Column::ExpiresAt.gt(now));
        if let Some(keep) = which.keep {
            revoke = revoke.filter(reset_tokens::Column::Id.ne(keep));
        }
        if let Some(purpose) = which.purpose {
            revoke = revoke.filter(reset_tokens::Column::Purpose.eq(purpose.code()));
        }
        let mut update = revoke.into_query();
        update.returning_col(reset_tokens::Column::Id);
        Revocation { update, keep: which.keep }
    }

    /// Both parts as `WITH` entries: `revoked` (the ids ended) and the copies destroyed.
    fn add_to(self, with: &mut WithClause) {
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
    async fn run_each<C: ConnectionTrait>(self, db: &C) -> std::result::Result<u64, DbErr> {
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
    pub async fn run<C: ConnectionTrait>(self, db: &C) -> Result<u64> {
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
/// (see [`Revocation`]); how many live tokens were revoked.
pub(super) async fn revoke_live_tokens<C: ConnectionTrait>(
    db: &C,
    accounts: &[AccountId],
    which: Revoke,
    now: DateTime<Utc>,
) -> Result<u64> {
    Revocation::new(accounts, which, now).run(db).await
}
