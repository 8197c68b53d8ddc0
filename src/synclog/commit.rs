//! Group commit: one `fdatasync` for every writer waiting on it.
//!
//! Every append must be on disk before it returns. Without coordination each
//! writer pays for its own flush; with it, writers that append while a flush
//! is running wait for the next one, which one of them (the *leader*) makes
//! for all: a busy server turns N flushes into one.
//!
//! The shared state is a small file beside the channel's log, `log-commit`
//! (4 KiB, fully allocated, created with the log's owner and mode), mapped by
//! every writer process. It holds a few *entries*, one per log inode in use
//! (the reader renames `log` to `log-run` while writers may still be
//! finishing records in it, so two inodes can be live at once):
//!
//! ```text
//! entry (64 bytes, one cache line)
//!   0  ino       the log inode this entry counts for; 0 empty, MAX claiming
//!   8  written   tag:16 | records written to that inode (count:48)
//!  16  flushed   tag:16 | count a completed fdatasync covered
//!  24  failed    tag:16 | first count a failed fdatasync may not have covered
//!  32  leader    pid:32 | ms clock when it started to flush; 0 none
//!  40  wake      futex word, bumped after every flush
//!  44  waiters   how many sleep on `wake`
//!  48  errno     the error of the last failed flush
//!  56  used      seconds clock of the last ticket (to pick an entry to reuse)
//! ```
//!
//! Protocol. After its `write` returned, still under the file lock, a writer
//! takes a *ticket*: the entry of its inode, the entry's tag and the next
//! count (`written` + 1, one atomic add). It releases the lock and waits
//! until `flushed` covers its count — becoming the leader if nobody flushes:
//! the leader loads `written`, calls `fdatasync` on its own descriptor of
//! the inode, and publishes what it loaded (every record counted before was
//! fully written before the flush began). A failed flush is published as
//! `failed`: every record it was to cover, and later ones of that tag,
//! return the error (the next writer starts a fresh tag).
//!
//! The tag (bumped whenever an entry is reset or reused) makes every publish
//! and every check specific to one inode's accounting: a flush of `log-run`
//! is never counted for records of the new `log`. Whenever a waiter cannot
//! be sure — its entry was reused, the tag moved on, the leader looks dead
//! (no progress for [`LEADER_STALE`]), or it waited [`WAIT_BOUND`] — it
//! makes its own `fdatasync` on its own descriptor: never later than that,
//! and never wrong. C writers flush for themselves under the lock and never
//! touch this file; nothing of theirs is counted here.
//!
//! The fast path of a lone writer is its one `fdatasync` (it is its own
//! leader; nobody to wake); followers sleep on a futex instead of flushing.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::barrier::kernel::{futex_wait, futex_wake_all, Mapping};

const SIZE: usize = 4096;
const MAGIC: u64 = u64::from_le_bytes(*b"CYRSGC01");
const ENTRIES_AT: usize = 64;
const ENTRY_SIZE: usize = 64;
const ENTRIES: usize = 8;
const CLAIMING: u64 = u64::MAX;
const COUNT_BITS: u32 = 48;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// A leader that has not published for this long is taken for dead: another
/// writer takes over (a slow but live one only costs a second flush).
pub const LEADER_STALE: Duration = Duration::from_millis(500);
/// No writer waits for others longer than this before flushing itself.
pub const WAIT_BOUND: Duration = Duration::from_secs(2);

fn tag(word: u64) -> u64 {
    word >> COUNT_BITS
}

fn count(word: u64) -> u64 {
    word & COUNT_MASK
}

fn word(tag: u64, count: u64) -> u64 {
    (tag << COUNT_BITS) | (count & COUNT_MASK)
}

/// The mapped `log-commit` of one channel.
pub struct GroupCommit {
    map: Mapping,
    path: PathBuf,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("path", &self.path)
            .finish()
    }
}

/// A writer's place in its inode's count of records.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    entry: usize,
    ino: u64,
    tag: u64,
    count: u64,
}

struct Entry<'a> {
    ino: &'a AtomicU64,
    written: &'a AtomicU64,
    flushed: &'a AtomicU64,
    failed: &'a AtomicU64,
    leader: &'a AtomicU64,
    wake: &'a AtomicU32,
    waiters: &'a AtomicU32,
    errno: &'a AtomicU32,
    used: &'a AtomicU64,
}

/// Milliseconds of the monotonic clock, as a u32 that wraps (compared with
/// wrapping arithmetic); never 0 so that a leader word is never empty.
fn now_ms() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let ms = (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000;
    (ms as u32).max(1)
}

