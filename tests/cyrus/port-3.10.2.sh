#!/usr/bin/env bash
# tests/cyrus/port-3.10.2.sh -- regenerate cyrus-patches/3.10.2 from the
# patches of the other versions:
#
#   0001 build, 0002 sync_log shim, 0004 sync_do_reader  from 3.12.4
#   0003 global barrier                                  from 3.6.1
#   0005 replica bounded lock wait                       from 3.6.1, but
#        imap/mailbox.c and imap/conversations.c edited here (3.10's
#        mailbox_open_advanced() and conversations_open_path() are
#        neither 3.6's nor 3.12's; fuzz put one 3.6 hunk into the wrong
#        function)
#
# (3.10 is 3.12 for the build, the sync log and sync_support.c's reader,
# and 3.6 for the global lock: neither has global_lock nor
# cyr_withlock_run, which arrived in 3.12.0.)  Each source patch is applied
# in turn to a git copy of the 3.10.2 orig (fuzz and offsets allowed
# there), the 3.6-specific words of 0003 become 3.10 ones, and each result
# is written back as header (the source's, with "Cyrus version: 3.10.2")
# plus a fresh `git diff`.  Then the new series is applied to a clean
# orig with patch -p1 and must apply with no fuzz and no offset.
#
#   tests/cyrus/port-3.10.2.sh [ORIG_TARBALL]   (default CACHE/cyrus-imapd_3.10.2.orig.tar.xz)
#
# Use it after a change to the 3.6.1/3.12.4 patches; read `git diff
# cyrus-patches/3.10.2` before committing (a change that only one of
# 3.6.1/3.12.4 got, in 0001/0002/0004, comes from 3.12.4 only).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
P=$REPO/cyrus-patches
ORIG=${1:-${CYRSYNC_CACHE:-/var/cache/cyrsync}/cyrus-imapd_3.10.2.orig.tar.xz}
[ -s "$ORIG" ] || { echo "no $ORIG (tests/cyrus/run fetches it)" >&2; exit 2; }
T=$(mktemp -d /var/tmp/port310.XXXXXX)
trap 'rm -rf "$T"' EXIT
G=(git -C "$T/src" -c user.name=port -c user.email=port@localhost -c safe.directory='*')

mkdir -p "$T/src"
tar -xf "$ORIG" -C "$T/src" --strip-components=1 --no-same-owner
"${G[@]}" init -q
"${G[@]}" add -A
"${G[@]}" commit -qm orig

SOURCES=(3.12.4:0001-build-with-cyrsync.patch 3.12.4:0002-sync_log-shim-over-cyrsync.patch
         3.6.1:0003-global-barrier.patch 3.12.4:0004-sync_do_reader-over-cyrsync.patch
         3.6.1:0005-replica-bounded-lock-wait.patch)
mkdir -p "$P/3.10.2"
: >"$T/series"
for s in "${SOURCES[@]}"; do
    from=${s%%:*} p=${s#*:}
    echo "== $p from $from"
    (cd "$T/src" && patch -p1 --no-backup-if-mismatch <"$P/$from/$p") | grep -v '^patching file' || true
    if [ "$p" = 0005-replica-bounded-lock-wait.patch ]; then
        "${G[@]}" checkout -q -- imap/mailbox.c imap/conversations.c
        rm -f "$T/src/imap/mailbox.c.rej" "$T/src/imap/conversations.c.rej"
        python3 - "$T/src" <<'EOF'
import sys
src = sys.argv[1]
def edit(path, old, new):
    f = src + "/" + path
    s = open(f).read()
    if s.count(old) != 1:
        sys.exit("port-3.10.2: 0005: %s: context not found once" % path)
    open(f, "w").write(s.replace(old, new))
CHECK = "            /* sync_server_lock_wait ran out: never go on without the user's lock */\n"
# mailbox_mboxlock_reopen(): as 3.6's
edit("imap/mailbox.c",
     "            mailbox->local_namespacelock = user_namespacelock_full(userid, index_locktype);\n"
     "        }\n"
     "        free(userid);\n"
     "    }\n",
     "            mailbox->local_namespacelock = user_namespacelock_full(userid, index_locktype);\n"
     + CHECK +
     "            if (!mailbox->local_namespacelock && mboxname_lock_wait_ms()) {\n"
     "                free(userid);\n"
     "                return IMAP_MAILBOX_LOCKED;\n"
     "            }\n"
     "        }\n"
     "        free(userid);\n"
     "    }\n")
# mailbox_open_advanced(): 3.10's own form
edit("imap/mailbox.c",
     "        mailbox->local_namespacelock = user_namespacelock_full(userid, index_locktype);\n"
     "    }\n"
     "    free(userid);\n",
     "        mailbox->local_namespacelock = user_namespacelock_full(userid, index_locktype);\n"
     + CHECK[4:] +
     "        if (!mailbox->local_namespacelock && mboxname_lock_wait_ms()) {\n"
     "            free(userid);\n"
     "            remove_listitem(listitem);\n"
     "            return IMAP_MAILBOX_LOCKED;\n"
     "        }\n"
     "    }\n"
     "    free(userid);\n")
# conversations_open_path(): as 3.12's
edit("imap/conversations.c",
     "        open->local_namespacelock = user_namespacelock_full(userid, locktype);\n"
     "    }\n",
     "        open->local_namespacelock = user_namespacelock_full(userid, locktype);\n"
     + CHECK[4:] +
     "        if (!open->local_namespacelock && mboxname_lock_wait_ms()) {\n"
     "            _conv_remove(&open->s);\n"
     "            return IMAP_MAILBOX_LOCKED;\n"
     "        }\n"
     "    }\n")
EOF
    fi
    if [ "$p" = 0003-global-barrier.patch ]; then
        sed -i 's/3\.6 has no user_run_with_lock()/3.10 has no user_run_with_lock()/' "$T/src/imap/cyr_withlock_run.c"
    fi
    "${G[@]}" add -A
    "${G[@]}" commit -qm "$p"
    awk '/^diff /{exit} {print}' "$P/$from/$p" \
        | sed -e 's/^Cyrus version: .*/Cyrus version: 3.10.2/' \
              -e 's/3\.6\.1 gains upstream 3\.12/3.10.2 gains upstream 3.12/' \
              -e 's/3\.6 has no global lock at all/3.10 has no global lock at all/' \
              -e 's/No -u (3\.6 has no/No -u (3.10 has no/' \
              -e 's/live 3\.6 server/live 3.10 server/' \
              -e 's/(it is plain C; 3\.6$/(it is plain C; 3.10/' >"$T/$p"
    "${G[@]}" diff --no-color HEAD~1 HEAD >>"$T/$p"
    cp "$T/$p" "$P/3.10.2/$p"
    echo "$p" >>"$T/series"
done
cp "$T/series" "$P/3.10.2/series"

echo "== check: the new series on a clean orig"
rm -rf "$T/chk"; mkdir -p "$T/chk"
tar -xf "$ORIG" -C "$T/chk" --strip-components=1 --no-same-owner
bad=0
while read -r p; do
    out=$(cd "$T/chk" && patch -p1 --no-backup-if-mismatch <"$P/3.10.2/$p")
    if grep -Eq 'fuzz|offset|FAILED|rej' <<<"$out"; then echo "$p:"; echo "$out"; bad=1; fi
done <"$P/3.10.2/series"
[ $bad = 0 ] && echo "cyrus-patches/3.10.2: every patch applies with no fuzz and no offset"
exit $bad
