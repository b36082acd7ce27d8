//! Where the notifier keeps its place: a file, written atomically (temporary file,
//! fsync, rename, fsync of the folder), or a row in PostgreSQL, where a session advisory
//! lock makes one notifier replica active at a time (the others wait for the lock and
//! take over when it is released).
//!
//! The place is a [`Position`]: `through`, the newest sequence read from the stream, and
//! `pending`, the sequences at or below it whose messages are not finished yet (queued,
//! in their first attempt, or retrying in the background). Every event at or below
//! `through` that is not pending is finished: sent, refused for good, or given up. A
//! restart replays from just before the oldest pending sequence and skips the finished
//! ones, so a message still retrying when the process stopped is retried again, and
//! nothing acknowledged is sent twice. The [`Ledger`] keeps that true in memory: a
//! sequence enters `pending` in the same step that moves `through` past it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};

pub enum Cursor {
    File(PathBuf),
    Postgres { db: DatabaseConnection, name: String },
}

/// What is stored: see the module's documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub through: u64,
    pub pending: BTreeSet<u64>,
}

impl Position {
    /// `42` with nothing pending (the format of earlier versions), else `42 pending 17 40`.
    fn encode(&self) -> String {
        let mut text = self.through.to_string();
        if !self.pending.is_empty() {
            text.push_str(" pending");
            for s in &self.pending {
                text.push_str(&format!(" {s}"));
            }
        }
        text
    }

    fn decode(text: &str) -> anyhow::Result<Self> {
        let mut words = text.split_whitespace();
        let through = words.next().context("empty")?.parse().context("not a sequence")?;
        let pending = match words.next() {
            None => BTreeSet::new(),
            Some("pending") => words.map(|w| w.parse::<u64>().context("not a sequence")).collect::<Result<_, _>>()?,
            Some(other) => anyhow::bail!("unexpected {other:?}"),
        };
        Ok(Position { through, pending })
    }
}

/// What the notifier does with an event it read.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Finished before a restart: not sent again.
    Skip,
    /// Now pending: hand it to its sender and `finish` it when done.
    Handle,
}

/// The position in memory, kept consistent at every step (so it may be stored at any
/// moment).
#[derive(Debug, Default)]
pub struct Ledger {
    through: Option<u64>,
    pending: BTreeSet<u64>,
    /// Pending sequences loaded from the store that the replay has not reached yet.
    replay: BTreeSet<u64>,
}

impl Ledger {
    pub fn new(stored: Option<Position>) -> Self {
        match stored {
            Some(p) => Ledger { through: Some(p.through), replay: p.pending.clone(), pending: p.pending },
            None => Ledger::default(),
        }
    }

    /// Where to subscribe from: just before the oldest unfinished message, else after
    /// the newest event read; `None` when nothing was ever read.
    pub fn resume_after(&self) -> Option<u64> {
        match self.replay.first() {
            Some(oldest) => Some(oldest.saturating_sub(1)),
            None => self.through,
        }
    }

    /// Records that `sequence` was read. Events come in increasing order, so a loaded
    /// pending sequence below it that has not come back is gone from the server (purged):
    /// those are returned, to be logged, and dropped.
    pub fn admit(&mut self, sequence: u64) -> (Admit, Vec<u64>) {
        let gone: Vec<u64> = self.replay.range(..sequence).copied().collect();
        for s in &gone {
            self.replay.remove(s);
            self.pending.remove(s);
        }
        let admit = match self.through {
            Some(through) if sequence <= through => {
                if self.replay.remove(&sequence) {
                    Admit::Handle
                } else {
                    Admit::Skip
                }
            }
            _ => {
                self.through = Some(sequence);
                self.pending.insert(sequence);
                Admit::Handle
            }
        };
        (admit, gone)
    }

    /// The message of `sequence` is done with (sent, refused or given up).
    pub fn finish(&mut self, sequence: u64) {
        self.pending.remove(&sequence);
    }