fn leader_word() -> u64 {
    (u64::from(std::process::id()) << 32) | u64::from(now_ms())
}

fn leader_stale(word: u64) -> bool {
    let since = now_ms().wrapping_sub(word as u32);
    u128::from(since) > LEADER_STALE.as_millis()
}

impl GroupCommit {
    /// Open (creating if needed) the `log-commit` beside `log`, which must
    /// exist: the new file takes its owner and mode. `Ok(None)` when the
    /// file there is not ours (another magic): it is never rewritten, and
    /// the caller flushes each record itself.
    pub fn open(log: &Path) -> io::Result<Option<GroupCommit>> {
        let path = log.with_file_name("log-commit");
        let meta = std::fs::metadata(log)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(meta.mode() & 0o666)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        let mine = file.metadata()?;
        // SAFETY: plain syscalls on a descriptor we own.
        unsafe {
            if libc::geteuid() == 0 && (mine.uid() != meta.uid() || mine.gid() != meta.gid()) {
                // root made it: give it to the log's owner, as Cyrus's own
                // processes must map it too
                libc::fchown(file.as_raw_fd(), meta.uid(), meta.gid());
            }
        }
        if mine.len() < SIZE as u64 {
            // every block allocated now: a store to the mapping can never
            // need one later (which on a full disk is SIGBUS)
            // SAFETY: valid descriptor; only extends the file.
            let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, SIZE as libc::off_t) };
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
        }
        let map = Mapping::new(&file, SIZE)?;
        let magic = map.u64_at(0);
        match magic.compare_exchange(0, MAGIC, SeqCst, SeqCst) {
            Ok(_) => {}
            Err(MAGIC) => {}
            Err(_) => return Ok(None),
        }
        Ok(Some(GroupCommit { map, path }))
    }

    fn entry(&self, i: usize) -> Entry<'_> {
        let at = ENTRIES_AT + i * ENTRY_SIZE;
        Entry {
            ino: self.map.u64_at(at),
            written: self.map.u64_at(at + 8),
            flushed: self.map.u64_at(at + 16),
            failed: self.map.u64_at(at + 24),
            leader: self.map.u64_at(at + 32),
            wake: self.map.u32_at(at + 40),
            waiters: self.map.u32_at(at + 44),
            errno: self.map.u32_at(at + 48),
            used: self.map.u64_at(at + 56),
        }
    }

    /// Reset entry `i` (whose `ino` the caller set to CLAIMING) for `ino`,
    /// with a new tag: nothing counted before is ever matched again.
    fn reset(&self, i: usize, ino: u64) {
        let e = self.entry(i);
        let t = (tag(e.written.load(SeqCst)) + 1) & 0xffff;
        e.written.store(word(t, 0), SeqCst);
        e.flushed.store(word(t, 0), SeqCst);
        e.failed.store(word(t, 0), SeqCst);
        e.leader.store(0, SeqCst);
        e.ino.store(ino, SeqCst);
        // waiters of the old accounting re-check and flush for themselves
        e.wake.fetch_add(1, SeqCst);
        futex_wake_all(e.wake);
    }

    /// The entry counting for `ino`, claimed (the emptiest or least recently
    /// used) if there is none.
    fn entry_of(&self, ino: u64) -> Option<usize> {
        if let Some(i) = (0..ENTRIES).find(|&i| self.entry(i).ino.load(SeqCst) == ino) {
            return Some(i);
        }
        let mut order: Vec<usize> = (0..ENTRIES).collect();
        order.sort_by_key(|&i| {
            let e = self.entry(i);
            (e.ino.load(SeqCst) != 0, e.used.load(SeqCst))
        });
        for i in order {
            let e = self.entry(i);
            let old = e.ino.load(SeqCst);
            if old != CLAIMING
                && e.ino
                    .compare_exchange(old, CLAIMING, SeqCst, SeqCst)
                    .is_ok()
            {
                self.reset(i, ino);
                return Some(i);
            }
        }
        None
    }

    /// Count a record just written (its `write` returned) to inode `ino`.
    /// Call under the log's file lock. `None`: flush for yourself.
    pub fn ticket(&self, ino: u64) -> Option<Ticket> {
        let i = self.entry_of(ino)?;
        let e = self.entry(i);
        let before = e.written.load(SeqCst);
        let failed = e.failed.load(SeqCst);
        if tag(failed) == tag(before) && count(failed) != 0 {
            // the last flush of this accounting failed: start afresh, so
            // this record is not counted as failed with the earlier ones
            if e.ino
                .compare_exchange(ino, CLAIMING, SeqCst, SeqCst)
                .is_ok()
            {
                self.reset(i, ino);
            }
        }
        let w = e.written.fetch_add(1, SeqCst) + 1;
        e.used.store(u64::from(now_ms() / 1000), SeqCst);
        if e.ino.load(SeqCst) != ino {
            return None; // reused under us: the count is not ours
        }
        Some(Ticket {
            entry: i,
            ino,
            tag: tag(w),
            count: count(w),
        })
    }

    /// Wait until the record of `ticket` is on disk: covered by someone's
    /// flush, by one this writer makes as leader, or by `flush` (its own
    /// `fdatasync` of the inode) when the group cannot be trusted.
    pub fn wait(&self, ticket: Ticket, flush: impl Fn() -> io::Result<()>) -> io::Result<()> {
        let e = self.entry(ticket.entry);
        let start = Instant::now();
        loop {
            let seen = e.wake.load(SeqCst);
            if e.ino.load(SeqCst) != ticket.ino {
                return flush();
            }
            let failed = e.failed.load(SeqCst);
            if tag(failed) == ticket.tag && count(failed) != 0 && ticket.count >= count(failed) {
                return Err(io::Error::from_raw_os_error(e.errno.load(SeqCst) as i32));
            }
            let flushed = e.flushed.load(SeqCst);
            if tag(flushed) != ticket.tag {
                return flush();
            }
            if count(flushed) >= ticket.count {
                return Ok(());
            }
            if start.elapsed() >= WAIT_BOUND {
                return flush();
            }
            let leader = e.leader.load(SeqCst);
            if (leader == 0 || leader_stale(leader))
                && e.leader
                    .compare_exchange(leader, leader_word(), SeqCst, SeqCst)
                    .is_ok()
            {
                self.lead(&e, ticket.tag, &flush);
                continue;
            }
            e.waiters.fetch_add(1, SeqCst);
            let left = WAIT_BOUND.saturating_sub(start.elapsed());
            futex_wait(e.wake, seen, left.min(LEADER_STALE));
            e.waiters.fetch_sub(1, SeqCst);
        }
    }

    /// Flush for everyone counted so far, publish the outcome, wake them.
    fn lead(&self, e: &Entry<'_>, ticket_tag: u64, flush: &impl Fn() -> io::Result<()>) {
        let target = e.written.load(SeqCst);
        let before = e.flushed.load(SeqCst);
        let outcome = flush();
        if tag(target) == ticket_tag && tag(before) == ticket_tag {
            match &outcome {
                Ok(()) => {
                    let _ = e.flushed.fetch_update(SeqCst, SeqCst, |cur| {
                        (tag(cur) == ticket_tag && count(cur) < count(target)).then_some(target)
                    });
                }
                Err(err) => {
                    e.errno
                        .store(err.raw_os_error().unwrap_or(libc::EIO) as u32, SeqCst);
                    let first = count(before) + 1;
                    let _ = e.failed.fetch_update(SeqCst, SeqCst, |cur| {
                        let keep = tag(cur) == ticket_tag && count(cur) != 0 && count(cur) <= first;
                        (tag(cur) == ticket_tag && !keep).then_some(word(ticket_tag, first))
                    });
                }
            }
        }
        // let go (unless someone took over a leadership it thought dead)
        let mine = e.leader.load(SeqCst);
        if mine >> 32 == u64::from(std::process::id()) {
            let _ = e.leader.compare_exchange(mine, 0, SeqCst, SeqCst);
        }
        e.wake.fetch_add(1, SeqCst);
        if e.waiters.load(SeqCst) > 0 {
            futex_wake_all(e.wake);
        }
    }
}

