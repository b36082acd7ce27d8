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
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use anyhow::{Context, bail};
use sha1::{Digest, Sha1};
use unicode_normalization::UnicodeNormalization;

use super::textfile;

const BUILT_IN: &str = include_str!("../../../data/common-passwords.txt");

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
    /// Where the first hash starts (past comments and a header).
    start: u64,
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
        let (mut lo, mut hi) = (self.start, self.len);
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

/// The format `--breached-passwords` was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// `SHA1-HEX[:count]` lines sorted by hash (HIBP's download), searched in place.
    Sha1Sorted,
    /// One password per line, held in memory.
    PlainText,
}

impl std::fmt::Display for ListFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ListFormat::Sha1Sorted => "sha1-sorted",
            ListFormat::PlainText => "plain-text",
        })
    }
}

/// What a list file held, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub format: ListFormat,
    /// Entries in the file. A large sorted file is not read whole at start-up, so its
    /// count is estimated from the size and the lines read (`approximate`).
    pub entries: u64,
    pub approximate: bool,
    /// Lines not taken as entries: blank lines, comments and a header before the
    /// hashes; lines of a plain-text list that are not UTF-8 (no password could match).
    pub skipped_lines: u64,
}

/// The lists a new password is checked against.
#[derive(Debug, Clone)]
pub struct BreachedPasswords {
    common: Arc<Vec<Sha>>,
    extra: Option<Arc<Extra>>,
    loaded: Option<Loaded>,
}

impl Default for BreachedPasswords {
    /// The built-in list alone.
    fn default() -> Self {
        BreachedPasswords { common: Arc::clone(&COMMON), extra: None, loaded: None }
    }
}

/// No password (1 KiB at most) or HIBP line comes near it: a longer line means the
/// file is not a list, and is refused before it is read whole into memory.
const MAX_LINE_BYTES: usize = 4096;
/// Lines of a sorted file checked at start-up (format and order), at its start and end.
const SPOT_CHECK: usize = 1000;
/// Bytes read from the end of a sorted file to check its last lines.
const TAIL_BYTES: u64 = 64 * 1024;

/// `SHA1-HEX`, or `SHA1-HEX` and a count after `:` (HIBP), `,`, `;`, a tab or spaces
/// (what converters and spreadsheets write): a hash line in any of them, so a list in
/// one is never taken for plain text.
fn is_hibp_line(line: &[u8]) -> bool {
    let line = line.trim_ascii_end();
    let (hash, count) = match line.iter().position(|&b| matches!(b, b':' | b',' | b';' | b'\t' | b' ')) {
        Some(at) => (&line[..at], Some(line[at + 1..].trim_ascii_start())),
        None => (line, None),
    };
    hash.len() == 40
        && hash.iter().all(u8::is_ascii_hexdigit)
        && count.is_none_or(|count| !count.is_empty() && count.iter().all(u8::is_ascii_digit))
}

/// A line that is not an entry before the first one: blank, or a `#` comment.
fn is_preamble(line: &[u8]) -> bool {
    let line = line.trim_ascii();
    line.is_empty() || line.starts_with(b"#")
}