    /// `--skip-gaps` after OUT_OF_RANGE: the loaded pending messages are not coming back.
    pub fn forget_replay(&mut self) -> usize {
        let n = self.replay.len();
        for s in std::mem::take(&mut self.replay) {
            self.pending.remove(&s);
        }
        n
    }

    /// What to store; `None` before anything was read.
    pub fn position(&self) -> Option<Position> {
        Some(Position { through: self.through?, pending: self.pending.clone() })
    }
}

/// The advisory-lock key of a cursor name (any stable 63-bit value).
fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("pwreset-notify:{name}").bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    i64::try_from(h >> 1).unwrap_or(0)
}

impl Cursor {
    pub fn file(path: PathBuf) -> Self {
        Cursor::File(path)
    }

    /// Connects, creates the table if needed and waits until this replica holds the
    /// cursor's lock (polling every `poll`, logging while it waits).
    pub async fn postgres(url: &str, name: &str, poll: Duration) -> anyhow::Result<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        // One connection for the life of the process: the session lock lives on it.
        options.max_connections(1).min_connections(1).idle_timeout(None::<Duration>).max_lifetime(None::<Duration>);
        // sqlx quotes the URL, password included, in some errors.
        let db = Database::connect(options)
            .await
            .map_err(|e| pwreset::redact::url_error("connecting to --cursor-database-url", url, e))?;
        let key = lock_key(name);
        loop {
            let row = db
                .query_one_raw(Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT pg_try_advisory_lock({key}) AS locked"),
                ))
                .await?
                .context("pg_try_advisory_lock")?;
            if row.try_get::<bool>("", "locked")? {
                // Only the lock holder changes the table: replicas starting together do
                // not race on it. `pending` was added by the version that retries in the
                // background.
                db.execute_unprepared(
                    "CREATE TABLE IF NOT EXISTS pwreset_notify_cursor \
                     (name TEXT PRIMARY KEY, sequence BIGINT NOT NULL, pending TEXT NOT NULL DEFAULT '')",
                )
                .await?;
                db.execute_unprepared(
                    "ALTER TABLE pwreset_notify_cursor ADD COLUMN IF NOT EXISTS pending TEXT NOT NULL DEFAULT ''",
                )
                .await?;
                tracing::info!(cursor = name, "this notifier is the active one");
                return Ok(Cursor::Postgres { db, name: name.to_owned() });
            }
            tracing::info!(cursor = name, "another notifier is active; standing by");
            pwreset::domain::runtime::clock::pause(poll).await;
        }
    }

    /// The stored position, if any.
    pub async fn load(&self) -> anyhow::Result<Option<Position>> {
        match self {
            Cursor::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => Ok(Some(
                    Position::decode(&text).with_context(|| format!("{} is not a notifier cursor", path.display()))?,
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
            },
            Cursor::Postgres { db, name } => {
                let row = db
                    .query_one_raw(Statement::from_sql_and_values(
                        db.get_database_backend(),
                        "SELECT sequence, pending FROM pwreset_notify_cursor WHERE name = $1",
                        [name.clone().into()],
                    ))
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let through = row.try_get::<i64>("", "sequence")?.max(0).unsigned_abs();
                let pending = row.try_get::<String>("", "pending")?;
                let position = Position::decode(&format!("{through} pending {pending}"))
                    .context("the stored cursor's pending list")?;
                Ok(Some(position))
            }
        }
    }

    /// Stores `position` durably before returning.
    pub async fn store(&self, position: &Position) -> anyhow::Result<()> {
        match self {
            Cursor::File(path) => {
                let (path, text) = (path.clone(), position.encode());
                tokio::task::spawn_blocking(move || write_atomically(&path, &text)).await?
            }
            Cursor::Postgres { db, name } => {
                let pending = position.pending.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
                db.execute_raw(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    "INSERT INTO pwreset_notify_cursor (name, sequence, pending) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET sequence = EXCLUDED.sequence, pending = EXCLUDED.pending",
                    [name.clone().into(), i64::try_from(position.through).unwrap_or(i64::MAX).into(), pending.into()],
                ))
                .await?;
                Ok(())
            }
        }
    }
}

