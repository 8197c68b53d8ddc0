//! The read side: C's `sync_log_reader_*`.
//!
//! The parser is a port of `sync_log_reader_getitem` with the IMAP helpers
//! it uses (`getword`, `getastring`, `eatline`), so a well-formed file gives
//! the same item stream here as in C. Where C loses data cyrsync does not
//! (deliberate differences, listed in README and the 0002 header):
//!
//! - a malformed or torn line is *set aside*, never the end of the stream:
//!   its bytes are logged (offset, length), appended to `log-bad` beside a
//!   channel's log for the admin, and parsing goes on at the next line (C
//!   stops at a malformed string argument and then unlinks the rest);
//! - `end` unlinks a channel's `log-run` only when it was read to the end
//!   and everything set aside was saved; otherwise it keeps it for the next
//!   run and says so ([`Error::Kept`]);
//! - the input is read with `read(2)` in chunks, never mapped: a file that
//!   shrinks while it is read, or a disk that fails, is an error status, not
//!   a SIGBUS (the parse still runs at several hundred MB/s);
//! - one reader per channel: `begin` takes a `flock` on the channel's
//!   directory for the reader's life, and a second reader gets
//!   [`Error::Busy`] and touches nothing.
//!
//! Where C would `fatal()` or crash (a number too big in a literal, a
//! synchronising literal with no output stream) the line is set aside too.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::writer::whole_file_lock;
use super::{bad_path, log_path, work_path, Error};

/// One record: `kind` upper-cased, one or two arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item<'a> {
    pub kind: &'a [u8],
    pub arg1: &'a [u8],
    pub arg2: Option<&'a [u8]>,
}

/// What [`Reader::next_entry`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    Item(Item<'a>),
    /// A line that does not parse (`len` bytes at `offset` of the input) was
    /// logged, saved to `log-bad` (channel readers) and skipped.
    SetAside {
        offset: u64,
        len: usize,
    },
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

/// How much is read at a time (more when one record is longer).
const CHUNK: usize = 1 << 20;

/// The input of one begin/end cycle: a window `buf` on the bytes from file
/// offset `base`, refilled by `read` as the parse reaches its end.
#[derive(Debug)]
struct Input {
    buf: Vec<u8>,
    /// Where the next item starts in `buf`.
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    /// Where more bytes come from; `None` once everything is in `buf`.
    more: Option<Feed>,
    /// The end of the input was reached without an error.
    finished: bool,
}

#[derive(Debug)]
struct Feed {
    /// The work file (kept open, as C does, until `end`) or the caller's fd.
    file: std::mem::ManuallyDrop<File>,
    /// Whether `file` is ours to close.
    owned: bool,
    /// The size at `begin` (regular files), to tell a file that shrank
    /// while it was read from one that ended.
    expected: Option<u64>,
    read: u64,
}

impl Drop for Feed {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: dropped once, here; never used again.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.file) };
        }
    }
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
    /// The channel directory, `flock`ed for the reader's life.
    channel_lock: Option<File>,
    kind: Vec<u8>,
    arg1: Vec<u8>,
    arg2: Vec<u8>,
    set_aside: usize,
    /// Something set aside could not be saved: `end` keeps `log-run`.
    unsaved: bool,
}

/// What one step of the parse produced (no borrows, so callers can loop).
enum Step {
    Item { has2: bool },
    SetAside { offset: u64, len: usize },
}

const EOF: i32 = -1;

