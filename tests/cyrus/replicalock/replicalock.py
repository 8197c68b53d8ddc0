#!/usr/bin/env python3
"""replicalock.py -- the clients and the clock of tests/cyrus/replicalock/replicalock.sh.

  replicalock.py create PORT USER...        CREATE user.USER as admin
  replicalock.py converge MPORT RPORT SECS USER...
                                            wait until the replica has as many
                                            messages as the master for every USER
  replicalock.py run [options]              the measured scenario (below)
  replicalock.py compare MPORT RPORT USER...
                                            per user: message count and UID list
                                            on master and replica

`run` appends one message per user per second to the master over IMAP
(one connection and one thread per user), polls the replica's message
count of every user (STATUS INBOX as that user, one thread per user: a poll of the
locked user simply blocks on the replica until the lock goes), and counts
sync_client passes: renames of the channel's `log` to `log-run` (inotify on
the channel's directory) plus "Reprocessing sync log file" lines of the
sync_client in the master's syslog (a pass over a kept log-run).  Phases:

  pre     PRE seconds of mail with nothing locked
  LOCK    the HOLD command runs HOLD seconds (holdlock.py on the replica's
          lock file of the locked user; it prints one line when it holds)
  post    until the locked user is on the replica (at most POSTMAX s)
  FROZEN  the FREEZE command (cyrsync withlock ... -- sleep N), if given
  thaw    until everyone is on the replica (at most POSTMAX s)
  drain   the appenders stop; until everyone is on the replica

One line per second: phase, messages appended on the master per user,
messages on the replica per user, the replication lag of each user (the age
of the oldest message appended on the master and not yet on the replica;
0 when none), sync_client passes so far.  Then "RL key=value ..." lines
with the measurements replicalock.sh judges.  Times are seconds.
"""
import argparse
import ctypes
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from liveimap import connect, create_users, message  # noqa: E402


def status_count(imap, user):
    """USER's INBOX message count, on a connection logged in as USER
    (an admin has no read right on users' mailboxes)"""
    typ, data = imap.status("INBOX", "(MESSAGES)")
    if typ != "OK":
        return -1
    m = re.search(rb"MESSAGES (\d+)", data[0])
    return int(m.group(1)) if m else -1


def uids(port, user):
    imap = connect(port, user)
    try:
        typ, _ = imap.select("INBOX", readonly=True)
        if typ != "OK":
            return None
        typ, data = imap.uid("SEARCH", "ALL")
        return [int(x) for x in data[0].split()] if typ == "OK" else None
    finally:
        try:
            imap.logout()
        except Exception:  # noqa: BLE001
            pass


class Appender(threading.Thread):
    """One APPEND per second to USER's INBOX on the master; t_ok per message."""

    def __init__(self, port, user, t0):
        super().__init__(daemon=True)
        self.port, self.user, self.t0 = port, user, t0
        self.ok = []          # t_ok of message seq = index + 1
        self.failed = 0
        self.stop = threading.Event()

    def run(self):
        imap = connect(self.port, self.user)
        n = 0
        next_t = time.time()
        while not self.stop.is_set():
            n += 1
            try:
                typ, data = imap.append("INBOX", None, None, message(self.user, n, "rl"))
            except Exception as e:  # noqa: BLE001
                print(f"APPEND {n} for {self.user}: {e}", file=sys.stderr)
                self.failed += 1
                imap = connect(self.port, self.user)
                continue
            if typ == "OK":
                self.ok.append(time.time())
            else:
                self.failed += 1
                print(f"APPEND {n} for {self.user}: {typ} {data}", file=sys.stderr)
            next_t += 1.0
            self.stop.wait(max(0.0, next_t - time.time()))
        try:
            imap.logout()
        except Exception:  # noqa: BLE001
            pass


