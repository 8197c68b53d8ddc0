//! The read side: C's `sync_log_reader_*`.
//!
//! The parser is a byte-for-byte port of `sync_log_reader_getitem` with the
//! IMAP helpers it uses (`getword`, `getastring`, `eatline`), so a file gives
//! the same item stream here as in C — including C's habit of stopping at a
//! malformed string argument (everything after it is not returned; cyrsync
//! logs how many bytes were left unread). Where C would `fatal()` or crash
//! (a number too big in a literal, a synchronising literal with no output
//! stream) the line is treated as malformed instead.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::writer::whole_file_lock;
use super::{log_path, work_path, Error};

/// One record: `kind` upper-cased, one or two arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item<'a> {
    pub kind: &'a [u8],
    pub arg1: &'a [u8],
    pub arg2: Option<&'a [u8]>,
}

/// What [`Reader::begin`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// Items can be read.
    Ready,
    /// A channel reader found no log: nothing to do yet (`IMAP_AGAIN`).
    NoLog,
}

#[derive(Debug)]
enum Source {
    /// sync_client's normal mode: rename `log` to `log-run`, unlink at end.
    Channel { log: PathBuf },
    /// `sync_client -f FILE`: read the file, never unlink it.
    File,
    /// An open descriptor (not closed by us).
    Fd(RawFd),
    /// Bytes in memory (the rightnow log).
    Content(Vec<u8>),
}

#[derive(Debug)]
enum Data {
    Map(Mmap),
    Bytes(Vec<u8>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Map(m) => m,
            Data::Bytes(b) => b,
        }
    }
}

#[derive(Debug)]
struct Input {
    data: Data,
    pos: usize,
    /// The work file, kept open (as C does) until `end`.
    _file: Option<File>,
}

/// A sync log reader. Not thread-safe: one thread at a time (it is `Send`).
///
/// Items borrow the reader's buffers: an [`Item`] is valid until the next
/// call on the reader.
#[derive(Debug)]
pub struct Reader {
    source: Source,
    work_file: Option<PathBuf>,
    input: Option<Input>,
    kind: Vec<u8>,
    arg1: Vec<u8>,
    arg2: Vec<u8>,
}

const EOF: i32 = -1;

impl Reader {
    fn with(source: Source, work_file: Option<PathBuf>) -> Self {
        Reader {
            source,
            work_file,
            input: None,
            kind: Vec::new(),
            arg1: Vec::new(),
            arg2: Vec::new(),
        }
    }

    /// Read a channel's log (`None`: the default channel), as sync_client
    /// does in rolling mode.
    pub fn for_channel(config_dir: &Path, channel: Option<&[u8]>) -> Result<Self, Error> {
        let log = log_path(config_dir, channel)?;
        let work = work_path(&log);
        Ok(Self::with(Source::Channel { log }, Some(work)))
    }

    /// Read a saved log file (`sync_client -f`); the file is never unlinked.
    pub fn for_file(path: impl Into<PathBuf>) -> Self {
        Self::with(Source::File, Some(path.into()))
    }

    /// Read from an open descriptor, which stays the caller's: it is read
    /// (or mapped, if it is a regular file) but never closed.
    pub fn for_fd(fd: RawFd) -> Self {
        Self::with(Source::Fd(fd), None)
    }

    /// Read records held in memory.
    pub fn for_content(content: Vec<u8>) -> Self {
        Self::with(Source::Content(content), None)
    }

    /// The file being read: a channel's `log-run`, or the file given.
    pub fn work_file(&self) -> Option<&Path> {
        self.work_file.as_deref()
    }

    /// Whether `begin` succeeded and `end` has not been called since.
    pub fn is_active(&self) -> bool {
        self.input.is_some()
    }

