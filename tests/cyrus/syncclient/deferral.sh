#!/bin/bash
# Live deferral scenario for cyrus-patches 0004 (sync_do_reader over the
# cyrsync executor), on a patched Cyrus install:
#
#   tests/cyrus/syncclient/deferral.sh PREFIX [POLICY [CHANNEL]]
#
# PREFIX is the patched install prefix (WORK/<version>-patched/inst from
# tests/cyrus/run); its Cassandane tree is PREFIX/../src/cassandane
# (override with CASSANDANE=DIR).  POLICY is the channel's
# sync_lock_policy (defer, backoff, retry_later, fail; default defer);
# "fail" on channel chan runs the quarantine flow (test_quarantine:
# sync_quarantine_after 2, then the admin replays log-quarantine).
# CHANNEL is the sync_log channel (default chan); "spin" runs
# CyrsyncSpin.pm (rolling sync_client, no -1, every channel kind and
# policy; vanilla or patched); "backup" (3.6.x) runs
# CyrsyncBackupDeferral.pm instead: a backupd on channel backup, the
# locked user's backup held by `ctl_backups lock`; "default" runs rolling
# mode on the default channel (no -n), where C never defers and the
# patched build does (cyrus-patches 0004).  On a vanilla prefix the same
# script shows C's behaviour (no `cyrsync channel show` data then).
#
# Runs our Cassandane test CyrsyncDeferral.pm (copied into that tree): a
# master and a replica, users alice, bob and carol with mail, alice's sync
# lock held by holdlock.py while `sync_client -R -1 -N -n chan` runs one
# rolling pass; prints the transcript (passes, sync_client output, master
# and replica message counts, `cyrsync channel show` of the channel).
# Directories under LIVE_WORK (default /var/tmp/cs/live), Cassandane ports
# from LIVE_BASE_PORT (default 9700).  Run as root (Cassandane switches
# to the cyrus user).  Exit status: the test's.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
PREFIX=$(cd "${1:?usage: deferral.sh PREFIX [POLICY]}" && pwd)
POLICY=${2:-defer}
CHANNEL=${3:-chan}
[ "$CHANNEL" = default ] && CHANNEL=
TEST=CyrsyncDeferral.deferral
[ "$CHANNEL" = backup ] && TEST=CyrsyncBackupDeferral.deferral
# "spin": CyrsyncSpin.pm, a rolling sync_client (no -1) per channel and
# policy while a user's lock is held 15 s; on a vanilla prefix it only
# prints what Cyrus does (the loop), on a patched one it asserts
if [ "$CHANNEL" = spin ]; then
    TEST=CyrsyncSpin.spin
    case "$PREFIX" in *-vanilla/*|*-vanilla) : "${CYRSYNC_SPIN_FLAVOUR:=vanilla}" ;; esac
    : "${CYRSYNC_SPIN_FLAVOUR:=patched}"
    export CYRSYNC_SPIN_FLAVOUR
fi
# policy fail: the quarantine flow (sync_quarantine_after 2)
QUARANTINE=
if [ "$POLICY" = fail ] && [ "$CHANNEL" = chan ]; then
    TEST=CyrsyncDeferral.quarantine QUARANTINE=2
fi
MODULE=${TEST%%.*}
CASS=${CASSANDANE:-$(dirname "$PREFIX")/src/cassandane}
WORK=${LIVE_WORK:-/var/tmp/cs/live}
PORT=${LIVE_BASE_PORT:-9700}

[ -x "$PREFIX/sbin/sync_client" ] || [ -x "$PREFIX/libexec/sync_client" ] \
    || [ -x "$PREFIX/bin/sync_client" ] || { echo "no sync_client under $PREFIX"; exit 2; }
[ -f "$CASS/testrunner.pl" ] || { echo "no Cassandane at $CASS"; exit 2; }

mkdir -p "$WORK/bin"
# the admin CLI, for `cyrsync channel show`
( cd "$REPO" && cargo build --release --bin cyrsync >"$WORK/cargo.log" 2>&1 ) \
    || { tail -n 20 "$WORK/cargo.log"; exit 1; }
target=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
         | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
cp "${target:-$REPO/target}/release/cyrsync" "$HERE/holdlock.py" "$WORK/bin/"
[ -e "$CASS/utils/syslog.so" ] || make -C "$CASS/utils" >"$WORK/utils.log" 2>&1

cp "$HERE/$MODULE.pm" "$CASS/Cassandane/Cyrus/$MODULE.pm"
rm -rf "$WORK/root"
mkdir -p "$WORK/root"
cat >"$WORK/cassandane.ini" <<INI
[cassandane]
rootdir = $WORK/root
base_port = $PORT
cleanup = no
[cyrus default]
prefix = $PREFIX
INI
: >"$WORK/transcript.txt"
chown -R cyrus:mail "$WORK" "$CASS/Cassandane/Cyrus/$MODULE.pm"
chmod 755 "$WORK" "$WORK/bin"

echo "# deferral scenario: prefix $PREFIX, policy $POLICY, channel ${CHANNEL:-(default)}, $(date -u '+%F %T UTC')"
rc=0
( cd "$CASS" && CYRSYNC_CLI="$WORK/bin/cyrsync" CYRSYNC_HOLDLOCK="$WORK/bin/holdlock.py" \
    CYRSYNC_TRANSCRIPT="$WORK/transcript.txt" CYRSYNC_POLICY="$POLICY" CYRSYNC_CHANNEL="$CHANNEL" CYRSYNC_QUARANTINE="$QUARANTINE" \
    perl -I"$REPO/tests/cyrus/perl" -MCyrsyncCassFix ./testrunner.pl \
        --config "$WORK/cassandane.ini" -f pretty -j 2 "$TEST" ) \
    >"$WORK/testrunner.log" 2>&1 || rc=$?
sed "s|$WORK/root/[^ ]*/conf|CONF|g" "$WORK/transcript.txt"
echo
echo "# testrunner (exit $rc; Test2 IPC noise after the result is harmless):"
sed 's/\x1b\[[0-9;]*m//g' "$WORK/testrunner.log" | grep -E '^\[|^OK|^FAILURES|Tests run' | head -n 30
exit "$rc"