/// A writer's lazily opened [`GroupCommit`] for one log: opened after the
/// first record is written (the log's owner and mode are then known), and
/// `None` for good when the file cannot be used (each record is then
/// flushed by its writer, as before).
#[derive(Debug, Default)]
pub struct GroupCell(std::sync::OnceLock<Option<GroupCommit>>);

impl GroupCell {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn get(&self, log: &Path) -> Option<&GroupCommit> {
        if let Some(g) = self.0.get() {
            return g.as_ref();
        }
        let opened = match GroupCommit::open(log) {
            Ok(Some(g)) => Some(g),
            Ok(None) => {
                log::warn!(
                    "sync log: {} is not a group-commit file of this version; each record is \
                     flushed by its writer",
                    log.with_file_name("log-commit").display()
                );
                None
            }
            Err(e) => {
                log::warn!(
                    "sync log: no group commit, each record is flushed by its writer \
                     file=<{}> error=<{e}>",
                    log.with_file_name("log-commit").display()
                );
                None
            }
        };
        self.0.get_or_init(|| opened).as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Barrier};

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cyrsync-gc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("log"), b"").unwrap();
        dir
    }

    #[test]
    fn one_flush_covers_everyone_counted_before_it() {
        let dir = scratch("batch");
        let gc = GroupCommit::open(&dir.join("log")).unwrap().unwrap();
        let tickets: Vec<Ticket> = (0..5).map(|_| gc.ticket(42).unwrap()).collect();
        let flushes = AtomicUsize::new(0);
        for t in &tickets {
            gc.wait(*t, || {
                flushes.fetch_add(1, SeqCst);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(
            flushes.load(SeqCst),
            1,
            "the first waiter's flush covers all five"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_flush_fails_every_record_it_was_to_cover_and_no_later_one() {
        let dir = scratch("fail");
        let gc = GroupCommit::open(&dir.join("log")).unwrap().unwrap();
        let early = gc.ticket(7).unwrap();
        gc.wait(early, || Ok(())).unwrap();
        let batch: Vec<Ticket> = (0..3).map(|_| gc.ticket(7).unwrap()).collect();
        let eio = || Err(io::Error::from_raw_os_error(libc::EIO));
        for t in &batch {
            // the first leads and fails; the others see the failure without
            // flushing (their flush would "succeed": the error is reported
            // once per file)
            let e = gc.wait(*t, eio).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO));
        }
        // the next record starts a fresh accounting and succeeds
        let next = gc.ticket(7).unwrap();
        assert_ne!(next.tag, batch[0].tag);
        gc.wait(next, || Ok(())).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_flush_of_one_inode_never_counts_for_another() {
        let dir = scratch("inodes");
        let gc = GroupCommit::open(&dir.join("log")).unwrap().unwrap();
        let on_run = gc.ticket(100).unwrap(); // written to what is now log-run
        let on_log = gc.ticket(200).unwrap(); // written to the new log
        assert_ne!(on_run.entry, on_log.entry);
        let flushed = std::sync::Mutex::new(Vec::new());
        gc.wait(on_log, || {
            flushed.lock().unwrap().push(200);
            Ok(())
        })
        .unwrap();
        gc.wait(on_run, || {
            flushed.lock().unwrap().push(100);
            Ok(())
        })
        .unwrap();
        assert_eq!(*flushed.lock().unwrap(), vec![200, 100]);
        // every entry reused for other inodes: the old ticket flushes itself
        let old = gc.ticket(300).unwrap();
        for ino in 1000..1000 + ENTRIES as u64 {
            gc.ticket(ino).unwrap();
        }
        let own = AtomicUsize::new(0);
        gc.wait(old, || {
            own.fetch_add(1, SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(own.load(SeqCst), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dead_leader_is_taken_over() {
        let dir = scratch("dead");
        let gc = GroupCommit::open(&dir.join("log")).unwrap().unwrap();
        let t = gc.ticket(9).unwrap();
        // a leader that never publishes (killed mid-flush)
        gc.entry(t.entry).leader.store(leader_word(), SeqCst);
        let started = Instant::now();
        gc.wait(t, || Ok(())).unwrap();
        let waited = started.elapsed();
        assert!(waited >= LEADER_STALE && waited < WAIT_BOUND, "{waited:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn threads_share_flushes() {
        let dir = scratch("threads");
        let gc = Arc::new(GroupCommit::open(&dir.join("log")).unwrap().unwrap());
        let flushes = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (gc, flushes, go) = (gc.clone(), flushes.clone(), go.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        go.wait();
                        let t = gc.ticket(5).unwrap();
                        gc.wait(t, || {
                            flushes.fetch_add(1, SeqCst);
                            std::thread::sleep(Duration::from_micros(200));
                            Ok(())
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let n = flushes.load(SeqCst);
        assert!(n < 8 * 200, "{n} flushes for 1600 records");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_foreign_file_is_never_rewritten() {
        let dir = scratch("foreign");
        let junk = vec![0xabu8; SIZE];
        std::fs::write(dir.join("log-commit"), &junk).unwrap();
        assert!(GroupCommit::open(&dir.join("log")).unwrap().is_none());
        assert_eq!(std::fs::read(dir.join("log-commit")).unwrap(), junk);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
