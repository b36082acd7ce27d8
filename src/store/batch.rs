//! The token writer's transaction: a batch of reset requests' tokens and events,
//! group-committed with a fixed set of set-based statements (the same ones whatever the
//! batch holds), the caps counted from the outbox so they hold across replicas.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, SqlErr};
use tracing::instrument;

use super::accounts::accounts_by_logins;
use super::append::{OutboxRows, append_outbox, insert_event};
use super::entity::{event_retention, events, reset_tokens};
use super::revoke::{RevokeScope, RevokeStatement, revoke_live_tokens};
use super::row::{event_model, token_model};
use super::txn::OutboxTxn;
use super::{Classify, Store, classify, millis};
use crate::domain::model::event::{DomainEvent, EventKind, Sequence, TokenCopy};
use crate::domain::model::login::Login;
use crate::domain::model::persistence::{AccountRecord, BatchEntry, EntryOutcome, TokenBatch, TokenCap, Written};
use crate::domain::model::token::{NewToken, TokenPurpose};
use crate::domain::model::{AccountId, Result};

/// The write transaction of one token batch (see [`TokenBatch`]).
pub(super) struct BatchTxn {
    txn: OutboxTxn,
    /// The accounts the look-up found active: the only ones a token is written for.
    active: HashSet<AccountId>,
}

impl Store {
    /// Begins a token batch's transaction. The outbox lock serialises it with other
    /// replicas' writers before it reads, so two racing requests for one account cannot
    /// both pass the cap, and no deactivation can commit between its look-up and its
    /// commit.
    pub(super) async fn begin_batch(&self) -> Result<BatchTxn> {
        let txn = self.begin_outbox().await?;
        // On SQLite, take the write lock before the reads, so the transaction never has
        // to upgrade a read snapshot that went stale. (On PostgreSQL the outbox lock has
        // already serialised the writers.)
        if !self.is_postgres() {
            event_retention::Entity::update_many()
                .col_expr(event_retention::Column::PurgedThrough, Expr::col(event_retention::Column::PurgedThrough))
                .filter(event_retention::Column::Id.eq(1))
                .exec(&*txn)
                .await
                .db()?;
        }
        Ok(BatchTxn { txn, active: HashSet::new() })
    }
}

#[async_trait]
impl TokenBatch for BatchTxn {
    #[instrument(skip_all, err, level = "debug", fields(batch = logins.len()))]
    async fn accounts_by_logins(&mut self, logins: &[&Login]) -> Result<Vec<AccountRecord>> {
        let records = accounts_by_logins(&*self.txn, logins).await?;
        self.active.extend(records.iter().filter(|r| r.account.active).map(|r| r.account.id));
        Ok(records)
    }

    #[instrument(skip_all, err, level = "debug", fields(batch = entries.len()))]
    async fn write_together(&mut self, entries: &[BatchEntry], caps_on: bool) -> Result<Option<Written>> {
        let outcomes = apply_caps(&*self.txn, entries, &self.active, caps_on).await?;
        Ok(write_set(&self.txn, entries, &outcomes).await?.map(|newest| Written { outcomes, newest }))
    }

    #[instrument(skip_all, err, level = "debug", fields(batch = entries.len()))]
    async fn write_one_by_one(&mut self, entries: &[BatchEntry], caps_on: bool) -> Result<Written> {
        let caps = apply_caps(&*self.txn, entries, &self.active, caps_on).await?;
        write_each(&self.txn, entries, caps).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.txn.commit().await
    }
}

/// What a cap counts: the account's tokens, or the reports for an unknown address.
#[derive(Clone, PartialEq, Eq, Hash)]
enum CapKey {
    Account(AccountId),
    UnknownEmail(String),
}

fn cap_key(write: &BatchEntry) -> CapKey {
    match &write.token {
        Some(token) => CapKey::Account(token.account_id),
        None => CapKey::UnknownEmail(write.event.event.email().to_owned()),
    }
}

/// Decides, in order, which entries the caps let through, with one grouped count for
/// the batch's accounts and one for its unknown addresses. `Capped` entries change
/// nothing, not even a revocation: requests past the cap must not let anyone keep
/// invalidating the latest token. A token for an account that is no longer active is
/// `Inactive` and changes nothing either.
async fn apply_caps<C: ConnectionTrait>(
    db: &C,
    writes: &[BatchEntry],
    active: &HashSet<AccountId>,
    caps_on: bool,
) -> Result<Vec<EntryOutcome>> {
    let capped: Vec<(CapKey, TokenCap)> = writes.iter().filter_map(|w| Some((cap_key(w), w.cap?))).collect();
    let mut remaining: HashMap<CapKey, i64> = HashMap::new();
    // With caps on, both counts run for every batch, empty or not (the same statements
    // whatever the addresses: see `write_set`).
    let earliest = capped.iter().map(|(_, cap)| cap.since).min();
    if caps_on || earliest.is_some() {
        // The earliest window start in the batch: it can only count more, never fewer.
        let since = earliest.map_or(i64::MAX, millis);
        let accounts: HashSet<AccountId> = capped
            .iter()
            .filter_map(|(key, _)| match key {
                CapKey::Account(id) => Some(*id),
                CapKey::UnknownEmail(_) => None,
            })
            .collect();
        let emails: HashSet<String> = capped
            .iter()
            .filter_map(|(key, _)| match key {
                CapKey::UnknownEmail(email) => Some(email.clone()),
                CapKey::Account(_) => None,
            })
            .collect();
        let recent: Vec<(uuid::Uuid, i64)> = events::Entity::find()
            .select_only()
            .column(events::Column::AccountId)
            .column_as(events::Column::Sequence.count(), "recent")
            .filter(events::Column::AccountId.is_in(accounts.into_iter().map(AccountId::uuid)))
            .filter(events::Column::Kind.eq(EventKind::TokenCreated.code()))
            .filter(events::Column::OccurredAt.gt(since))
            .group_by(events::Column::AccountId)
            .into_tuple()
            .all(db)
            .await
            .db()?;
        remaining.extend(recent.into_iter().map(|(id, n)| (CapKey::Account(AccountId::from_uuid(id)), n)));
        let recent: Vec<(String, i64)> = events::Entity::find()
            .select_only()
            .column(events::Column::Email)
            .column_as(events::Column::Sequence.count(), "recent")
            .filter(events::Column::Email.is_in(emails))
            .filter(events::Column::Kind.eq(EventKind::ResetRequestedForUnknownEmail.code()))
            .filter(events::Column::OccurredAt.gt(since))
            .group_by(events::Column::Email)
            .into_tuple()
            .all(db)
            .await
            .db()?;
        remaining.extend(recent.into_iter().map(|(email, n)| (CapKey::UnknownEmail(email), n)));
    }
    Ok(writes
        .iter()
        .map(|w| {
            if let Some(token) = &w.token
                && !active.contains(&token.account_id)
            {
                return EntryOutcome::Inactive;
            }
            let Some(cap) = w.cap else { return EntryOutcome::Written };
            let used = remaining.entry(cap_key(w)).or_insert(0);
            if *used >= i64::from(cap.max) {
                EntryOutcome::Capped
            } else {
                *used += 1;
                EntryOutcome::Written
            }
        })
        .collect())
}

