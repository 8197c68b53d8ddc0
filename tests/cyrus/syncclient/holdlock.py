#!/usr/bin/python3
"""Hold a Cyrus lock file until SIGTERM: holdlock.py FILE

Takes both an exclusive fcntl(2) record lock (Cyrus's lock_fcntl.c, the
default) and an flock(2) lock (lock_flock.c) on FILE, so that
mboxname_lock(..., LOCK_NONBLOCK) in any Cyrus build answers
IMAP_MAILBOX_LOCKED while this runs.  Prints "locked FILE" when held.
"""
import fcntl
import os
import signal
import sys

fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.lockf(fd, fcntl.LOCK_EX)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked %s" % sys.argv[1], flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    signal.pause()
