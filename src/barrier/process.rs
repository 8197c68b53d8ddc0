//! Per-process state: this process's slot (or the overflow path when every
//! slot is taken), the descriptor that holds its slot lock, and what fork(2)
//! and a host that closes descriptors do to them.

use std::fs::File;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering::*};

use super::kernel;
use std::path::Path;

use super::kernel::FileId;
use super::layout::{self, slot_offset, Table, LOCK_OVERFLOW, LOCK_OVERFLOW_MEMBER};
use super::{Barrier, BarrierError, FROZEN};

/// Per-process state: the descriptor holding this process's slot lock.
/// Replaced (never mutated, but for a descriptor the host closed) after a
/// fork.
pub(crate) struct ProcState {
    pub(crate) fork_generation: u64,
    /// Our own open file description of the barrier file: holds the slot
    /// lock. Replaced if the host closed it under us.
    pub(crate) fd: AtomicI32,
    /// Our slot; None: every slot was taken when we opened, and this process
    /// goes through the overflow path (a shared count and a read lock).
    pub(crate) slot: Option<u32>,
    /// The depth word of a process without a slot (same encoding as a slot
    /// word, but private to the process).
    pub(crate) private_word: AtomicU32,
    pub(crate) registry: Option<usize>,
    /// The state of a forked child that used the barrier (set once, by the
    /// child): it replaces this one there. Kept, like this one, until the
    /// barrier is dropped (other threads may still read it).
    pub(crate) next: OnceBox<ProcState>,
}

/// A value set at most once, without blocking: `OnceLock` would block a
/// forked child forever if another thread of the parent was setting it at
/// the fork; a compare-and-swap cannot be caught half-done.
pub(crate) struct OnceBox<T> {
    ptr: AtomicPtr<T>,
}

impl<T> OnceBox<T> {
    pub(crate) const fn new() -> Self {
        OnceBox {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        let p = self.ptr.load(Acquire);
        // SAFETY: non-null only once set from Box::into_raw; freed only in
        // Drop, which needs `&mut self`, so it outlives the borrow.
        unsafe { p.as_ref() }
    }

    /// Set it, or give `value` back if it was set already.
    pub(crate) fn set(&self, value: Box<T>) -> Result<(), Box<T>> {
        let p = Box::into_raw(value);
        match self
            .ptr
            .compare_exchange(std::ptr::null_mut(), p, AcqRel, Acquire)
        {
            Ok(_) => Ok(()),
            // SAFETY: `p` was not published; it is still ours alone.
            Err(_) => Err(unsafe { Box::from_raw(p) }),
        }
    }
}

impl<T> Drop for OnceBox<T> {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: from Box::into_raw in `set`, freed once, here.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

// SAFETY: it owns a `Box<T>` and hands out `&T`: as `OnceLock<Box<T>>`.
unsafe impl<T: Send + Sync> Sync for OnceBox<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for OnceBox<T> {}

impl Barrier {
    /// Lock a free slot with `file`'s description and make it ours; with
    /// every slot taken, the overflow path.
    pub(crate) fn take_slot(
        t: &Table,
        path: &Path,
        file_id: FileId,
        file: File,
    ) -> Result<ProcState, BarrierError> {
        let fork_generation = kernel::fork_generation();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let me = kernel::getpid();
        let mut slot = None;
        for index in 0..t.slot_count {
            let offset = slot_offset(index) as u64;
            let locked =
                kernel::ofd_try_lock(fd, offset).map_err(super::io_err("lock (slot)", path))?;
            if !locked {
                continue;
            }
            if t.slot_pid(index).load(SeqCst) != me && t.owner_alive(index) {
                // Its owner lives but lost its lock (the host closed the
                // descriptor): still its slot.
                let _ = kernel::ofd_unlock(fd, offset);
                continue;
            }
            // Whatever a dead owner left is void.
            t.slot_word(index).store(0, SeqCst);
            t.slot_pid(index).store(me, SeqCst);
            t.slot_start(index)
                .store(kernel::start_time(me).unwrap_or(0), SeqCst);
            t.high_water_word().fetch_max(index + 1, SeqCst);
            slot = Some(index);
            break;
        }
        if slot.is_none() {
            // Shows in /proc/locks for the lifetime of our open, as a
            // slot's lock does (see layout::other_barrier_locks).
            let _ = kernel::ofd_try_read_lock(fd, LOCK_OVERFLOW_MEMBER);
            log::warn!(
                "cyrsync barrier: all slots in use, this process takes the slower overflow path \
                 (two system calls per outermost enter and leave): path=<{}> slots=<{}> pid=<{me}>",
                path.display(),
                t.slot_count
            );
        }
        let fd = file.into_raw_fd();
        let registry = kernel::register_fd(fd, file_id.ino);
        if registry.is_none() {
            log::warn!(
                "cyrsync barrier: too many barriers open in one process; forked children keep \
                 this slot alive until they exit: path=<{}>",
                path.display()
            );
        }
        Ok(ProcState {
            fork_generation,
            fd: AtomicI32::new(fd),
            slot,
            private_word: AtomicU32::new(0),
            registry,
            next: OnceBox::new(),
        })
    }

    /// The last state of the chain: this process's, unless it is a forked
    /// child that has not used the barrier yet.
    #[inline]
    pub(crate) fn current(&self) -> &ProcState {
        let mut state = &self.root;
        while let Some(next) = state.next.get() {
            state = next;
        }
        state
    }