class Poller(threading.Thread):
    """The replica's message count of USER, polled every PERIOD seconds;
    seen[k] = first time the replica had k+1 messages or more."""

    def __init__(self, port, user, period):
        super().__init__(daemon=True)
        self.port, self.user, self.period = port, user, period
        self.count = 0             # messages beyond the first poll's
        self.base = None
        self.seen = []
        self.asking_since = None   # a poll outstanding (blocked on a lock)
        self.stop = threading.Event()

    def run(self):
        imap = None
        while not self.stop.is_set():
            try:
                if imap is None:
                    imap = connect(self.port, self.user)
                self.asking_since = time.time()
                n = status_count(imap, self.user)
                now = time.time()
                self.asking_since = None
                if self.base is None:
                    self.base = n      # converged before the run: the same on the master
                n -= self.base
                if n > self.count:
                    self.seen.extend([now] * (n - len(self.seen)))
                    self.count = n
            except Exception as e:  # noqa: BLE001
                print(f"poll {self.user}: {e}", file=sys.stderr)
                self.asking_since = None
                imap = None
            self.stop.wait(self.period)


class Passes(threading.Thread):
    """sync_client passes: IN_MOVED_TO log-run in the channel directory."""

    IN_MOVED_TO = 0x80
    IN_CREATE = 0x100

    def __init__(self, chandir):
        super().__init__(daemon=True)
        self.renames = []
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init()
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init")
        os.makedirs(chandir, exist_ok=True)
        wd = libc.inotify_add_watch(self.fd, chandir.encode(), self.IN_MOVED_TO)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {chandir}")

    def run(self):
        while True:
            buf = os.read(self.fd, 65536)
            i = 0
            while i + 16 <= len(buf):
                _wd, mask, _cookie, ln = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + ln].rstrip(b"\0")
                if mask & self.IN_MOVED_TO and name == b"log-run":
                    self.renames.append(time.time())
                i += 16 + ln


def syslog_lines(path, pid, pattern, offset=0):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return []
    pat = re.compile(rb"sync_client\[%d\]: .*%s" % (pid, pattern))
    return [ln for ln in data.split(b"\n") if pat.search(ln)]


def lag_now(app, pol, now):
    """age of the oldest message on the master that the replica lacks"""
    if pol.count < len(app.ok):
        return now - app.ok[pol.count]
    return 0.0