fn write_atomically(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| ".".into());
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("cursor")));
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    writeln!(file, "{text}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_file_cursor_survives_and_starts_empty() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cursor = Cursor::file(dir.path().join("notify.cursor"));
        assert_eq!(cursor.load().await?, None);
        cursor.store(&Position { through: 41, pending: BTreeSet::new() }).await?;
        assert_eq!(std::fs::read_to_string(dir.path().join("notify.cursor"))?, "41\n", "the earlier format");
        let position = Position { through: 42, pending: [17, 40].into() };
        cursor.store(&position).await?;
        assert_eq!(Cursor::file(dir.path().join("notify.cursor")).load().await?, Some(position));
        std::fs::write(dir.path().join("notify.cursor"), "7 junk")?;
        assert!(cursor.load().await.is_err(), "a damaged cursor stops the notifier");
        Ok(())
    }

    /// The PostgreSQL row keeps the pending list too (the database of the notifier's
    /// replica test, `PWRESET_NOTIFY_TEST_PG`).
    #[tokio::test]
    async fn a_postgres_cursor_keeps_the_pending_messages() -> anyhow::Result<()> {
        let url = std::env::var("PWRESET_NOTIFY_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("unit-{}", std::process::id());
        let cursor = Cursor::postgres(&url, &name, Duration::from_millis(100)).await?;
        assert_eq!(cursor.load().await?, None);
        let position = Position { through: 90, pending: [12, 88].into() };
        cursor.store(&position).await?;
        assert_eq!(cursor.load().await?, Some(position));
        cursor.store(&Position { through: 91, pending: BTreeSet::new() }).await?;
        assert_eq!(cursor.load().await?, Some(Position { through: 91, pending: BTreeSet::new() }));
        Ok(())
    }

    /// The property the cursor exists for: whatever moment it is stored at, a restart
    /// from it handles every message not finished, and none that was.
    #[test]
    fn a_restart_replays_every_unfinished_message_and_no_finished_one() {
        let mut ledger = Ledger::new(None);
        for s in [3, 5, 8, 9] {
            assert_eq!(ledger.admit(s).0, Admit::Handle);
        }
        ledger.finish(3);
        ledger.finish(8);
        let stored = ledger.position().unwrap();
        assert_eq!(stored, Position { through: 9, pending: [5, 9].into() });

        let mut restarted = Ledger::new(Some(stored));
        assert_eq!(restarted.resume_after(), Some(4), "from just before the oldest unfinished one");
        assert_eq!(restarted.admit(5).0, Admit::Handle);
        assert_eq!(restarted.admit(8).0, Admit::Skip, "finished before the restart");
        assert_eq!(restarted.admit(9).0, Admit::Handle);
        assert_eq!(restarted.admit(12).0, Admit::Handle, "new");
        assert_eq!(restarted.position().unwrap(), Position { through: 12, pending: [5, 9, 12].into() });
        restarted.finish(5);
        restarted.finish(9);
        restarted.finish(12);
        assert_eq!(restarted.resume_after(), Some(12));
    }

    #[test]
    fn a_pending_event_the_server_no_longer_has_is_dropped_when_the_replay_passes_it() {
        let mut ledger = Ledger::new(Some(Position { through: 10, pending: [4, 7].into() }));
        let (admit, gone) = ledger.admit(7);
        assert_eq!((admit, gone), (Admit::Handle, vec![4]));
        assert_eq!(ledger.position().unwrap().pending, [7].into());
        let mut skipping = Ledger::new(Some(Position { through: 10, pending: [4, 7].into() }));
        assert_eq!(skipping.forget_replay(), 2);
        assert_eq!(skipping.resume_after(), Some(10));
    }
}