impl Reader {
    fn with(source: Source, work_file: Option<PathBuf>) -> Self {
        Reader {
            source,
            work_file,
            input: None,
            channel_lock: None,
            kind: Vec::new(),
            arg1: Vec::new(),
            arg2: Vec::new(),
            set_aside: 0,
            unsaved: false,
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
    /// but never closed.
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

    /// Whether the current input was read to its end without an error.
    pub fn finished(&self) -> bool {
        self.input.as_ref().is_some_and(|i| i.finished)
    }

    /// How many lines were set aside since this reader was created.
    pub fn set_aside_count(&self) -> usize {
        self.set_aside
    }

    /// Start reading, as `sync_log_reader_begin`: a channel reader first
    /// reprocesses a `log-run` left by an earlier run, otherwise renames
    /// `log` to `log-run` (or answers [`Begun::NoLog`]); then it takes and
    /// drops the file lock once, which waits out any writer that opened the
    /// file before the rename.
    ///
    /// A channel reader first takes the channel (see the module docs):
    /// [`Error::Busy`] when another reader has it. A reader still active is
    /// closed first *without* unlinking its work file (C's `begin` ends it,
    /// unlinking what may not have been processed).
    pub fn begin(&mut self) -> Result<Begun, Error> {
        if self.input.take().is_some() {
            log::warn!(
                "sync log reader begun again before end: keeping file=<{}> for the next run",
                self.work_file
                    .as_deref()
                    .unwrap_or(Path::new("(memory)"))
                    .display()
            );
        }
        let input = match &self.source {
            Source::Content(bytes) => Input::whole(bytes.clone()),
            Source::Fd(fd) => {
                // SAFETY: the caller vouches that fd is open; the feed does
                // not own it and never closes it.
                let file = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(*fd) });
                Input::feed(file, false).map_err(|e| Error::io("fstat", Path::new("(fd)"), e))?
            }
            Source::File | Source::Channel { .. } => {
                let work = self
                    .work_file
                    .clone()
                    .expect("file readers have a work file");
                if let Source::Channel { log } = &self.source {
                    if self.channel_lock.is_none() {
                        match lock_channel(log)? {
                            Some(dir) => self.channel_lock = Some(dir),
                            // No directory: neither a log nor a log-run.
                            None => return Ok(Begun::NoLog),
                        }
                    }
                }
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
        self.unsaved = false;
        Ok(Begun::Ready)
    }

    /// Finish reading, as `sync_log_reader_end`: close the input and, for a
    /// channel reader, unlink the work file — but only if it was read to the
    /// end and every line set aside was saved; otherwise the file stays for
    /// the next run and this returns [`Error::Kept`]. A no-op when not
    /// active.
    pub fn end(&mut self) -> Result<(), Error> {
        let Some(input) = self.input.take() else {
            return Ok(());
        };
        let (Source::Channel { .. }, Some(work)) = (&self.source, &self.work_file) else {
            return Ok(());
        };
        let why = if !input.finished {
            Some("not read to the end")
        } else if self.unsaved {
            Some("a line set aside could not be saved")
        } else {
            None
        };
        drop(input);
        if let Some(why) = why {
            return Err(Error::Kept {
                path: work.clone(),
                why,
            });
        }
        std::fs::remove_file(work).map_err(|e| Error::io("unlink", work, e))
    }

    /// The next record or set-aside line; `Ok(None)` at the end of the
    /// input. An error (a read that failed, a file that shrank) ends this
    /// input: `end` then keeps a channel's work file.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_>>, Error> {
        Ok(self.step()?.map(|step| match step {
            Step::Item { has2 } => Entry::Item(self.item(has2)),
            Step::SetAside { offset, len } => Entry::SetAside { offset, len },
        }))
    }

    /// The next record, stepping over set-aside lines; `None` at the end or
    /// after an error (logged; see [`Reader::finished`]).
    pub fn next_item(&mut self) -> Option<Item<'_>> {
        loop {
            match self.step() {
                Ok(Some(Step::Item { has2 })) => return Some(self.item(has2)),
                Ok(Some(Step::SetAside { .. })) => continue,
                Ok(None) => return None,
                Err(e) => {
                    log::error!("IOERROR: sync log read stopped: {e}");
                    return None;
                }
            }
        }
    }

    fn item(&self, has2: bool) -> Item<'_> {
        Item {
            kind: &self.kind,
            arg1: &self.arg1,
            arg2: has2.then_some(&self.arg2[..]),
        }
    }

    fn step(&mut self) -> Result<Option<Step>, Error> {
        let Some(input) = self.input.as_mut() else {
            return Ok(None);
        };
        loop {
            let more = input.more.is_some();
            let mut p = Parser {
                data: &input.buf[input.pos..],
                pos: 0,
                touched_end: false,
            };
            let line = p.line(&mut self.kind, &mut self.arg1, &mut self.arg2);
            if p.touched_end && more {
                // The parse needs bytes past the window: read, parse again.
                let path = self.work_file.as_deref().unwrap_or(Path::new("(fd)"));
                if let Err(e) = input.fill() {
                    input.more = None;
                    return Err(Error::io("read", path, e));
                }
                continue;
            }
            let start = input.pos;
            input.pos += p.pos;
            let offset = input.base + start as u64;
            match line {
                Line::Blank => continue,
                Line::End => {
                    input.finished = true;
                    return Ok(None);
                }
                Line::Item { has2 } => {
                    self.kind.make_ascii_uppercase();
                    return Ok(Some(Step::Item { has2 }));
                }
                Line::Bad(_)
                    if input.buf[start..input.pos]
                        .iter()
                        .all(u8::is_ascii_whitespace) =>
                {
                    // only white space left on a line: nothing to keep (C
                    // stops there silently)
                    continue;
                }
                Line::Bad(why) => {
                    let bytes = &input.buf[start..input.pos];
                    let len = bytes.len();
                    self.set_aside += 1;
                    if !set_aside(&self.source, self.work_file.as_deref(), offset, bytes, why) {
                        self.unsaved = true;
                    }
                    return Ok(Some(Step::SetAside { offset, len }));
                }
            }
        }
    }

    /// Byte offset reached in the input (for diagnostics).
    pub fn offset(&self) -> u64 {
        self.input.as_ref().map_or(0, |i| i.base + i.pos as u64)
    }
}

