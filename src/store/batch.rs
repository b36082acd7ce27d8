//! The token writer's transaction: a batch of reset requests' tokens and events,
//! group-committed with a fixed set of set-based statements (the same ones whatever the
//! batch holds), the caps counted from the outbox so they hold across replicas.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, SqlErr, TransactionTrait,
};
use tracing::instrument;

use super::accounts::accounts_by_logins;
use super::entity::{event_retention, events, reset_tokens};
use super::row::{event_model, token_model};
use super::write::{OutboxRows, Revocation, Revoke, append_outbox, insert_event, outbox_lock, revoke_live_tokens};
use super::{Classify, Store, classify, millis};
use crate::domain::model::event::{DomainEvent, EventKind, Sequence, TokenCopy};
use crate::domain::model::login::Login;
use crate::domain::model::persistence::{Inserted, OutboxWrite, Plan, TokenCap, Written};
use crate::domain::model::token::{NewToken, TokenPurpose};
use crate::domain::model::{AccountId, Result};

impl Store {
    /// Writes a batch of outbox entries in one transaction (group commit: one fsync for
    /// the batch): looks up the accounts `logins` name after the outbox lock and writes
    /// what `plan` makes of them. An entry with a token revokes the account's earlier
    /// live tokens, unless the account is not found active, already had `cap` tokens
    /// created in the cap's window (counted from the outbox, so the cap holds across
    /// replicas) or the digest is taken: then that entry changes nothing. The result is
    /// the same as writing the entries one after another, in order.
    ///
    /// The batch is written with a fixed number of set-based statements (one look-up,
    /// one grouped cap count, one revocation, the inserts), whatever its size. Only if
    /// a digest is already taken (plausible with short numeric codes alone) is it
    /// written again entry by entry, each in a savepoint, to find the colliding ones.
    #[instrument(skip_all, err, level = "debug", fields(batch = logins.len()))]
    pub(super) async fn write_batch(&self, logins: &[&Login], plan: &Plan<'_>, caps_on: bool) -> Result<Written> {
        let _turn = self.write_turn().await;
        match self.write_outbox_once(logins, plan, caps_on, false).await? {
            Some(written) => Ok(written),
            // A digest was taken: the transaction was rolled back whole; write again,
            // entry by entry, each in a savepoint, to find the colliding ones.
            None => self.write_outbox_once(logins, plan, caps_on, true).await?.ok_or_else(|| {
                crate::domain::model::Error::Internal(anyhow::anyhow!("the outbox write found a collision twice"))
            }),
        }
    }

    /// One attempt of [`write_batch`](Self::write_batch); `None` when the set-based
    /// insert met a taken digest (and everything was rolled back).
    async fn write_outbox_once(
        &self,
        logins: &[&Login],
        plan: &Plan<'_>,
        caps_on: bool,
        each: bool,
    ) -> Result<Option<Written>> {
        let txn = self.writer.begin().await.db()?;
        // The lock order (see `store`): the outbox lock, then accounts, tokens, events.
        // Serialising with other replicas' writers before reading means two racing
        // requests for one account cannot both pass the cap, and no deactivation can
        // commit between the look-up below and this commit.
        outbox_lock(&txn).await?;
        // On SQLite, take the write lock before the reads below, so the transaction
        // never has to upgrade a read snapshot that went stale. (On PostgreSQL the
        // outbox lock has already serialised the writers.)
        if !self.is_postgres() {
            event_retention::Entity::update_many()
                .col_expr(event_retention::Column::PurgedThrough, Expr::col(event_retention::Column::PurgedThrough))
                .filter(event_retention::Column::Id.eq(1))
                .exec(&txn)
                .await
                .db()?;
        }
        let records = accounts_by_logins(&txn, logins).await?;
        let writes = plan(&records)?;
        let active: HashSet<AccountId> = records.iter().filter(|r| r.account.active).map(|r| r.account.id).collect();
        let outcomes = apply_caps(&txn, &writes, &active, caps_on).await?;
        let (outcomes, newest) = if each {
            write_each(&txn, &writes, outcomes).await?
        } else {
            match write_set(&txn, &writes, &outcomes).await? {
                Some(newest) => (outcomes, newest),
                None => {
                    txn.rollback().await.db()?;
                    return Ok(None);
                }
            }
        };
        txn.commit().await.db()?;
        Ok(Some(Written { writes, outcomes, newest }))
    }
}

