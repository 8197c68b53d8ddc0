"""IMAP helpers shared by the live suites' clients (synclog/faultload.py,
replicalock/replicalock.py): every instance of tests/cyrus/lib/instance.sh
accepts any password, and the admin is "admin"."""
import imaplib
import os
import sys


def connect(port, user):
    imap = imaplib.IMAP4("127.0.0.1", int(port))
    imap.login(user, "x")
    return imap


def message(user, seq, tag):
    """A small message for USER, unique per sender process (Message-ID)."""
    return (
        f"From: {tag} <{tag}@example.com>\r\n"
        f"To: {user}@example.com\r\n"
        f"Subject: {tag} {seq} for {user}\r\n"
        f"Message-ID: <{user}.{seq}.{os.getpid()}@cyrsync.test>\r\n"
        "\r\n"
        f"body {seq}\r\n"
    ).encode()


def create_users(port, users):
    """CREATE user.U for each U as the admin; exits on the first refusal."""
    imap = connect(port, "admin")
    for u in users:
        typ, data = imap.create(f"user.{u}")
        if typ != "OK":
            sys.exit(f"CREATE user.{u}: {typ} {data}")
    imap.logout()