def run(a):
    users = a.users.split(",")
    t0 = time.time()
    passes = Passes(a.chandir)
    passes.start()
    apps = {u: Appender(a.mport, u, t0) for u in users}
    pols = {u: Poller(a.rport, u, 0.25) for u in users}
    for t in list(apps.values()) + list(pols.values()):
        t.start()
    syslog0 = os.path.getsize(a.syslog) if os.path.exists(a.syslog) else 0
    marks = {}
    rows = []
    phase = ["pre"]

    def npasses():
        return len(passes.renames) + len(syslog_lines(a.syslog, a.sc_pid, rb"Reprocessing sync log file", syslog0))

    hdr = ("%6s %-6s %s %s %s %6s" % (
        "t", "phase",
        " ".join("%6s" % ("m:" + u[:4]) for u in users),
        " ".join("%6s" % ("r:" + u[:4]) for u in users),
        " ".join("%7s" % ("lag:" + u[:3]) for u in users),
        "passes"))
    print(hdr, flush=True)

    def tick():
        now = time.time()
        cells = []
        for u in users:
            p = pols[u]
            waiting = p.asking_since is not None and now - p.asking_since > 1.0
            cells.append("%5d%s" % (p.count, "w" if waiting else " "))
        line = "%6.0f %-6s %s %s %s %6d" % (
            now - t0, phase[0],
            " ".join("%6d" % len(apps[u].ok) for u in users),
            " ".join(cells),
            " ".join("%7.1f" % lag_now(apps[u], pols[u], now) for u in users),
            npasses())
        rows.append(line)
        print(line, flush=True)

    next_tick = [t0 + 1]

    def sleep_until(t_end, cond=None):
        while True:
            now = time.time()
            if now >= next_tick[0]:
                tick()
                next_tick[0] += 1
            if cond is not None and cond():
                return True
            if now >= t_end:
                return False
            time.sleep(min(0.1, max(0.0, min(t_end, next_tick[0]) - now)))

    def converged(us):
        return all(pols[u].count >= len(apps[u].ok) for u in us)

    sleep_until(t0 + a.pre)

    # LOCK: the hold command (holdlock.py) on the replica
    if a.hold_cmd:
        holder = subprocess.Popen(shlex.split(a.hold_cmd), stdout=subprocess.PIPE, text=True)
        line = holder.stdout.readline().strip()
        marks["lock"] = time.time()
        marks["passes_lock0"] = npasses()
        print(f"# {marks['lock'] - t0:.1f}s: {line}", flush=True)
        phase[0] = "LOCK"
        sleep_until(marks["lock"] + a.hold)
        holder.terminate()
        holder.wait()
        marks["release"] = time.time()
        marks["passes_lock"] = npasses() - marks["passes_lock0"]
        print(f"# {marks['release'] - t0:.1f}s: released", flush=True)
        phase[0] = "post"
        # the locked user's messages appended up to the release
        need = len(apps[a.locked].ok)
        got = sleep_until(marks["release"] + a.postmax, lambda: pols[a.locked].count >= need)
        marks["locked_caught_up"] = time.time() if got else None
        sleep_until(time.time() + a.postmax, lambda: converged(users))

    # FROZEN: the freeze command (cyrsync withlock ... -- sleep N)
    freeze_rc = None
    if a.freeze_cmd:
        phase[0] = "FROZEN"
        marks["freeze"] = time.time()
        passes_f0 = npasses()
        fr = subprocess.Popen(shlex.split(a.freeze_cmd), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        sleep_until(time.time() + 3600, lambda: fr.poll() is not None)
        freeze_out = fr.stdout.read().strip().replace("\n", " | ")
        freeze_rc = fr.returncode
        marks["thaw"] = time.time()
        marks["passes_frozen"] = npasses() - passes_f0
        print(f"# {marks['thaw'] - t0:.1f}s: thawed, exit {freeze_rc}: {freeze_out[:300]}", flush=True)
        phase[0] = "thaw"
        need = {u: len(apps[u].ok) for u in users}
        got = sleep_until(marks["thaw"] + a.postmax,
                          lambda: all(pols[u].count >= need[u] for u in users))
        marks["thaw_caught_up"] = time.time() if got else None

    # drain: stop appending, wait until the replica has everything
    for ap in apps.values():
        ap.stop.set()
    for ap in apps.values():
        ap.join(5)
    phase[0] = "drain"
    sleep_until(time.time() + a.postmax, lambda: converged(users))
    tick()
    t_end = time.time()
    for p in pols.values():
        p.stop.set()

    # ---- measurements
    worst_at = {}
    def maxlag(u, lo, hi):
        """largest lag of u's messages on their way during [lo, hi]:
        appended before hi and not on the replica before lo (seen or not)"""
        worst, at = 0.0, 0.0
        ap, po = apps[u], pols[u]
        for k, t in enumerate(ap.ok):
            seen = po.seen[k] if k < len(po.seen) else t_end
            if t <= hi and seen >= lo and seen - t > worst:
                worst, at = seen - t, t - t0
        worst_at[u] = round(at, 1)
        return worst

    out = {
        "appended": sum(len(ap.ok) for ap in apps.values()),
        "append_failed": sum(ap.failed for ap in apps.values()),
        "passes": npasses(),
        "renames": len(passes.renames),
        "reprocessed": len(syslog_lines(a.syslog, a.sc_pid, rb"Reprocessing sync log file", syslog0)),
        "failed_runs": len(syslog_lines(a.syslog, a.sc_pid, rb"Processing sync log file .* failed|bailing out", syslog0)),
        "runs_finished": len(syslog_lines(a.syslog, a.sc_pid, rb"SYNCNOTICE: sync run finished", syslog0)),
        "seconds": round(t_end - t0, 1),
        "sc_alive": 1 if os.path.exists(f"/proc/{a.sc_pid}") else 0,
    }
    others = [u for u in users if u != a.locked]
    if "lock" in marks:
        lo, hi = marks["lock"], marks["release"]
        out["hold"] = round(hi - lo, 1)
        for u in others:
            out[f"lag_{u}"] = round(maxlag(u, lo, hi), 1)
            out[f"lag_{u}_appended_at"] = worst_at[u]
        out["passes_lock"] = marks["passes_lock"]
        c = marks.get("locked_caught_up")
        out[f"{a.locked}_after_release"] = round(c - hi, 1) if c else -1
    if "freeze" in marks:
        lo, hi = marks["freeze"], marks["thaw"]
        out["frozen"] = round(hi - lo, 1)
        out["freeze_rc"] = freeze_rc
        out["passes_frozen"] = marks["passes_frozen"]
        for u in users:
            out[f"frozen_lag_{u}"] = round(maxlag(u, lo, hi), 1)
        c = marks.get("thaw_caught_up")
        out["after_thaw"] = round(c - hi, 1) if c else -1
    out["converged"] = 1 if converged(users) else 0
    print("RL " + " ".join(f"{k}={v}" for k, v in out.items()), flush=True)


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    a = sys.argv[2:]
    if cmd == "create":
        create_users(a[0], a[1:])
    elif cmd == "mailboxid":
        imap = connect(a[0], a[1])
        typ, data = imap.status("INBOX", "(MAILBOXID)")
        m = re.search(rb"MAILBOXID \(([^)]*)\)", data[0] or b"") if typ == "OK" else None
        if not m:
            sys.exit(1)
        print(m.group(1).decode())
    elif cmd == "append1":
        for u in a[1:]:
            imap = connect(a[0], u)
            typ, data = imap.append("INBOX", None, None, message(u, 0, "rl"))
            if typ != "OK":
                sys.exit(f"APPEND for {u}: {typ} {data}")
            imap.logout()
    elif cmd == "converge":
        mport, rport, secs, us = a[0], a[1], float(a[2]), a[3:]
        end = time.time() + secs
        last = None
        while True:
            try:
                last = []
                for u in us:
                    mi, ri = connect(mport, u), connect(rport, u)
                    last.append((u, status_count(mi, u), status_count(ri, u)))
                    mi.logout()
                    ri.logout()
                ok = all(m == r >= 0 for _, m, r in last)
            except Exception as e:  # noqa: BLE001
                last, ok = e, False
            if ok:
                return
            if time.time() > end:
                sys.exit(f"not converged: (user, master, replica): {last}")
            time.sleep(0.25)
    elif cmd == "compare":
        mport, rport, us = a[0], a[1], a[2:]
        bad = 0
        for u in us:
            m, r = uids(mport, u), uids(rport, u)
            same = m is not None and m == r
            bad += 0 if same else 1
            print(f"{u} master={len(m) if m is not None else -1} replica={len(r) if r is not None else -1} "
                  f"uids_equal={'yes' if same else 'NO'}"
                  + ("" if same or m is None or r is None else
                     f" missing_on_replica={sorted(set(m) - set(r))[:10]} extra_on_replica={sorted(set(r) - set(m))[:10]}"))
        print(f"differ {bad}")
    elif cmd == "run":
        p = argparse.ArgumentParser(prog="replicalock.py run")
        p.add_argument("--mport", type=int, required=True)
        p.add_argument("--rport", type=int, required=True)
        p.add_argument("--users", default="alice,bob,carol")
        p.add_argument("--locked", default="alice")
        p.add_argument("--chandir", required=True)
        p.add_argument("--syslog", required=True)
        p.add_argument("--sc-pid", type=int, required=True)
        p.add_argument("--pre", type=float, default=3)
        p.add_argument("--hold", type=float, default=60)
        p.add_argument("--hold-cmd", default="")
        p.add_argument("--freeze-cmd", default="")
        p.add_argument("--postmax", type=float, default=20)
        run(p.parse_args(a))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