    /// This process's state, taking a fresh slot first if we are a forked
    /// child that has not used the barrier yet.
    #[inline]
    pub(crate) fn state(&self) -> Result<&ProcState, BarrierError> {
        let current = self.current();
        if current.fork_generation == kernel::fork_generation() {
            return Ok(current);
        }
        self.reslot(current)
    }

    #[cold]
    fn reslot<'s>(&'s self, old: &'s ProcState) -> Result<&'s ProcState, BarrierError> {
        // The parent's descriptor was closed by the atfork handler if it was
        // registered; if not, the thread that installs the new state closes
        // our copy (the parent keeps its own).
        let file = self.reopen()?;
        let new = Self::take_slot(&self.table, &self.path, self.file_id, file)?;
        match old.next.set(Box::new(new)) {
            Ok(()) => {
                let fd = old.fd.load(SeqCst);
                if old.registry.is_none() && self.is_ours(fd) {
                    // SAFETY: the inherited copy of the parent's descriptor;
                    // nothing in this process uses it any more.
                    unsafe { libc::close(fd) };
                }
            }
            Err(mine) => {
                // Another thread of ours installed its state first: release
                // the slot we took.
                self.release(&mine);
            }
        }
        Ok(old.next.get().expect("set above"))
    }

    /// Open the file we have mapped again (not whatever the path names now).
    fn reopen(&self) -> Result<File, BarrierError> {
        let file =
            layout::open_existing(&self.path, true).map_err(super::io_err("open", &self.path))?;
        match kernel::file_id(std::os::fd::AsRawFd::as_raw_fd(&file)) {
            Ok(id) if id == self.file_id => Ok(file),
            _ => Err(BarrierError::Replaced {
                path: self.path.clone(),
                why: "the path names another file than the one this process mapped".into(),
            }),
        }
    }

    /// Whether `fd` is still a descriptor of our barrier file.
    pub(crate) fn is_ours(&self, fd: RawFd) -> bool {
        fd >= 0 && kernel::file_id(fd).ok() == Some(self.file_id)
    }

    /// Our descriptor, checked: a host may have closed it (closefrom) and
    /// reused its number. Then the slot lock is gone (others still see us
    /// alive by pid and start time): open the file again, take our slot's
    /// lock back, and carry on. Not on the writer's fast path.
    pub(crate) fn own_fd(&self, state: &ProcState) -> Result<RawFd, BarrierError> {
        let fd = state.fd.load(SeqCst);
        if self.is_ours(fd) {
            return Ok(fd);
        }
        let file = self.reopen()?;
        let new = std::os::fd::AsRawFd::as_raw_fd(&file);
        if let Some(index) = state.slot {
            let offset = slot_offset(index) as u64;
            let mut tries = 0;
            // A freezer or opener probing the slot holds its lock for a
            // moment; nobody takes a live process's slot.
            while !kernel::ofd_try_lock(new, offset)
                .map_err(super::io_err("lock (slot)", &self.path))?
            {
                let now = state.fd.load(SeqCst);
                if now != fd && self.is_ours(now) {
                    return Ok(now); // another thread of ours repaired it
                }
                tries += 1;
                if tries > 100 {
                    return Err(super::io_err("lock (slot)", &self.path)(
                        std::io::Error::other("cannot take this process's slot lock back"),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        if state.slot.is_none() {
            let _ = kernel::ofd_try_read_lock(new, LOCK_OVERFLOW_MEMBER);
            if state.private_word.load(SeqCst) & super::DEPTH_MASK != 0 {
                let _ = kernel::ofd_try_read_lock(new, LOCK_OVERFLOW);
            }
        }
        match state.fd.compare_exchange(fd, new, SeqCst, SeqCst) {
            Ok(_) => {
                let new = file.into_raw_fd();
                if let Some(index) = state.registry {
                    kernel::reregister_fd(index, new, self.file_id.ino);
                }
                log::warn!(
                    "IOERROR: cyrsync barrier: this process's descriptor of the barrier file was \
                     closed under it (closefrom?); re-opened and its slot lock taken back: path=<{}> fd=<{fd}>",
                    self.path.display()
                );
                Ok(new)
            }
            // Another thread repaired it first; ours closes. If ours had
            // won the slot lock, it goes with it: liveness then rests on
            // our pid and start time, which never let the slot be taken.
            Err(winner) => Ok(winner),
        }
    }

    pub(crate) fn release(&self, state: &ProcState) {
        let t = &self.table;
        if let Some(index) = state.slot {
            t.slot_word(index).store(0, SeqCst);
            t.slot_pid(index).store(0, SeqCst);
            t.slot_start(index).store(0, SeqCst);
        } else if state.private_word.swap(0, SeqCst) & super::DEPTH_MASK != 0 {
            t.overflow().fetch_sub(1, SeqCst);
        }
        if t.freeze_word().load(SeqCst) & FROZEN != 0 {
            self.bump_drain();
        }
        let fd = state.fd.load(SeqCst);
        if let Some(index) = state.registry {
            kernel::unregister_fd(index, fd);
        }
        if self.is_ours(fd) {
            // SAFETY: the descriptor belongs to this state (checked: not a
            // number the host reused); closing it drops the slot lock.
            drop(unsafe { File::from_raw_fd(fd) });
        }
    }
}
