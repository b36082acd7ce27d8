//! The server key: where it comes from (given, a file, created beside an SQLite
//! database, or fresh per process), and the keys being rotated out.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::cli::KeyArgs;
use crate::domain::model::keys::ServerKey;
use crate::domain::model::textfile;

/// Where the server key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    Given(ServerKey),
    File(PathBuf),
    /// A key file created on first start (the zero-set-up SQLite default).
    CreateIfMissing(PathBuf),
    /// A fresh key per process, for in-memory databases.
    Ephemeral,
    /// None given for a database that needs one: refused by `load`, so by the commands
    /// that load the key (`serve`, `purge`).
    Missing,
}

/// The key source the flags name (by default, decided by the database), and the
/// previous keys.
pub(super) fn keys(args: &KeyArgs, database_url: &str) -> anyhow::Result<(KeySource, Vec<ServerKey>)> {
    let key = match (&args.secret_key, &args.secret_key_file) {
        (Some(text), _) => KeySource::Given(ServerKey::parse(text.expose()).map_err(anyhow::Error::msg)?),
        (None, Some(path)) => KeySource::File(path.clone()),
        (None, None) => match sqlite_file(database_url) {
            Some(db) => KeySource::CreateIfMissing(key_file_beside(&db)),
            None if database_url.contains(":memory:") => KeySource::Ephemeral,
            None => KeySource::Missing,
        },
    };
    let previous = args
        .previous_secret_keys
        .iter()
        .map(|k| ServerKey::parse(k.expose()).map_err(|e| anyhow::anyhow!("previous secret key: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((key, previous))
}

/// The file an SQLite URL names, if it names one.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

fn key_file_beside(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".key");
    db.with_file_name(name)
}

impl KeySource {
    /// Loads the key, creating the key file (mode 0600) when that is the default.
    pub fn load(&self) -> anyhow::Result<ServerKey> {
        match self {
            KeySource::Given(key) => Ok(key.clone()),
            KeySource::File(path) => read_key(path),
            KeySource::CreateIfMissing(path) if path.exists() => read_key(path),
            KeySource::CreateIfMissing(path) => {
                let key = random_key()?;
                write_private(path, key.encode().as_bytes())
                    .with_context(|| format!("creating the key file {}", path.display()))?;
                tracing::info!(path = %path.display(), "created a new server key file");
                Ok(key)
            }
            KeySource::Ephemeral => random_key(),
            KeySource::Missing => {
                bail!("a server key is required with this database: set PWRESET_SECRET_KEY or PWRESET_SECRET_KEY_FILE")
            }
        }
    }
}

fn random_key() -> anyhow::Result<ServerKey> {
    use rand::TryRng;
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng.try_fill_bytes(&mut bytes).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
    Ok(ServerKey::from_bytes(bytes))
}

fn read_key(path: &Path) -> anyhow::Result<ServerKey> {
    let bytes = textfile::read_small(path, 4096).with_context(|| format!("the key file {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("key file {}: not text", path.display()))?;
    ServerKey::parse(&text).map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_sits_beside_the_database() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/pwreset/db.sqlite?mode=rwc"),
            Some(PathBuf::from("/var/lib/pwreset/db.sqlite"))
        );
        assert_eq!(key_file_beside(Path::new("/var/lib/x.db")), PathBuf::from("/var/lib/x.db.key"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }
}
