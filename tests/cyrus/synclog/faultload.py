#!/usr/bin/env python3
"""faultload.py -- the IMAP client and the log checker of tests/cyrus/synclog/faults.sh.

  faultload.py create PORT USER...          CREATE user.USER as admin
  faultload.py append PORT USER N           N APPENDs to USER's INBOX
  faultload.py fill PORT USER LOG MAX STALL APPENDs to USER's INBOX until LOG has
                                            not grown for STALL appends in a row
                                            (its disk is full) or MAX appends
  faultload.py sub PORT USER...             each USER SUBSCRIBEs its INBOX (one
                                            sync log record: SUB)
  faultload.py count PORT USER...           "USER MESSAGES SUBSCRIBED" per user
                                            (-1: cannot be read)
  faultload.py logcheck FILE                parse every line of a sync log

The append commands print "appends OK FAILED" (fill: "appends OK FAILED
STALLED", STALLED 1 when the log stopped growing) and exit 0 even when some
APPENDs failed (the caller judges); a dropped connection is counted as a
failure of that APPEND and of every one not sent.  Passwords are anything
(sasl_pwcheck_method: alwaystrue, as Cassandane).

logcheck reads the file the way Cyrus's C reader does (a TYPE atom, one or
two astrings: atom, "quoted" with \\ escapes, or {N+} literal), and in
addition calls a line torn when its TYPE is not one sync_log.h writes or it
has the wrong number of arguments for that TYPE (a record glued onto half
of another: "APPEND user.duAPPEND user.post1" parses, and is torn), or when
the file does not end in a newline.  Prints "lines N torn T tail_torn 0|1"
and one "torn OFFSET LEN REPR" line per torn line.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from liveimap import connect, create_users, message  # noqa: E402

ARGS = {
    b"USER": 1, b"UNUSER": 1, b"META": 1, b"SIEVE": 1, b"APPEND": 1,
    b"MAILBOX": 1, b"UNMAILBOX": 1, b"QUOTA": 1, b"ANNOTATION": 1,
    b"DOUBLEMAILBOX": 2, b"RENAME": 2, b"SEEN": 2, b"SUB": 2,
}
ATOM_SPECIALS = b'(){ %*"\\]\r\n'


def appends(port, user, n, stop=None):
    """APPEND up to n messages; stop(i) -> True ends early. Returns (ok, failed)."""
    ok = failed = 0
    try:
        imap = connect(port, user)
    except Exception as e:  # noqa: BLE001 -- any failure is the result
        print(f"connect/login {user}: {e}", file=sys.stderr)
        return 0, n
    for i in range(1, n + 1):
        try:
            typ, data = imap.append("INBOX", None, None, message(user, i, "faults"))
        except Exception as e:  # noqa: BLE001
            print(f"APPEND {i} for {user}: {e}", file=sys.stderr)
            failed += n - i + 1
            return ok, failed
        if typ == "OK":
            ok += 1
        else:
            failed += 1
            print(f"APPEND {i} for {user}: {typ} {data}", file=sys.stderr)
        if stop and stop(i):
            break
    try:
        imap.logout()
    except Exception:  # noqa: BLE001
        pass
    return ok, failed


def count(port, user):
    """(messages in USER's INBOX, USER's subscriptions), -1 where unreadable."""
    messages = subs = -1
    try:
        imap = connect(port, user)
        typ, data = imap.select("INBOX", readonly=True)
        if typ == "OK":
            messages = int(data[0])
        typ, data = imap.lsub()
        if typ == "OK":
            subs = len([d for d in data if d])
        imap.logout()
    except Exception:  # noqa: BLE001
        pass
    return messages, subs


def sub(port, user):
    """SUBSCRIBE INBOX; True when it was answered OK."""
    try:
        imap = connect(port, user)
        typ, data = imap.subscribe("INBOX")
        imap.logout()
    except Exception as e:  # noqa: BLE001
        print(f"SUBSCRIBE for {user}: {e}", file=sys.stderr)
        return False
    if typ != "OK":
        print(f"SUBSCRIBE for {user}: {typ} {data}", file=sys.stderr)
    return typ == "OK"


def parse_astring(buf, i):
    """One astring at buf[i:]; returns the index after it or None."""
    if i >= len(buf):
        return None
    c = buf[i:i + 1]
    if c == b'"':
        i += 1
        while i < len(buf):
            c = buf[i:i + 1]
            if c == b"\\":
                if i + 1 >= len(buf) or buf[i + 1:i + 2] not in (b"\\", b'"'):
                    return None
                i += 2
            elif c == b'"':
                return i + 1
            elif c in (b"\r", b"\n"):
                return None
            else:
                i += 1
        return None
    if c == b"{":
        j = buf.find(b"}", i)
        if j < 0:
            return None
        spec = buf[i + 1:j]
        if spec.endswith(b"+"):
            spec = spec[:-1]
        if not spec.isdigit() or buf[j + 1:j + 3] != b"\r\n":
            return None
        end = j + 3 + int(spec)
        return end if end <= len(buf) else None
    j = i
    while j < len(buf) and buf[j] not in ATOM_SPECIALS and buf[j] >= 0x20 and buf[j] != 0x7F:
        j += 1
    return j if j > i else None


def logcheck(path):
    with open(path, "rb") as f:
        buf = f.read()
    lines = torn = 0
    bad = []
    i = 0
    while i < len(buf):
        start = i
        if buf[i:i + 1] == b"\n" or buf[i:i + 2] == b"\r\n":     # blank line
            i += 1 if buf[i:i + 1] == b"\n" else 2
            continue
        ok = True
        sp = buf.find(b" ", i)
        nl = buf.find(b"\n", i)
        if nl < 0:
            nl = len(buf)
        nargs = 0
        if sp < 0 or sp > nl:
            ok = False
        else:
            typ = buf[i:sp]
            i = sp + 1
            while ok:
                j = parse_astring(buf, i)
                if j is None:
                    ok = False
                    break
                nargs += 1
                i = j
                if buf[i:i + 1] == b" " and nargs < 2:
                    i += 1
                    continue
                if buf[i:i + 2] == b"\r\n":
                    i += 2
                elif buf[i:i + 1] == b"\n":
                    i += 1
                else:
                    ok = False
                break
            if ok and ARGS.get(typ.upper()) != nargs:
                ok = False
        if not ok:
            # a torn line: resynchronise at the next newline
            nl = buf.find(b"\n", start)
            i = len(buf) if nl < 0 else nl + 1
            torn += 1
            bad.append((start, i - start, buf[start:i]))
        lines += 1
    tail = 1 if buf and not buf.endswith(b"\n") else 0
    print(f"lines {lines} torn {torn} tail_torn {tail}")
    for off, n, b in bad[:20]:
        print(f"torn {off} {n} {b!r}")


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    a = sys.argv[2:]
    if cmd == "create":
        create_users(a[0], a[1:])
    elif cmd == "append":
        ok, failed = appends(a[0], a[1], int(a[2]))
        print(f"appends {ok} {failed}")
    elif cmd == "fill":
        port, user, log, mx, stall = a[0], a[1], a[2], int(a[3]), int(a[4])
        state = {"size": -1, "same": 0}

        def full(_i):
            try:
                size = os.stat(log).st_size
            except OSError:
                size = -1
            if size == state["size"]:
                state["same"] += 1
            else:
                state["size"], state["same"] = size, 0
            return state["same"] >= stall

        ok, failed = appends(port, user, mx, full)
        print(f"appends {ok} {failed} {1 if state['same'] >= stall else 0}")
    elif cmd == "sub":
        ok = sum(1 for u in a[1:] if sub(a[0], u))
        print(f"subscribes {ok} {len(a) - 1 - ok}")
    elif cmd == "count":
        for u in a[1:]:
            print(u, *count(a[0], u))
    elif cmd == "logcheck":
        logcheck(a[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