    /// Start reading, as `sync_log_reader_begin`: a channel reader first
    /// reprocesses a `log-run` left by an earlier run, otherwise renames
    /// `log` to `log-run` (or answers [`Begun::NoLog`]); then it takes and
    /// drops the file lock once, which waits out any writer that opened the
    /// file before the rename. A reader still active is ended first.
    pub fn begin(&mut self) -> Result<Begun, Error> {
        if self.input.is_some() {
            self.end()?;
        }
        let input = match &self.source {
            Source::Content(bytes) => Input {
                data: Data::Bytes(bytes.clone()),
                pos: 0,
                _file: None,
            },
            Source::Fd(fd) => read_fd(*fd)?,
            Source::File | Source::Channel { .. } => {
                let work = self
                    .work_file
                    .clone()
                    .expect("file readers have a work file");
                if work.exists() {
                    if matches!(self.source, Source::Channel { .. }) {
                        log::info!("Reprocessing sync log file {}", work.display());
                    }
                } else if let Source::Channel { log } = &self.source {
                    match std::fs::metadata(log) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Begun::NoLog),
                        Err(e) => return Err(Error::io("stat", log, e)),
                    }
                    std::fs::rename(log, &work).map_err(|e| Error::io("rename", log, e))?;
                } else {
                    return Err(Error::io(
                        "stat",
                        &work,
                        io::Error::from(io::ErrorKind::NotFound),
                    ));
                }
                open_work_file(&work)?
            }
        };
        self.input = Some(input);
        Ok(Begun::Ready)
    }

    /// Finish reading, as `sync_log_reader_end`: close the file and, for a
    /// channel reader, unlink the work file. A no-op when not active.
    pub fn end(&mut self) -> Result<(), Error> {
        if self.input.take().is_none() {
            return Ok(());
        }
        if let (Source::Channel { .. }, Some(work)) = (&self.source, &self.work_file) {
            std::fs::remove_file(work).map_err(|e| Error::io("unlink", work, e))?;
        }
        Ok(())
    }

    /// The next record, or `None` at the end (or where C would stop).
    pub fn next_item(&mut self) -> Option<Item<'_>> {
        let input = self.input.as_mut()?;
        let mut p = Parser {
            data: input.data.bytes(),
            pos: input.pos,
        };
        let found = p.item(&mut self.kind, &mut self.arg1, &mut self.arg2);
        input.pos = p.pos;
        let has2 =
            match found {
                Some(has2) => has2,
                None => {
                    let left = p.data.len() - p.pos.min(p.data.len());
                    if left > 0 && p.data[p.pos..].iter().any(|b| !b.is_ascii_whitespace()) {
                        log::error!(
                        "IOERROR: sync log parse stopped at a malformed argument, rest not read \
                         file=<{}> offset=<{}> bytes_left=<{left}>",
                        self.work_file.as_deref().unwrap_or(Path::new("(memory)")).display(),
                        p.pos
                    );
                    }
                    input.pos = p.data.len();
                    return None;
                }
            };
        self.kind.make_ascii_uppercase();
        Some(Item {
            kind: &self.kind,
            arg1: &self.arg1,
            arg2: has2.then_some(&self.arg2[..]),
        })
    }

    /// Byte offset reached in the input (for diagnostics).
    pub fn offset(&self) -> usize {
        self.input.as_ref().map_or(0, |i| i.pos)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // As C's sync_log_reader_free: close without unlinking.
        self.input = None;
    }
}

fn open_work_file(work: &Path) -> Result<Input, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(work)
        .map_err(|e| Error::io("open", work, e))?;
    // Serialise with writers that held the lock across the rename; any later
    // writer sees the inode change and goes to the new log.
    whole_file_lock(&file, libc::F_WRLCK).map_err(|e| Error::io("lock", work, e))?;
    whole_file_lock(&file, libc::F_UNLCK).map_err(|e| Error::io("unlock", work, e))?;
    let data = map_or_read(&file).map_err(|e| Error::io("mmap", work, e))?;
    Ok(Input {
        data,
        pos: 0,
        _file: Some(file),
    })
}

fn map_or_read(file: &File) -> io::Result<Data> {
    let meta = file.metadata()?;
    if meta.is_file() {
        if meta.len() == 0 {
            return Ok(Data::Bytes(Vec::new()));
        }
        // SAFETY: the work file is private to this reader once the lock has
        // been taken (writers move on to the new log); a file given with -f
        // must not be truncated while it is read, as with C's reader.
        return Ok(Data::Map(unsafe { Mmap::map(file)? }));
    }
    let mut bytes = Vec::new();
    (&*file).read_to_end(&mut bytes)?;
    Ok(Data::Bytes(bytes))
}

