#!/usr/bin/env python3
"""appender.py PORT USER SECONDS LOG [STOPFILE] -- append messages to
USER's INBOX on 127.0.0.1:PORT in a loop, as fast as the server answers,
for at most SECONDS or until STOPFILE exists.

LOG gets one line per append: "<seq> <t_sent> <t_ok> <uid>" (CLOCK_REALTIME
seconds; uid from APPENDUID, - if none).  The password is anything: the
test instance uses sasl_pwcheck_method: alwaystrue, as Cassandane does.
"""
import imaplib
import os
import re
import sys
import time


def main():
    port, user, seconds, log = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    stop = sys.argv[5] if len(sys.argv) > 5 else None
    imap = imaplib.IMAP4("127.0.0.1", int(port))
    imap.login(user, "x")
    end = time.time() + seconds
    seq = 0
    with open(log, "w", buffering=1) as out:
        while time.time() < end and not (stop and os.path.exists(stop)):
            seq += 1
            msg = (
                "From: appender <appender@example.com>\r\n"
                f"To: {user}@example.com\r\n"
                f"Subject: message {seq} for {user}\r\n"
                f"Message-ID: <{user}.{seq}@cyrsync.test>\r\n"
                "\r\n"
                f"body {seq}\r\n"
            ).encode()
            t0 = time.time()
            typ, data = imap.append("INBOX", None, None, msg)
            t1 = time.time()
            if typ != "OK":
                print(f"appender {user}: APPEND {seq}: {typ} {data}", file=sys.stderr)
                sys.exit(1)
            m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            out.write(f"{seq} {t0:.6f} {t1:.6f} {m.group(1).decode() if m else '-'}\n")
    imap.logout()


if __name__ == "__main__":
    main()