impl Input {
    fn whole(buf: Vec<u8>) -> Input {
        Input {
            buf,
            pos: 0,
            base: 0,
            more: None,
            finished: false,
        }
    }

    fn feed(file: std::mem::ManuallyDrop<File>, owned: bool) -> io::Result<Input> {
        let meta = file.metadata()?;
        let feed = Feed {
            file,
            owned,
            expected: meta.is_file().then_some(meta.len()),
            read: 0,
        };
        let mut input = Input::whole(Vec::new());
        feed.expected
            .inspect(|&n| input.buf.reserve((n as usize).min(CHUNK)));
        input.more = Some(feed);
        Ok(input)
    }

    /// Drop what was parsed and read the next chunk. At the end of the file
    /// `more` becomes `None`; a regular file that ended before the size it
    /// had at `begin` is an error (it was truncated while read).
    fn fill(&mut self) -> io::Result<()> {
        let Some(feed) = self.more.as_mut() else {
            return Ok(());
        };
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        let want = CHUNK.max(self.buf.len());
        let old = self.buf.len();
        self.buf.resize(old + want, 0);
        let n = loop {
            match (&*feed.file).read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        feed.read += n as u64;
        if n == 0 {
            let shrank = feed.expected.filter(|&e| feed.read < e);
            self.more = None;
            if let Some(expected) = shrank {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "file shrank while read: ended at {} of {expected} bytes",
                        self.base + self.buf.len() as u64
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Take the channel for this reader: an exclusive, non-blocking `flock` on
/// the channel's directory. `Ok(None)` when the directory does not exist
/// (no log yet). A file system without `flock` is logged and read without
/// the lock, as C does.
fn lock_channel(log: &Path) -> Result<Option<File>, Error> {
    let dir = log.parent().unwrap_or(Path::new("."));
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", dir, e)),
    };
    loop {
        // SAFETY: a valid descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(file));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => {
                return Err(Error::Busy {
                    path: dir.to_path_buf(),
                })
            }
            _ => {
                log::warn!(
                    "sync log reader: cannot lock the channel, another reader would not be \
                     stopped dir=<{}> error=<{e}>",
                    dir.display()
                );
                return Ok(Some(file));
            }
        }
    }
}

/// Log a line that does not parse and, for a channel, append it to the
/// channel's `log-bad` (durably). Returns whether the bytes are safe:
/// saved, or in a file that is never unlinked.
fn set_aside(source: &Source, work: Option<&Path>, offset: u64, bytes: &[u8], why: &str) -> bool {
    let file = work.unwrap_or(Path::new("(memory)"));
    let shown = &bytes[..bytes.len().min(200)];
    let Source::Channel { log } = source else {
        log::error!(
            "SYNCERROR: sync log line set aside: {why} file=<{}> offset=<{offset}> bytes=<{}> \
             text=<{}>",
            file.display(),
            bytes.len(),
            shown.escape_ascii()
        );
        return true;
    };
    let bad = bad_path(log);
    let saved = save_bad(&bad, bytes);
    match &saved {
        Ok(()) => log::error!(
            "SYNCERROR: sync log line set aside: {why} file=<{}> offset=<{offset}> bytes=<{}> \
             saved_to=<{}> text=<{}>",
            file.display(),
            bytes.len(),
            bad.display(),
            shown.escape_ascii()
        ),
        Err(e) => log::error!(
            "IOERROR: sync log line set aside but not saved, the work file is kept: {why} \
             file=<{}> offset=<{offset}> bytes=<{}> error=<{e}> text=<{}>",
            file.display(),
            bytes.len(),
            shown.escape_ascii()
        ),
    }
    saved.is_ok()
}

fn save_bad(bad: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(bad)?;
    let mut line = bytes.to_vec();
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    let before = f.metadata()?.len();
    if let Err(e) = f.write_all(&line).and_then(|()| f.sync_data()) {
        // leave no half line behind for the next one to run into
        let _ = f.set_len(before);
        return Err(e);
    }
    Ok(())
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
    Input::feed(std::mem::ManuallyDrop::new(file), true).map_err(|e| Error::io("fstat", work, e))
}

/// C's `isspace` in the C locale.
fn is_space(c: i32) -> bool {
    matches!(c, 0x20 | 0x09..=0x0d)
}

/// What one line of input was.
enum Line {
    /// Only blank lines were left: the end of the input.
    End,
    /// An empty line (skipped, as in C).
    Blank,
    Item {
        has2: bool,
    },
    /// A line that does not parse, consumed up to and with its newline.
    Bad(&'static str),
}

/// The subset of Cyrus's protstream the parser needs, over a window of the
/// input. `touched_end` records that the parse looked past the window, so
/// that its result is only final when nothing more can be read.
struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    touched_end: bool,
}

impl Parser<'_> {
    fn getc(&mut self) -> i32 {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                i32::from(b)
            }
            None => {
                self.touched_end = true;
                EOF
            }
        }
    }

    /// `prot_ungetc`: only ever called with the byte just read.
    fn ungetc(&mut self, c: i32) {
        if c != EOF {
            self.pos -= 1;
        }
    }

    /// One line of `sync_log_reader_getitem`: the same items as C for every
    /// line C accepts; the lines C skips or stops at are [`Line::Bad`],
    /// consumed up to the next newline.
    fn line(&mut self, kind: &mut Vec<u8>, arg1: &mut Vec<u8>, arg2: &mut Vec<u8>) -> Line {
        let mut c = self.word(kind);
        if c == EOF {
            return if kind.is_empty() {
                Line::End
            } else {
                Line::Bad("torn line at the end of the input")
            };
        }
        if c == i32::from(b'\r') {
            c = self.getc();
        }
        if c == i32::from(b'\n') {
            // C skips a type with no argument as silently as a blank line.
            return if kind.is_empty() {
                Line::Blank
            } else {
                Line::Bad("no argument")
            };
        }
        if c != i32::from(b' ') {
            self.eatline(c);
            return Line::Bad("invalid input");
        }
        c = self.astring(arg1);
        if c == EOF {
            return self.resync("malformed argument");
        }
        let mut has2 = false;
        if c == i32::from(b' ') {
            c = self.astring(arg2);
            if c == EOF {
                return self.resync("malformed argument");
            }
            has2 = true;
        }
        if c == i32::from(b'\r') {
            c = self.getc();
        }
        if c == EOF {
            return Line::Bad("torn line at the end of the input");
        }
        if c != i32::from(b'\n') {
            self.eatline(c);
            return Line::Bad("garbage at end of line");
        }
        Line::Item { has2 }
    }

    /// Where C stops reading for good: skip to just past the next newline.
    fn resync(&mut self, why: &'static str) -> Line {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => self.pos += n + 1,
            None => {
                self.pos = self.data.len();
                self.touched_end = true;
            }
        }
        Line::Bad(why)
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
            self.touched_end = true;
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
                    self.touched_end = true;
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

    /// Every entry, set-aside lines as `("!", bytes at their offset)`.
    fn entries(content: &[u8]) -> Vec<Owned> {
        let mut r = Reader::for_content(content.to_vec());
        assert_eq!(r.begin().unwrap(), Begun::Ready);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            out.push(match e {
                Entry::Item(i) => (i.kind.to_vec(), i.arg1.to_vec(), i.arg2.map(<[u8]>::to_vec)),
                Entry::SetAside { offset, len } => {
                    let o = offset as usize;
                    one("!", &content[o..o + len])
                }
            });
        }
        assert!(r.finished());
        out
    }

    #[test]
    fn bad_lines_are_set_aside_and_reading_goes_on() {
        // lines C skips (with eatline, stepping over {N+} literals)
        assert_eq!(
            entries(b"USER(x) y\nUSER ok\n"),
            vec![one("!", b"USER(x) y\n"), one("USER", b"ok")]
        );
        assert_eq!(
            entries(b"USER a b c\nUSER ok\n"),
            vec![one("!", b"USER a b c\n"), one("USER", b"ok")]
        );
        assert_eq!(
            entries(b"USER a b {4+}\r\nx\nyz\nUSER ok\n"),
            vec![one("!", b"USER a b {4+}\r\nx\nyz\n"), one("USER", b"ok")]
        );
        // lines where C stops for good (and then unlinks the rest)
        assert_eq!(
            entries(b"USER ok\nUSER  x\nUSER kept\n"),
            vec![
                one("USER", b"ok"),
                one("!", b"USER  x\n"),
                one("USER", b"kept")
            ]
        );
        assert_eq!(
            entries(b"USER \"open\nUSER kept\n"),
            vec![one("!", b"USER \"open\n"), one("USER", b"kept")]
        );
        assert_eq!(
            entries(b"USER {2}\r\na\0\nUSER kept\n"),
            vec![one("!", b"USER {2}\r\na\0\n"), one("USER", b"kept")]
        );
        assert_eq!(
            entries(b"USER {99999999999}\r\nUSER kept\n"),
            vec![one("!", b"USER {99999999999}\r\n"), one("USER", b"kept")]
        );
        // a type with no argument, and a torn last line
        assert_eq!(
            entries(b"USER\nUSER b\nMAILBOX \"us"),
            vec![
                one("!", b"USER\n"),
                one("USER", b"b"),
                one("!", b"MAILBOX \"us")
            ]
        );
        // white space alone is nothing to keep
        assert_eq!(entries(b"USER a\n  \n \t"), vec![one("USER", b"a")]);
    }

    #[test]
    fn next_item_steps_over_set_aside_lines() {
        assert_eq!(
            items(b"USER ok\nUSER  x\nUSER kept\n"),
            vec![one("USER", b"ok"), one("USER", b"kept")]
        );
        assert_eq!(
            items(b"USER \"open\nUSER kept\n"),
            vec![one("USER", b"kept")]
        );
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cyrsync-reader-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn records_across_read_chunks() {
        // names long enough that records straddle every chunk boundary,
        // and a literal bigger than a chunk
        let dir = scratch("chunks");
        let file = dir.join("log");
        let mut content = Vec::new();
        let mut want = Vec::new();
        let mut n = 0;
        while content.len() < 3 * CHUNK + 1000 {
            let name = format!("user.{n}.{}", "x".repeat(n % 997));
            content.extend_from_slice(format!("APPEND \"{name}\"\n").as_bytes());
            want.push(one("APPEND", name.as_bytes()));
            n += 1;
        }
        let big = vec![b'z'; CHUNK + 17];
        content.extend_from_slice(format!("SEEN fred {{{}+}}\r\n", big.len()).as_bytes());
        content.extend_from_slice(&big);
        content.extend_from_slice(b"\nUSER last\n");
        want.push(two("SEEN", b"fred", &big));
        want.push(one("USER", b"last"));
        std::fs::write(&file, &content).unwrap();
        let mut r = Reader::for_file(&file);
        r.begin().unwrap();
        let mut got = Vec::new();
        while let Some(i) = r.next_item() {
            got.push((i.kind.to_vec(), i.arg1.to_vec(), i.arg2.map(<[u8]>::to_vec)));
        }
        assert!(r.finished());
        assert_eq!(got.len(), want.len());
        assert!(got == want);
        assert_eq!(items(&content).len(), want.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn channel_reader_saves_bad_lines_and_keeps_what_it_did_not_finish() {
        let dir = scratch("channel");
        let log = log_path(&dir, Some(b"c")).unwrap();
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, b"USER a\nUSER \"torn\nUSER b\n").unwrap();
        let mut r = Reader::for_channel(&dir, Some(b"c")).unwrap();
        assert_eq!(r.begin().unwrap(), Begun::Ready);
        assert_eq!(r.next_item().unwrap().arg1, b"a");
        // ended early: log-run stays
        assert!(matches!(r.end(), Err(Error::Kept { .. })));
        assert!(work_path(&log).exists());
        // a second reader of the channel is refused while this one lives
        let mut other = Reader::for_channel(&dir, Some(b"c")).unwrap();
        assert!(matches!(other.begin(), Err(Error::Busy { .. })));
        // the next run reprocesses log-run, sets the torn line aside
        assert_eq!(r.begin().unwrap(), Begun::Ready);
        let mut got = Vec::new();
        while let Some(i) = r.next_item() {
            got.push(i.arg1.to_vec());
        }
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(r.set_aside_count(), 1);
        r.end().unwrap();
        assert!(!work_path(&log).exists());
        assert_eq!(std::fs::read(bad_path(&log)).unwrap(), b"USER \"torn\n");
        drop(r);
        // the channel is free again
        assert_eq!(other.begin().unwrap(), Begun::NoLog);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