fn read_fd(fd: RawFd) -> Result<Input, Error> {
    let path = Path::new("(fd)");
    // SAFETY: the caller vouches that fd is open; ManuallyDrop keeps it open.
    let file = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    let data = map_or_read(&file).map_err(|e| Error::io("read", path, e))?;
    Ok(Input {
        data,
        pos: 0,
        _file: None,
    })
}

/// C's `isspace` in the C locale.
fn is_space(c: i32) -> bool {
    matches!(c, 0x20 | 0x09..=0x0d)
}

/// The subset of Cyrus's protstream the parser needs.
struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn getc(&mut self) -> i32 {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                i32::from(b)
            }
            None => EOF,
        }
    }

    /// `prot_ungetc`: only ever called with the byte just read.
    fn ungetc(&mut self, c: i32) {
        if c != EOF {
            self.pos -= 1;
        }
    }

    /// `sync_log_reader_getitem`: `Some(has_arg2)` or `None` at EOF.
    fn item(&mut self, kind: &mut Vec<u8>, arg1: &mut Vec<u8>, arg2: &mut Vec<u8>) -> Option<bool> {
        loop {
            let mut c = self.word(kind);
            if c == EOF {
                return None;
            }
            if c == i32::from(b'\r') {
                c = self.getc();
            }
            if c == i32::from(b'\n') {
                continue; // blank line
            }
            if c != i32::from(b' ') {
                log::error!("IOERROR: sync log: invalid input offset=<{}>", self.pos);
                self.eatline(c);
                continue;
            }
            c = self.astring(arg1);
            if c == EOF {
                return None;
            }
            let mut has2 = false;
            if c == i32::from(b' ') {
                c = self.astring(arg2);
                if c == EOF {
                    return None;
                }
                has2 = true;
            }
            if c == i32::from(b'\r') {
                c = self.getc();
            }
            if c != i32::from(b'\n') {
                log::error!(
                    "IOERROR: sync log: garbage at end of input line offset=<{}>",
                    self.pos
                );
                self.eatline(c);
                continue;
            }
            return Some(has2);
        }
    }

    /// `getword`: bytes up to whitespace, a parenthesis or a double quote.
    fn word(&mut self, buf: &mut Vec<u8>) -> i32 {
        buf.clear();
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| is_space(i32::from(b)) || matches!(b, b'(' | b')' | b'"'))
            .unwrap_or(rest.len());
        buf.extend_from_slice(&rest[..n]);
        self.pos += n;
        self.getc()
    }

    /// `getastring`: an atom, a quoted string or a literal. Returns the byte
    /// after it, or EOF when malformed.
    fn astring(&mut self, buf: &mut Vec<u8>) -> i32 {
        buf.clear();
        let c = self.getc();
        match c {
            EOF => EOF,
            0x20 | 0x28 | 0x29 | 0x0d | 0x0a => {
                self.ungetc(c);
                EOF
            }
            0x22 => self.quoted(buf),
            0x7b => self.literal(buf),
            _ => {
                // Atom: the first byte may itself end it (a tab, say).
                self.pos -= 1;
                self.word(buf)
            }
        }
    }

    fn quoted(&mut self, buf: &mut Vec<u8>) -> i32 {
        loop {
            let rest = &self.data[self.pos..];
            let n = rest
                .iter()
                .position(|&b| matches!(b, b'\\' | b'"' | b'\r' | b'\n'))
                .unwrap_or(rest.len());
            buf.extend_from_slice(&rest[..n]);
            self.pos += n;
            let mut c = self.getc();
            if c == i32::from(b'\\') {
                c = self.getc();
            } else if c == i32::from(b'"') {
                return self.getc();
            } else {
                // EOF, CR or LF: unterminated.
                self.ungetc(c);
                return EOF;
            }
            // C stores the byte after a backslash, whatever it is (EOF as 0xff,
            // which the next read then ends).
            buf.push(c as u8);
        }
    }

    fn literal(&mut self, buf: &mut Vec<u8>) -> i32 {
        // getint32
        let mut len: u64 = 0;
        let mut digits = 0;
        let mut c = self.getc();
        while (0x30..=0x39).contains(&c) {
            len = len * 10 + (c - 0x30) as u64;
            digits += 1;
            if len > i32::MAX as u64 {
                // C: fatal("num too big"). Treat as malformed.
                return EOF;
            }
            c = self.getc();
        }
        if digits == 0 {
            self.ungetc(c);
            return EOF;
        }
        if c == i32::from(b'+') {
            c = self.getc();
        }
        for expected in [b'}', b'\r', b'\n'] {
            if expected != b'}' {
                c = self.getc();
            }
            if c != i32::from(expected) {
                self.ungetc(c);
                return EOF;
            }
        }
        let len = len as usize;
        let rest = &self.data[self.pos..];
        if rest.len() < len {
            self.pos = self.data.len();
            return EOF;
        }
        buf.extend_from_slice(&rest[..len]);
        self.pos += len;
        if buf.contains(&0) {
            return EOF; // no embedded NUL
        }
        self.getc()
    }

    /// `eatline`: skip to the end of the line, stepping over non-synchronising
    /// literals (`{N+}`) on the way.
    fn eatline(&mut self, mut c: i32) {
        loop {
            if c == i32::from(b'\n') || c == EOF {
                return;
            }
            if c == i32::from(b'{') {
                c = self.getc();
                let mut size: u64 = 0;
                while (0x30..=0x39).contains(&c) {
                    if size > 429_496_729 || (size == 429_496_729 && c > 0x35) {
                        break;
                    }
                    size = size * 10 + (c - 0x30) as u64;
                    c = self.getc();
                }
                if c != i32::from(b'+') {
                    continue;
                }
                c = self.getc();
                if c != i32::from(b'}') {
                    continue;
                }
                c = self.getc();
                if c == i32::from(b'\r') {
                    c = self.getc();
                }
                if c != i32::from(b'\n') {
                    continue;
                }
                let skip = (size as usize).min(self.data.len() - self.pos);
                self.pos += skip;
                if skip < size as usize {
                    return;
                }
            }
            c = self.getc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Owned = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

    fn items(content: &[u8]) -> Vec<Owned> {
        let mut r = Reader::for_content(content.to_vec());
        assert_eq!(r.begin().unwrap(), Begun::Ready);
        let mut out = Vec::new();
        while let Some(i) = r.next_item() {
            out.push((i.kind.to_vec(), i.arg1.to_vec(), i.arg2.map(<[u8]>::to_vec)));
        }
        out
    }

    fn one(k: &str, a: &[u8]) -> Owned {
        (k.as_bytes().to_vec(), a.to_vec(), None)
    }

    fn two(k: &str, a: &[u8], b: &[u8]) -> Owned {
        (k.as_bytes().to_vec(), a.to_vec(), Some(b.to_vec()))
    }

    #[test]
    fn grammar() {
        assert_eq!(
            items(b"user fred\r\n\n\nMAILBOX \"a b\"\n"),
            vec![one("USER", b"fred"), one("MAILBOX", b"a b")]
        );
        assert_eq!(
            items(b"SEEN fred {3+}\r\na b\n"),
            vec![two("SEEN", b"fred", b"a b")]
        );
        assert_eq!(
            items(b"SEEN fred {3}\r\na b\n"),
            vec![two("SEEN", b"fred", b"a b")]
        );
        assert_eq!(items(b"X \"a\\\"b\\\\\"\n"), vec![one("X", b"a\"b\\")]);
        // no trailing newline: C's getastring returns EOF at end of input
        assert_eq!(items(b"USER fred"), vec![]);
        // a type with no argument is skipped silently, as in C
        assert_eq!(items(b"USER\nUSER b\n"), vec![one("USER", b"b")]);
    }

    #[test]
    fn bad_lines_skipped_like_c() {
        assert_eq!(items(b"USER(x) y\nUSER ok\n"), vec![one("USER", b"ok")]);
        assert_eq!(items(b"USER a b c\nUSER ok\n"), vec![one("USER", b"ok")]);
        // eatline steps over a non-synchronising literal containing a newline
        assert_eq!(
            items(b"USER a b {4+}\r\nx\nyz\nUSER ok\n"),
            vec![one("USER", b"ok")]
        );
        // a malformed string stops the stream, as in C
        assert_eq!(
            items(b"USER ok\nUSER  x\nUSER lost\n"),
            vec![one("USER", b"ok")]
        );
        assert_eq!(items(b"USER \"open\nUSER lost\n"), vec![]);
        assert_eq!(items(b"USER {2}\r\na\0\nUSER lost\n"), vec![]);
        assert_eq!(items(b"USER {99999999999}\r\n"), vec![]);
    }
}
