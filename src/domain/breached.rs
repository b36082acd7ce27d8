//! Compromised passwords (NIST SP 800-63B-4: new passwords are checked against a list
//! of commonly used, expected or compromised values). Built in: the 30,000 most common
//! passwords of `data/common-passwords.txt`. Added by `--breached-passwords FILE`:
//!
//! - **Have I Been Pwned's download** (`SHA1-HEX:count`, sorted by hash): searched in
//!   place by binary search with positioned reads (about 27 reads of a few hundred
//!   bytes for 100 M entries), so start-up is instant and memory does not grow with the
//!   file; the operating system's page cache keeps the hot pages.
//! - **plain text**, one password per line: its SHA-1s are read into one sorted array
//!   (20 bytes per entry) at start-up.
//!
//! Entries are compared as SHA-1 digests of the password's NFC form, as HIBP stores them.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use anyhow::{Context, bail};
use sha1::{Digest, Sha1};

const BUILT_IN: &str = include_str!("../../data/common-passwords.txt");

type Sha = [u8; 20];

fn sha1(password: &str) -> Sha {
    Sha1::digest(password.as_bytes()).into()
}

/// The built-in list, built once per process.
static COMMON: LazyLock<Arc<Vec<Sha>>> = LazyLock::new(|| Arc::new(sorted(BUILT_IN.lines().map(sha1))));

fn sorted(digests: impl Iterator<Item = Sha>) -> Vec<Sha> {
    let mut all: Vec<Sha> = digests.collect();
    all.sort_unstable();
    all.dedup();
    all.shrink_to_fit();
    all
}

/// A HIBP-format file searched in place.
#[derive(Debug)]
struct SortedFile {
    path: PathBuf,
    file: File,
    len: u64,
}

/// How many bytes a probe reads: a line is 40 hex digits, a colon, a count and CRLF.
const PROBE: usize = 128;

impl SortedFile {
    /// The start of the first line at or after `pos`, with its hash (upper-case hex),
    /// or `None` when no line starts in `pos..len`.
    fn line_at_or_after(&self, pos: u64) -> std::io::Result<Option<(u64, [u8; 40], u64)>> {
        let mut start = pos;
        if pos > 0 {
            // A line starts after a newline: find the first one at or after pos - 1.
            let mut at = pos - 1;
            loop {
                if at >= self.len {
                    return Ok(None);
                }
                let mut buf = [0u8; PROBE];
                let n = self.file.read_at(&mut buf, at)?;
                if n == 0 {
                    return Ok(None);
                }
                if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
                    start = at + i as u64 + 1;
                    break;
                }
                at += n as u64;
            }
        }
        if start >= self.len {
            return Ok(None);
        }
        let mut line = [0u8; PROBE];
        let n = self.file.read_at(&mut line, start)?;
        let end = line[..n].iter().position(|&b| b == b'\n').map_or(start + n as u64, |i| start + i as u64 + 1);
        let mut hash = [0u8; 40];
        let Some(hex) = line.get(..40) else { return Ok(None) };
        for (h, b) in hash.iter_mut().zip(hex) {
            *h = b.to_ascii_uppercase();
        }
        Ok(Some((start, hash, end)))
    }

    /// Binary search over byte offsets: the candidates are the lines starting in
    /// `lo..hi`; each probe looks at the first line at or after the middle.
    fn contains(&self, target: &[u8; 40]) -> std::io::Result<bool> {
        let (mut lo, mut hi) = (0u64, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.line_at_or_after(mid)? {
                Some((start, hash, end)) if start < hi => match hash.cmp(target) {
                    std::cmp::Ordering::Equal => return Ok(true),
                    std::cmp::Ordering::Less => lo = end,
                    std::cmp::Ordering::Greater => hi = mid,
                },
                // No candidate starts in mid..hi.
                _ => hi = mid,
            }
        }
        Ok(false)
    }
}

#[derive(Debug)]
enum Extra {
    Sorted(SortedFile),
    InMemory(Vec<Sha>),
}

/// The lists a new password is checked against.
#[derive(Debug, Clone)]
pub struct BreachedPasswords {
    common: Arc<Vec<Sha>>,
    extra: Option<Arc<Extra>>,
}

impl Default for BreachedPasswords {
    /// The built-in list alone.
    fn default() -> Self {
        BreachedPasswords { common: Arc::clone(&COMMON), extra: None }
    }
}

fn is_hibp_line(line: &str) -> bool {
    let line = line.trim_end();
    let hash = line.split(':').next().unwrap_or_default();
    hash.len() == 40
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && line.split(':').nth(1).is_none_or(|count| count.bytes().all(|b| b.is_ascii_digit()))
}