/// Writes the entries `outcomes` lets through with set-based statements. `None` when
/// a digest is already taken: the caller rolls back and writes entry by entry.
async fn write_set(
    txn: &OutboxTxn,
    writes: &[BatchEntry],
    outcomes: &[EntryOutcome],
) -> Result<Option<Option<Sequence>>> {
    let accepted: Vec<&BatchEntry> =
        writes.iter().zip(outcomes).filter(|(_, o)| **o == EntryOutcome::Written).map(|(w, _)| w).collect();
    // Each account's newest token in the batch stays live; the batch's earlier ones for
    // that account are stored already revoked, as writing them in turn would leave them.
    let mut newest_token: HashMap<AccountId, &NewToken> = HashMap::new();
    for token in accepted.iter().filter_map(|w| w.token.as_ref()) {
        newest_token.insert(token.account_id, token);
    }
    // The same statements run whatever the batch holds, with no rows where it has
    // nothing to write: a batch of requests for unknown addresses costs what one for
    // known addresses does (enumeration by timing).
    let now = newest_token.values().map(|t| t.created_at).max().unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let accounts: Vec<AccountId> = newest_token.keys().copied().collect();
    // The batch holds reset requests only: they end the accounts' earlier resets, not
    // an invitation.
    let revoke = RevokeStatement::new(&accounts, RevokeScope::purpose(TokenPurpose::PasswordReset), now);
    let superseded_at = |token: &NewToken| {
        let newest = newest_token.get(&token.account_id)?;
        (newest.id != token.id).then_some(newest.created_at)
    };
    let tokens: Vec<_> =
        accepted.iter().filter_map(|w| w.token.as_ref()).map(|t| token_model(t.clone(), superseded_at(t))).collect();
    let events = accepted.iter().map(|w| {
        let mut event = w.event.clone();
        if w.token.as_ref().is_some_and(|t| superseded_at(t).is_some())
            && let DomainEvent::TokenCreated(created) = &mut event.event
        {
            created.token = TokenCopy::Gone;
        }
        event_model(event)
    });
    // Every writer holds the write lock (SQLite) or the outbox lock (PostgreSQL) until
    // it commits, so these are the newest sequences. Announced for an empty batch too
    // (a listener ignores a sequence it has seen).
    let rows = OutboxRows { revoke: Some(revoke), tokens: Some(tokens), events: events.collect() };
    match append_outbox(txn, rows).await {
        Ok(newest) => Ok(Some(newest.map(Sequence::from_db))),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(None),
        Err(e) => Err(classify(e)),
    }
}

/// The slow path: each entry the cap let through in a savepoint of its own.
async fn write_each(txn: &OutboxTxn, writes: &[BatchEntry], caps: Vec<EntryOutcome>) -> Result<Written> {
    let mut outcomes = Vec::with_capacity(writes.len());
    let mut newest = None;
    for (write, cap) in writes.iter().zip(caps) {
        if cap != EntryOutcome::Written {
            outcomes.push(cap);
            continue;
        }
        let entry = txn.savepoint().await?;
        let outcome = match write_one(&entry, write).await? {
            Some(sequence) => {
                entry.commit().await?;
                newest = newest.max(Some(sequence));
                EntryOutcome::Written
            }
            None => {
                entry.rollback().await?;
                EntryOutcome::DigestTaken
            }
        };
        outcomes.push(outcome);
    }
    Ok(Written { outcomes, newest })
}

/// One outbox entry that the cap let through, inside its savepoint; `None` if its
/// digest is taken.
async fn write_one(txn: &OutboxTxn, write: &BatchEntry) -> Result<Option<Sequence>> {
    if let Some(token) = &write.token {
        revoke_live_tokens(txn, &[token.account_id], RevokeScope::purpose(token.purpose), token.created_at).await?;
        match reset_tokens::Entity::insert(token_model(token.clone(), None)).exec_without_returning(&**txn).await {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => return Ok(None),
            Err(e) => return Err(classify(e)),
        }
    }
    Ok(Some(insert_event(txn, write.event.clone()).await?))
}
