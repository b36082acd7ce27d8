//! `pwreset import FILE`: accounts with the hashes of the system they come from, from
//! JSON lines or CSV with a header (`email`, `password_hash`, and optionally `active`,
//! `created_at` as RFC 3339, `username`, `phone`). Idempotent: an account whose
//! e-mail, username or phone is already there is skipped and counted, never
//! overwritten. Lines are checked one by one (a
//! refused line is reported with its number and reason and changes nothing); the
//! accepted ones are written in chunks of one transaction each.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::domain::model::AccountId;
use crate::domain::model::email::Email;
use crate::domain::model::imported::{ImportLimits, accept};
use crate::domain::model::login::{Phone, Username};
use crate::domain::model::persistence::{AccountStore, NewAccount};
use crate::domain::model::textfile::{LineCap, open_regular};
use crate::domain::runtime::retry::retry_transient;

/// Accounts written per transaction.
pub const CHUNK: usize = 1000;

/// One line of the file, as written.
#[derive(Debug, Deserialize)]
struct Line {
    email: String,
    password_hash: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    active: Option<bool>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

/// `true`/`false`, `1`/`0`, or empty (CSV) for "not given".
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Bool(b)) => Ok(Some(b)),
        Some(Raw::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" | "1" | "t" | "yes" => Ok(Some(true)),
            "false" | "0" | "f" | "no" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!("active must be true or false, not {other:?}"))),
        },
    }
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub imported: u64,
    /// Lines whose e-mail, username or phone already had an account (or came earlier
    /// in the file).
    pub skipped: u64,
    /// (line number, reason), in file order.
    pub refused: Vec<(u64, String)>,
}

impl Summary {
    /// The report printed at the end.
    pub fn report(&self) -> String {
        let mut text = format!(
            "imported {}, skipped {} (e-mail, username or phone already present), refused {}\n",
            self.imported,
            self.skipped,
            self.refused.len()
        );
        for (line, reason) in &self.refused {
            text.push_str(&format!("  line {line}: {reason}\n"));
        }
        text
    }
}

/// The account a line describes, or why it is refused.
fn account(line: Line, limits: &ImportLimits, now: DateTime<Utc>) -> Result<NewAccount, String> {
    let email = Email::parse(&line.email).map_err(|e| e.to_string())?;
    let hash = accept(&line.password_hash, limits, "password_hash").map_err(|e| e.to_string())?;
    let optional = |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let username =
        optional(line.username).map(|u| Username::parse_new(&u, "username")).transpose().map_err(|e| e.to_string())?;
    let phone = optional(line.phone).map(|p| Phone::parse(&p, "phone")).transpose().map_err(|e| e.to_string())?;
    let created_at = match line.created_at.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| format!("created_at: {e} (expected RFC 3339)"))?
            .with_timezone(&Utc),
        None => now,
    };
    Ok(NewAccount {
        id: AccountId::generate(),
        email,
        username,
        phone,
        password_hash: Some(hash),
        active: line.active.unwrap_or(true),
        created_at,
    })
}

/// Longest line of an import file: an account is a few hundred bytes. A longer line
/// (or a file that is one endless line) stops the import before it fills memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// A line of the file, parsed, refused (reported, the import goes on), or unreadable
/// (the import stops: the rest of the file cannot be trusted to be lines).
type Parsed = Result<Result<Line, String>, String>;

/// Lines of the file, numbered from 1, parsed; CSV when the name ends in `.csv`.
fn lines(path: &Path, reader: impl Read + 'static) -> Box<dyn Iterator<Item = (u64, Parsed)>> {
    let reader = LineCap::new(reader, MAX_LINE_BYTES);
    let csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if csv {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(reader);
        let headers = match reader.headers() {
            Ok(headers) => headers.clone(),
            Err(e) => return Box::new(std::iter::once((1, Err(format!("the CSV header: {e}"))))),
        };
        Box::new(reader.into_records().map(move |record| match record {
            Ok(record) => {
                let number = record.position().map_or(0, |p| p.line());
                (number, Ok(record.deserialize::<Line>(Some(&headers)).map_err(|e| e.to_string())))
            }
            Err(e) => {
                let number = e.position().map_or(0, |p| p.line());
                match e.kind() {
                    csv::ErrorKind::Io(_) => (number, Err(e.to_string())),
                    _ => (number, Ok(Err(e.to_string()))),
                }
            }
        }))
    } else {
        Box::new(
            BufReader::new(reader)
                .split(b'\n')
                .zip(1u64..)
                .map(|(line, n)| (n, line))
                .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim_ascii().is_empty()))
                .map(|(n, line)| {
                    let parsed = line.map_err(|e| e.to_string()).map(|l| {
                        serde_json::from_slice::<Line>(&l).map_err(|e| format!("not a JSON object of the format: {e}"))
                    });
                    (n, parsed)
                }),
        )
    }
}

/// Imports `path` into `store`; the summary, whether or not anything was refused.
pub async fn import(
    path: &Path,
    store: &dyn AccountStore,
    limits: &ImportLimits,
    now: DateTime<Utc>,
) -> anyhow::Result<Summary> {
    // Only a regular file: a directory or device would be read as an endless stream.
    let file = open_regular(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Drawn only on a terminal (indicatif hides itself otherwise).
    let progress = ProgressBar::new(size);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let reader = progress.wrap_read(file);
    let mut summary = Summary::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    for (number, parsed) in lines(path, reader) {
        // An unreadable line ends the import (its error names the line).
        let parsed = parsed.map_err(|e| anyhow::anyhow!("{}: {e} (reading line {number})", path.display()))?;
        match parsed.and_then(|line| account(line, limits, now)) {
            Ok(account) => chunk.push(account),
            Err(reason) => summary.refused.push((number, reason)),
        }
        if chunk.len() == CHUNK {
            write(store, &mut chunk, &mut summary).await?;
        }
    }
    write(store, &mut chunk, &mut summary).await?;
    progress.finish_and_clear();
    if summary.imported == 0 && summary.skipped == 0 && summary.refused.is_empty() {
        bail!("{} holds no accounts", path.display());
    }
    Ok(summary)
}

async fn write(store: &dyn AccountStore, chunk: &mut Vec<NewAccount>, summary: &mut Summary) -> anyhow::Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    // A chunk is one transaction and idempotent (existing logins are skipped), so a
    // transient failure (a busy SQLite file, a serialization failure) is retried.
    // Generous: each attempt on a busy SQLite file itself waits out the 5 s busy timeout.
    let budget = std::time::Duration::from_secs(60);
    let inserted = retry_transient("a chunk of accounts", budget, || {}, || store.import_accounts(chunk))
        .await
        .context("writing a chunk of accounts")?;
    summary.imported += inserted;
    summary.skipped += chunk.len() as u64 - inserted;
    chunk.clear();
    Ok(())
}