/// What a cap counts: the account's tokens, or the reports for an unknown address.
#[derive(Clone, PartialEq, Eq, Hash)]
enum CapKey {
    Account(AccountId),
    UnknownEmail(String),
}

fn cap_key(write: &OutboxWrite) -> CapKey {
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
    writes: &[OutboxWrite],
    active: &HashSet<AccountId>,
    caps_on: bool,
) -> Result<Vec<Inserted>> {
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
                return Inserted::Inactive;
            }
            let Some(cap) = w.cap else { return Inserted::Created };
            let used = remaining.entry(cap_key(w)).or_insert(0);
            if *used >= i64::from(cap.max) {
                Inserted::Capped
            } else {
                *used += 1;
                Inserted::Created
            }
        })
        .collect())
}

/// Writes the entries `outcomes` lets through with set-based statements. `None` when
/// a digest is already taken: the caller rolls back and writes entry by entry.
async fn write_set<C: ConnectionTrait>(
    db: &C,
    writes: &[OutboxWrite],
    outcomes: &[Inserted],
) -> Result<Option<Option<Sequence>>> {
    let accepted: Vec<&OutboxWrite> =
        writes.iter().zip(outcomes).filter(|(_, o)| **o == Inserted::Created).map(|(w, _)| w).collect();
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
    let revoke = Revocation::new(&accounts, Revoke::purpose(TokenPurpose::PasswordReset), now);
    let superseded_at = |token: &NewToken| {
        let newest = newest_token.get(&token.account_id)?;
        (newest.id != token.id).then_some(newest.created_at)
    };
    let tokens: Vec<_> =
        accepted.iter().filter_map(|w| w.token.as_ref()).map(|t| token_model(t.clone(), superseded_at(t))).collect();
    let events = accepted.iter().map(|w| {
        let mut event = w.event.clone();
        if w.token.as_ref().is_some_and(|t| superseded_at(t).is_some())
            && let DomainEvent::TokenCreated { token, .. } = &mut event.event
        {
            *token = TokenCopy::Gone;
        }
        event_model(event)
    });
    // Every writer holds the write lock (SQLite) or the outbox lock (PostgreSQL) until
    // it commits, so these are the newest sequences. Announced for an empty batch too
    // (a listener ignores a sequence it has seen).
    let rows = OutboxRows { revoke: Some(revoke), tokens: Some(tokens), events: events.collect() };
    match append_outbox(db, rows).await {
        Ok(newest) => Ok(Some(newest.map(Sequence::from_db))),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(None),
        Err(e) => Err(classify(e)),
    }
}

/// The slow path of [`Store::write_batch`]: each entry the cap let through in a
/// savepoint of its own.
async fn write_each(
    txn: &DatabaseTransaction,
    writes: &[OutboxWrite],
    caps: Vec<Inserted>,
) -> Result<(Vec<Inserted>, Option<Sequence>)> {
    let mut outcomes = Vec::with_capacity(writes.len());
    let mut newest = None;
    for (write, cap) in writes.iter().zip(caps) {
        if cap != Inserted::Created {
            outcomes.push(cap);
            continue;
        }
        let entry = txn.begin().await.db()?;
        let outcome = match write_one(&entry, write).await? {
            Some(sequence) => {
                entry.commit().await.db()?;
                newest = newest.max(Some(sequence));
                Inserted::Created
            }
            None => {
                entry.rollback().await.db()?;
                Inserted::DigestTaken
            }
        };
        outcomes.push(outcome);
    }
    Ok((outcomes, newest))
}

/// One outbox entry that the cap let through, inside its savepoint; `None` if its
/// digest is taken.
async fn write_one<C: ConnectionTrait>(db: &C, write: &OutboxWrite) -> Result<Option<Sequence>> {
    if let Some(token) = &write.token {
        revoke_live_tokens(db, &[token.account_id], Revoke::purpose(token.purpose), token.created_at).await?;
        match reset_tokens::Entity::insert(token_model(token.clone(), None)).exec_without_returning(db).await {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => return Ok(None),
            Err(e) => return Err(classify(e)),
        }
    }
    Ok(Some(insert_event(db, write.event.clone()).await?))
}
