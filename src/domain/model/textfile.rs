//! Text files an operator names (`--breached-passwords`, `pwreset import`). Only a
//! regular file is opened: a directory reads as an endless run of errors, a FIFO
//! blocks, `/dev/zero` never ends. And lines are read with a cap, so a file that is
//! one huge line (or no text at all) is refused instead of being read whole into memory.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use anyhow::{Context, bail};

/// Opens `path` for reading if it is a regular file (after symbolic links), with a
/// message that says what it is otherwise.
pub fn open_regular(path: &Path) -> anyhow::Result<File> {
    let kind = |metadata: &std::fs::Metadata| {
        let file_type = metadata.file_type();
        if file_type.is_file() {
            None
        } else if file_type.is_dir() {
            Some("a directory")
        } else {
            Some("not a regular file (a device, FIFO or socket)")
        }
    };
    // Checked before opening: opening a FIFO would block until a writer appears.
    let metadata = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if let Some(kind) = kind(&metadata) {
        bail!("{} is {kind}; expected a readable file", path.display());
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // And on what was opened, in case the path changed in between.
    if let Some(kind) = kind(&file.metadata().with_context(|| format!("reading {}", path.display()))?) {
        bail!("{} is {kind}; expected a readable file", path.display());
    }
    Ok(file)
}

/// The whole of a small regular file (a key, a certificate), refused past `cap` bytes.
pub fn read_small(path: &Path, cap: u64) -> anyhow::Result<Vec<u8>> {
    let mut contents = Vec::new();
    open_regular(path)?
        .take(cap + 1)
        .read_to_end(&mut contents)
        .with_context(|| format!("reading {}", path.display()))?;
    if contents.len() as u64 > cap {
        bail!("{} is larger than {cap} bytes", path.display());
    }
    Ok(contents)
}

/// A reader that fails (`InvalidData`, naming the line) once a line grows past `cap`
/// bytes, before a line reader above it has buffered more than that. The lines before
/// are delivered first, so the error comes where the long line is read.
#[derive(Debug)]
pub struct LineCap<R> {
    inner: R,
    cap: usize,
    /// Bytes of the current line so far.
    run: usize,
    /// The current line's number, from 1.
    line: u64,
    /// The current line is over the cap: the next read fails.
    over: bool,
}

impl<R> LineCap<R> {
    pub fn new(inner: R, cap: usize) -> Self {
        LineCap { inner, cap, run: 0, line: 1, over: false }
    }

    fn too_long(&self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("line {} is longer than {} bytes", self.line, self.cap))
    }
}

impl<R: Read> Read for LineCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.over {
            return Err(self.too_long());
        }
        let n = self.inner.read(buf)?;
        let mut at = 0;
        let mut segments = buf.get(..n).unwrap_or_default().split(|&b| b == b'\n').peekable();
        while let Some(segment) = segments.next() {
            if self.run + segment.len() > self.cap {
                // Deliver what comes before the excess; the next read fails.
                let delivered = at + (self.cap - self.run);
                self.over = true;
                return if delivered == 0 { Err(self.too_long()) } else { Ok(delivered) };
            }
            self.run += segment.len();
            at += segment.len();
            // Every segment but the last ended with a newline.
            if segments.peek().is_some() {
                self.run = 0;
                self.line += 1;
                at += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    #[test]
    fn only_regular_files_open() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let err = open_regular(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("is a directory"), "{err}");
        let err = open_regular(Path::new("/dev/zero")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not a regular file"), "{err}");
        let missing = dir.path().join("missing.txt");
        let err = open_regular(&missing).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(err.contains("missing.txt") && err.contains("No such file"), "{err}");
        let file = dir.path().join("file.txt");
        std::fs::write(&file, "a\n")?;
        assert!(open_regular(&file).is_ok());
        assert_eq!(read_small(&file, 2)?, b"a\n");
        assert!(read_small(&file, 1).is_err());
        assert!(read_small(Path::new("/dev/zero"), 1 << 20).is_err());
        Ok(())
    }

    #[test]
    fn a_line_past_the_cap_is_an_error_naming_it() {
        let text = format!("short\n{}\nrest\n", "x".repeat(100));
        let mut lines = BufReader::new(LineCap::new(text.as_bytes(), 64)).split(b'\n');
        assert_eq!(lines.next().and_then(Result::ok), Some(b"short".to_vec()), "the lines before come first");
        let err = lines.next().and_then(Result::err).map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err, "line 2 is longer than 64 bytes");
        let fine: Vec<Vec<u8>> =
            BufReader::new(LineCap::new(text.as_bytes(), 100)).split(b'\n').map_while(Result::ok).collect();
        assert_eq!(fine.len(), 3);
        // An endless line is refused after reading little more than the cap.
        let mut endless = BufReader::new(LineCap::new(io::repeat(b'x'), 1 << 20));
        let mut line = Vec::new();
        assert!(endless.read_until(b'\n', &mut line).is_err());
        assert!(line.len() <= (1 << 20) + 8192, "{}", line.len());
    }
}