/// What HIBP-style downloads and their converters put on the first line.
fn looks_like_a_header(line: &[u8]) -> bool {
    let lower = line.trim_ascii().to_ascii_lowercase();
    ["sha1", "sha-1", "hash"].iter().any(|word| lower.starts_with(word.as_bytes()))
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One line: its number (from 1), the offset it starts at, its bytes without `\n` or `\r\n`.
type NumberedLine = (u64, u64, Vec<u8>);

/// The file's lines, each at most [`MAX_LINE_BYTES`]; an error names the line.
fn numbered_lines(file: &File, path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<NumberedLine>>> {
    // A clone shares the file's position with every other: read from the start.
    let mut own = file.try_clone()?;
    own.seek(SeekFrom::Start(0))?;
    let reader = BufReader::new(textfile::LineCap::new(own, MAX_LINE_BYTES));
    let path = path.to_owned();
    let mut offset = 0u64;
    Ok(reader.split(b'\n').zip(1u64..).map(move |(line, number)| {
        let mut line = line.with_context(|| format!("{}", path.display()))?;
        let mut start = offset;
        offset += line.len() as u64 + 1;
        // A byte-order mark (editors on Windows write one) is not part of the first entry.
        if number == 1 && line.starts_with(BOM) {
            line.drain(..BOM.len());
            start += BOM.len() as u64;
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok((number, start, line))
    }))
}

impl BreachedPasswords {
    /// The built-in list and `path`: sorted SHA-1 hashes (HIBP's format; comments and a
    /// header before them skipped) or plain text. Refused: anything but a regular file,
    /// a file with no entries, formats mixed, hashes out of order (checked at the start
    /// and the end of the file).
    pub fn with_file(path: &Path) -> anyhow::Result<Self> {
        let file = textfile::open_regular(path)?;
        let (extra, loaded) = match first_hash_line(&file, path)? {
            Some((start, skipped)) => sorted_file(file, path, start, skipped)?,
            None => plain_text(&file, path)?,
        };
        Ok(BreachedPasswords { common: Arc::clone(&COMMON), extra: Some(Arc::new(extra)), loaded: Some(loaded) })
    }

    /// What the file of [`with_file`](Self::with_file) held; `None` for the built-in list alone.
    pub fn loaded(&self) -> Option<&Loaded> {
        self.loaded.as_ref()
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

/// Where the hashes of a sorted file start (past comments and a header) and how many
/// lines come before them; `None` for a plain-text list.
fn first_hash_line(file: &File, path: &Path) -> anyhow::Result<Option<(u64, u64)>> {
    let mut header: Option<(u64, Vec<u8>)> = None;
    for line in numbered_lines(file, path)? {
        let (number, start, line) = line?;
        if is_preamble(&line) {
            continue;
        }
        if is_hibp_line(&line) {
            return match header {
                Some((header, text)) if !looks_like_a_header(&text) => bail!(
                    "{}: line {header} is not SHA1-HEX[:count], but line {number} is (formats must not be mixed)",
                    path.display()
                ),
                _ => Ok(Some((start, number - 1))),
            };
        }
        match header {
            // The second entry is not a hash either: plain text.
            Some(_) => return Ok(None),
            None => header = Some((number, line)),
        }
    }
    match header {
        Some((number, line)) if looks_like_a_header(&line) => {
            bail!("{}: line {number} is the header of a list of hashes, but no hash follows it", path.display())
        }
        _ => Ok(None),
    }
}

/// Checks a sorted file's first and last lines (format and order) and estimates its
/// entries from them; it is then searched in place.
fn sorted_file(file: File, path: &Path, start: u64, skipped: u64) -> anyhow::Result<(Extra, Loaded)> {
    let len = file.metadata()?.len();
    let mixed = |at: String| {
        anyhow::anyhow!(
            "{}: {at} is not SHA1-HEX[:count] in a list of hashes (formats must not be mixed)",
            path.display()
        )
    };
    let unsorted = || anyhow::anyhow!("{}: not sorted by hash (download the \"ordered by hash\" file)", path.display());
    let hash_of = |line: &[u8]| line.get(..40).unwrap_or_default().to_ascii_uppercase();

    let (mut previous, mut checked, mut bytes, mut whole) = (Vec::new(), 0u64, 0u64, true);
    for line in numbered_lines(&file, path)? {
        let (number, offset, line) = line?;
        if offset < start {
            continue;
        }
        if checked == SPOT_CHECK as u64 {
            // The bytes the checked lines take, up to where this one starts.
            bytes = offset - start;
            whole = false;
            break;
        }
        if !is_hibp_line(&line) {
            return Err(mixed(format!("line {number}")));
        }
        let hash = hash_of(&line);
        if hash < previous {
            return Err(unsorted());
        }
        previous = hash;
        checked += 1;
    }
    if checked == 0 {
        bail!("{}: no hashes after the header", path.display());
    }
    let entries = if whole {
        checked
    } else {
        // The last lines: the tail of the file past its first (partial) line.
        let from = len.saturating_sub(TAIL_BYTES).max(start + bytes);
        let mut tail = vec![0u8; usize::try_from(len - from).unwrap_or(0)];
        file.read_exact_at(&mut tail, from).with_context(|| format!("reading {}", path.display()))?;
        let mut offset = from;
        let mut lines = tail.split(|&b| b == b'\n').peekable();
        if from > start + bytes
            && let Some(partial) = lines.next()
        {
            offset += partial.len() as u64 + 1;
        }
        while let Some(raw) = lines.next() {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            // The file's final newline leaves an empty last piece.
            if line.is_empty() && lines.peek().is_none() {
                break;
            }
            if !is_hibp_line(line) {
                return Err(mixed(format!("the line at byte {offset}")));
            }
            let hash = hash_of(line);
            if hash < previous {
                return Err(unsorted());
            }
            previous = hash;
            offset += raw.len() as u64 + 1;
        }
        (len - start).saturating_mul(checked) / bytes.max(1)
    };
    let loaded = Loaded { format: ListFormat::Sha1Sorted, entries, approximate: !whole, skipped_lines: skipped };
    Ok((Extra::Sorted(SortedFile { path: path.to_owned(), file, start, len }), loaded))
}

/// A plain-text list: every line after a leading block of comments is a password
/// (a later `#` included: lists hold such passwords), hashed in its NFC form.
fn plain_text(file: &File, path: &Path) -> anyhow::Result<(Extra, Loaded)> {
    let (mut digests, mut skipped, mut started) = (Vec::new(), 0u64, false);
    for line in numbered_lines(file, path)? {
        let (number, _, line) = line?;
        if line.is_empty() || (!started && is_preamble(&line)) {
            skipped += 1;
            continue;
        }
        if !started && looks_like_a_header(&line) {
            bail!(
                "{}: line {number} looks like the header of a list of hashes, but line {} is not a hash (formats must not be mixed)",
                path.display(),
                number + 1
            );
        }
        started = true;
        if is_hibp_line(&line) {
            bail!("{}: line {number} is a SHA-1 hash in a plain-text list (formats must not be mixed)", path.display());
        }
        match std::str::from_utf8(&line) {
            Ok(password) => digests.push(sha1(&password.nfc().collect::<String>())),
            Err(_) => skipped += 1,
        }
    }
    if digests.is_empty() {
        bail!("{} holds no passwords", path.display());
    }
    let loaded = Loaded {
        format: ListFormat::PlainText,
        entries: digests.len() as u64,
        approximate: false,
        skipped_lines: skipped,
    };
    Ok((Extra::InMemory(sorted(digests.into_iter())), loaded))
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
        let loaded = lists.loaded().cloned();
        let entries = loaded.as_ref().map_or(0, |l| l.entries);
        assert!(loaded.is_some_and(|l| l.approximate && l.format == ListFormat::Sha1Sorted));
        assert!((4750..=5250).contains(&entries), "estimated {entries}");
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

    fn sorted_lines(passwords: impl Iterator<Item = String>) -> Vec<String> {
        let mut lines: Vec<String> = passwords.map(|p| format!("{}:{}", hex(&p), p.len())).collect();
        lines.sort();
        lines
    }

    fn refusal(contents: &str) -> String {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("list.txt");
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{e}"));
        match BreachedPasswords::with_file(&path) {
            Ok(lists) => panic!("accepted as {:?}", lists.loaded()),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_header_and_comments_before_the_hashes_are_skipped() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pwned.txt");
        let lines = sorted_lines((0..300).map(|i| format!("leaked {i}")));
        std::fs::write(&path, format!("# from HIBP\r\n\r\nSHA1:Count\r\n{}\r\n", lines.join("\r\n")))?;
        let lists = BreachedPasswords::with_file(&path)?;
        for i in 0..300 {
            assert!(lists.contains(&format!("leaked {i}"))?, "leaked {i}");
        }
        assert!(!lists.contains("leaked 300")?);
        let loaded = Loaded { format: ListFormat::Sha1Sorted, entries: 300, approximate: false, skipped_lines: 3 };
        assert_eq!(lists.loaded(), Some(&loaded));
        Ok(())
    }

    #[test]
    fn sorted_files_of_every_size_and_line_ending_load() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        // Around the lines checked at the start, with the end read from a line boundary
        // or from within a line.
        for count in [1, 999, 1000, 1001, 1500, 2001, 5000] {
            for ending in ["\n", "\r\n"] {
                let path = dir.path().join(format!("{count}.txt"));
                let lines = sorted_lines((0..count).map(|i| format!("leaked {i}")));
                std::fs::write(&path, lines.join(ending) + ending)?;
                let lists =
                    BreachedPasswords::with_file(&path).map_err(|e| e.context(format!("{count} {ending:?}")))?;
                for i in [0, count / 2, count - 1] {
                    assert!(lists.contains(&format!("leaked {i}"))?, "{count}: leaked {i}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn hashes_with_other_separators_and_a_byte_order_mark_are_read_as_hashes() -> anyhow::Result<()> {
        let dir = tempfile::TempDir::new()?;
        let listed = "violet kettle marathon quietly glows";
        let mut hashes: Vec<String> = (0..50).map(|i| hex(&format!("filler-{i}"))).collect();
        hashes.push(hex(listed));
        hashes.sort();
        for (name, separator, bom) in
            [("comma", ",", ""), ("space", " ", ""), ("tab", "\t", ""), ("bom", ":", "\u{feff}")]
        {
            let body: Vec<String> = hashes.iter().map(|h| format!("{h}{separator}7")).collect();
            let path = dir.path().join(name);
            std::fs::write(&path, format!("{bom}{}\n", body.join("\n")))?;
            let list = BreachedPasswords::with_file(&path)?;
            assert_eq!(list.loaded().map(|l| l.format), Some(ListFormat::Sha1Sorted), "{name}");
            assert!(list.contains(listed)?, "{name}");
        }
        // The first of a plain-text list behind a byte-order mark is listed too.
        let path = dir.path().join("plain-bom");
        std::fs::write(&path, format!("\u{feff}{listed}\nsecond listed password\n"))?;
        assert!(BreachedPasswords::with_file(&path)?.contains(listed)?);
        Ok(())
    }

    #[test]
    fn mixed_formats_are_refused_with_the_line() {
        let lines = sorted_lines((0..10).map(|i| format!("leaked {i}")));
        let mut mixed = lines.clone();
        mixed.insert(5, "a plain password".into());
        let err = refusal(&(mixed.join("\n") + "\n"));
        assert!(err.contains("line 6 is not SHA1-HEX[:count]"), "{err}");
        // Past the lines checked at the start: the end of the file is checked too.
        let mut long = sorted_lines((0..3000).map(|i| format!("leaked {i}")));
        long.push("a plain password at the end".into());
        let err = refusal(&(long.join("\n") + "\n"));
        assert!(err.contains("the line at byte") && err.contains("formats must not be mixed"), "{err}");
        let err = refusal(&format!("a password\nanother password\n{}\n", lines.join("\n")));
        assert!(err.contains("line 3 is a SHA-1 hash in a plain-text list"), "{err}");
        let err = refusal(&format!("not a header\n{}\n", lines.join("\n")));
        assert!(err.contains("line 1 is not SHA1-HEX[:count], but line 2 is"), "{err}");
        let err = refusal("SHA1:Count\nhunter2 but longer\n");
        assert!(err.contains("line 1 looks like the header"), "{err}");
    }

    #[test]
    fn a_list_without_entries_is_refused() {
        assert!(refusal("").contains("holds no passwords"));
        assert!(refusal("\n\r\n# only comments\n").contains("holds no passwords"));
        assert!(refusal("SHA1:Count\r\n").contains("no hash follows"));
    }

    #[test]
    fn a_huge_line_or_a_directory_is_refused() -> anyhow::Result<()> {
        let err = refusal(&format!("fine\n{}\n", "x".repeat(MAX_LINE_BYTES + 1)));
        assert!(err.contains("line 2 is longer than 4096 bytes"), "{err}");
        let dir = tempfile::tempdir()?;
        let err = BreachedPasswords::with_file(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("is a directory"), "{err}");
        Ok(())
    }

    #[test]
    fn plain_text_is_compared_in_nfc_and_counted() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("plain.txt");
        // "café" decomposed (e + U+0301), a line that is not UTF-8, a password starting with '#'.
        let mut contents = b"# a comment first\ncafe\xcc\x81 au lait et croissants\n".to_vec();
        contents.extend_from_slice(b"\xff\xfe latin-1\n#1 hashtag password\n");
        std::fs::write(&path, contents)?;
        let lists = BreachedPasswords::with_file(&path)?;
        assert!(lists.contains("caf\u{e9} au lait et croissants")?);
        assert!(lists.contains("#1 hashtag password")?);
        let loaded = Loaded { format: ListFormat::PlainText, entries: 2, approximate: false, skipped_lines: 2 };
        assert_eq!(lists.loaded(), Some(&loaded));
        Ok(())
    }
}
