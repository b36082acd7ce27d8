//! Where the notifier keeps the sequence of the last event it handled: a file, written
//! atomically (temporary file, fsync, rename, fsync of the folder), or a row in
//! PostgreSQL, where a session advisory lock makes one notifier replica active at a
//! time (the others wait for the lock and take over when it is released).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};

pub enum Cursor {
    File(PathBuf),
    Postgres { db: DatabaseConnection, name: String },
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
        let db = Database::connect(options).await.context("connecting to --cursor-database-url")?;
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS pwreset_notify_cursor (name TEXT PRIMARY KEY, sequence BIGINT NOT NULL)",
        )
        .await?;
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
                tracing::info!(cursor = name, "this notifier is the active one");
                return Ok(Cursor::Postgres { db, name: name.to_owned() });
            }
            tracing::info!(cursor = name, "another notifier is active; standing by");
            pwreset::domain::clock::pause(poll).await;
        }
    }

    /// The last handled sequence, if any.
    pub async fn load(&self) -> anyhow::Result<Option<u64>> {
        match self {
            Cursor::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    Ok(Some(text.trim().parse().with_context(|| format!("{} is not a sequence", path.display()))?))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
            },
            Cursor::Postgres { db, name } => {
                let row = db
                    .query_one_raw(Statement::from_sql_and_values(
                        db.get_database_backend(),
                        "SELECT sequence FROM pwreset_notify_cursor WHERE name = $1",
                        [name.clone().into()],
                    ))
                    .await?;
                Ok(row.map(|r| r.try_get::<i64>("", "sequence")).transpose()?.map(|s| s.max(0).unsigned_abs()))
            }
        }
    }

    /// Stores `sequence` durably before returning.
    pub async fn store(&self, sequence: u64) -> anyhow::Result<()> {
        match self {
            Cursor::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || write_atomically(&path, sequence)).await?
            }
            Cursor::Postgres { db, name } => {
                db.execute_raw(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    "INSERT INTO pwreset_notify_cursor (name, sequence) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET sequence = EXCLUDED.sequence",
                    [name.clone().into(), i64::try_from(sequence).unwrap_or(i64::MAX).into()],
                ))
                .await?;
                Ok(())
            }
        }
    }
}

fn write_atomically(path: &PathBuf, sequence: u64) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| ".".into());
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("cursor")));
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    writeln!(file, "{sequence}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_cursor_survives_and_starts_empty() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cursor = Cursor::file(dir.path().join("notify.cursor"));
        assert_eq!(cursor.load().await?, None);
        cursor.store(41).await?;
        cursor.store(42).await?;
        assert_eq!(Cursor::file(dir.path().join("notify.cursor")).load().await?, Some(42));
        Ok(())
    }
}
