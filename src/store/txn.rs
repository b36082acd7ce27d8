//! Write transactions, and the lock order every one of them follows by construction.
//!
//! **Lock order.** A write transaction that touches more than one kind of row takes its
//! locks in one order: first the outbox lock (a transaction-scoped PostgreSQL advisory
//! lock; on SQLite this process's write queue and the file lock play its part), then
//! account rows, then token rows, then event rows. The only way to hold an
//! [`OutboxTxn`] is [`Store::begin_outbox`], which takes the write turn, begins and
//! takes the outbox lock before anything else; every statement that writes an event,
//! revokes tokens or destroys their sealed copies asks for an `OutboxTxn`, so none can
//! run out of that order. A [`WriteTxn`] (no outbox lock) is for writes to one kind of
//! row only.

use std::ops::Deref;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, TransactionTrait};
use tokio::sync::OwnedMutexGuard;

use super::listen::OUTBOX_LOCK_KEY;
use super::{Classify, Store};
use crate::domain::model::Result;

/// A write transaction holding this process's write turn (SQLite, which has one
/// writer); rolled back if dropped uncommitted.
pub(super) struct WriteTxn {
    txn: DatabaseTransaction,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl WriteTxn {
    pub async fn commit(self) -> Result<()> {
        self.txn.commit().await.db()
    }

    pub async fn rollback(self) -> Result<()> {
        self.txn.rollback().await.db()
    }
}

impl Deref for WriteTxn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

/// A write transaction that took the outbox lock first (see the module's lock order).
pub(super) struct OutboxTxn(WriteTxn);

impl OutboxTxn {
    pub async fn commit(self) -> Result<()> {
        self.0.commit().await
    }

    pub async fn rollback(self) -> Result<()> {
        self.0.rollback().await
    }

    /// A savepoint inside this transaction (still under its locks): its statements are
    /// undone alone by [`rollback`](Self::rollback).
    pub async fn savepoint(&self) -> Result<OutboxTxn> {
        Ok(OutboxTxn(WriteTxn { txn: self.0.txn.begin().await.db()?, _turn: None }))
    }
}

impl Deref for OutboxTxn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.0.txn
    }
}

impl Store {
    /// Waits for this process's write turn (SQLite only: PostgreSQL's row locks and the
    /// outbox lock order its writers), for a single write statement or a transaction.
    pub(super) async fn write_turn(&self) -> Option<OwnedMutexGuard<()>> {
        if self.is_postgres() { None } else { Some(self.sqlite_write_queue.clone().lock_owned().await) }
    }

    /// A write transaction for rows of one kind (no outbox lock).
    pub(super) async fn begin_write(&self) -> Result<WriteTxn> {
        let turn = self.write_turn().await;
        let txn = self.write_db.begin().await.db()?;
        Ok(WriteTxn { txn, _turn: turn })
    }

    /// A write transaction that holds the outbox lock before it reads or writes anything.
    pub(super) async fn begin_outbox(&self) -> Result<OutboxTxn> {
        let txn = self.begin_write().await?;
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({OUTBOX_LOCK_KEY})")).await.db()?;
        }
        Ok(OutboxTxn(txn))
    }
}