impl BreachedPasswords {
    /// The built-in list and `path`: HIBP's format (checked to be sorted at its start)
    /// or plain text.
    pub fn with_file(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata()?.len();
        let mut reader = BufReader::new(file.try_clone()?);
        let mut first = String::new();
        reader.read_line(&mut first)?;
        let extra = if is_hibp_line(&first) {
            // Sorted by hash, as HIBP's "ordered by hash" download is: spot-check the start.
            let mut previous = first.get(..40).unwrap_or_default().to_ascii_uppercase();
            for line in reader.lines().take(1000) {
                let line = line?;
                if !is_hibp_line(&line) {
                    bail!("{}: a line that is not SHA1-HEX:count after the first", path.display());
                }
                let hash = line.get(..40).unwrap_or_default().to_ascii_uppercase();
                if hash < previous {
                    bail!("{}: not sorted by hash (download the \"ordered by hash\" file)", path.display());
                }
                previous = hash;
            }
            Extra::Sorted(SortedFile { path: path.to_owned(), file, len })
        } else {
            let mut digests = vec![sha1(first.trim_end_matches(['\r', '\n']))];
            for line in reader.lines() {
                let line = line?;
                digests.push(sha1(line.trim_end_matches('\r')));
            }
            Extra::InMemory(sorted(digests.into_iter()))
        };
        Ok(BreachedPasswords { common: Arc::clone(&COMMON), extra: Some(Arc::new(extra)) })
    }

    /// Whether `password` (NFC) is on a list.
    pub fn contains(&self, password: &str) -> anyhow::Result<bool> {
        let digest = sha1(password);
        if self.common.binary_search(&digest).is_ok() {
            return Ok(true);
        }
        match self.extra.as_deref() {
            None => Ok(false),
            Some(Extra::InMemory(all)) => Ok(all.binary_search(&digest).is_ok()),
            Some(Extra::Sorted(file)) => {
                let mut hex = [0u8; 40];
                for (pair, byte) in hex.chunks_mut(2).zip(digest) {
                    pair.copy_from_slice(format!("{byte:02X}").as_bytes());
                }
                file.contains(&hex).with_context(|| format!("reading {}", file.path.display()))
            }
        }
    }

    /// Entries on the lists held in memory (the built-in one and a plain-text file).
    pub fn in_memory_entries(&self) -> usize {
        self.common.len()
            + match self.extra.as_deref() {
                Some(Extra::InMemory(all)) => all.len(),
                _ => 0,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn hex(password: &str) -> String {
        sha1(password).iter().map(|b| format!("{b:02X}")).collect()
    }

    #[test]
    fn the_built_in_list_holds_the_common_passwords() -> anyhow::Result<()> {
        let lists = BreachedPasswords::default();
        assert!(lists.contains("password")?);
        assert!(lists.contains("123456")?);
        assert!(!lists.contains("violet kettle marathon quietly glows")?);
        assert_eq!(lists.in_memory_entries(), 30_000);
        Ok(())
    }

    #[test]
    fn a_sorted_hibp_file_is_searched_in_place() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pwned.txt");
        let mut lines: Vec<String> = (0..5000).map(|i| format!("{}:{}", hex(&format!("leaked {i}")), i + 1)).collect();
        lines.sort();
        let mut file = File::create(&path)?;
        for line in &lines {
            write!(file, "{line}\r\n")?;
        }
        let lists = BreachedPasswords::with_file(&path)?;
        for i in [0, 1, 2, 777, 4998, 4999] {
            assert!(lists.contains(&format!("leaked {i}"))?, "leaked {i}");
        }
        for i in 5000..5200 {
            assert!(!lists.contains(&format!("leaked {i}"))?, "leaked {i} is not on the list");
        }
        // The first and the last line.
        let first = lines.first().map(|l| l[..40].to_owned()).unwrap_or_default();
        let last = lines.last().map(|l| l[..40].to_owned()).unwrap_or_default();
        let found = |h: &str| {
            let mut t = [0u8; 40];
            t.copy_from_slice(h.as_bytes());
            match lists.extra.as_deref() {
                Some(Extra::Sorted(f)) => f.contains(&t).unwrap_or(false),
                _ => false,
            }
        };
        assert!(found(&first) && found(&last));
        Ok(())
    }

    #[test]
    fn an_unsorted_hibp_file_is_refused_and_plain_text_is_read() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let unsorted = dir.path().join("unsorted.txt");
        std::fs::write(&unsorted, format!("{}:1\n{}:1\n", "F".repeat(40), "0".repeat(40)))?;
        assert!(BreachedPasswords::with_file(&unsorted).is_err());
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, "hunter2 but longer\r\ncorrect horse battery staple\n")?;
        let lists = BreachedPasswords::with_file(&plain)?;
        assert!(lists.contains("hunter2 but longer")?);
        assert!(lists.contains("correct horse battery staple")?);
        assert!(!lists.contains("correct horse battery")?);
        Ok(())
    }
}
