#!/usr/bin/env bash
# tests/cyrus/synclog/faults.sh -- the sync log of a live Cyrus on a full
# disk.  See --help.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: tests/cyrus/synclog/faults.sh PREFIX [options]

PREFIX is a Cyrus install prefix from tests/cyrus/run (WORK/<v>-<flavour>/inst),
vanilla or patched: the same steps show what C does and what cyrsync does.
Run as root: the script re-runs itself in a private mount namespace
(unshare -m --propagation private), where the master's <configdir>/sync/ is
a small tmpfs that nothing outside sees; it is gone with the namespace.

 1. a master (imapd, sync_log: 1, default channel) and a replica (imapd,
    sync_server) on 127.0.0.1:PORT, PORT+1 (imap) and PORT+2 (sync), syslog
    of each captured by Cassandane's utils/syslog.so;
 2. before: users pre, during, post1..post3; NPRE APPENDs to pre, one to
    each postN; the log is copied (log.before);
 3. the fault: a filler file takes every free page of the tmpfs; one IMAP
    client APPENDs to `during` until the log has not grown for STALL
    APPENDs in a row (its records fail: ENOSPC) -- every APPEND must still
    be OK, and a new connection must be served meanwhile;
 4. space is freed (the filler removed); post1..post3 each SUBSCRIBE their
    INBOX: one record each (SUB), the only one for that user after the
    fault, so a record lost or glued onto a torn one shows as a
    subscription not replicated; then NPOST APPENDs to pre;
 5. checks on the log (log.after): every line parses (no torn line, no
    partial last line: faultload.py logcheck), the log of step 2 is still
    its prefix, post1..post3 are logged; syslog of the fault has a line
    about the failed records (SYNCERROR/IOERROR naming the mailbox);
 6. `sync_client -R -1 -o` replicates what the log says; pre and post1..3
    must have as many messages and subscriptions on the replica as on the
    master (lost = the difference); no Cyrus process died of a signal.

Exit 77 (skipped) where a tmpfs cannot be mounted in a private mount
namespace (not root, or a container without CAP_SYS_ADMIN).
Prints a transcript, then one line
  FAULTS appends_ok=.. appends_failed=.. records_before=.. ...
for tests/cyrus/run's side-by-side table.  Exit 0 when every check holds
(required of a patched build; C fails some of them: that is the point).

Options:
  --dir DIR      instance dir (default /var/tmp/cs/faults)
  --port N       first of the three ports (default 9900)
  --size S       the tmpfs size, mount's syntax (default 64k)
  --pre N        APPENDs to pre before the fault (default 5)
  --post N       APPENDs to pre after the fault (default 2)
  --stall N      the disk counts as full after N APPENDs that did not grow
                 the log (default 40)
  --max N        at most N APPENDs during the fault (default 3000)
  -h, --help     this text
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
PREFIX=$(cd "$1" && pwd); shift
DIR=/var/tmp/cs/faults
PORT=9900
SIZE=64k
NPRE=5
NPOST=2
STALL=40
MAXAPP=3000
ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --pre) NPRE=$2; shift 2 ;;
        --post) NPOST=$2; shift 2 ;;
        --stall) STALL=$2; shift 2 ;;
        --max) MAXAPP=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "faults: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

# exit 77: skipped (tests/cyrus/run reports SKIP, not FAIL)
if [ "$(id -u)" != 0 ]; then
    echo "faults: SKIP: needs root (a tmpfs in a private mount namespace; Cyrus switches to the cyrus user)"
    exit 77
fi
# everything below runs in a mount namespace of its own: the tmpfs is seen
# by this script and the Cyrus processes it starts, and by nothing else
if [ -z "${CYRSYNC_FAULTS_NS:-}" ]; then
    if ! unshare -m --propagation private sh -c \
            'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d" && umount "$d" && rmdir "$d"' 2>/dev/null; then
        echo "faults: SKIP: cannot mount a tmpfs in a private mount namespace here (unshare -m: no CAP_SYS_ADMIN?)"
        exit 77
    fi
    exec unshare -m --propagation private env CYRSYNC_FAULTS_NS=1 "$0" "$PREFIX" "${ARGS[@]}"
fi

. "$HERE/../lib/instance.sh"
MASTER_BIN=$(inst_bin "$PREFIX" master) || exit 2
SYNC_CLIENT=$(inst_bin "$PREFIX" sync_client) || exit 2
inst_bin "$PREFIX" imapd >/dev/null && inst_bin "$PREFIX" sync_server >/dev/null || exit 2
inst_cassandane "$PREFIX" "$DIR.utils.log"
LOAD=(python3 "$HERE/faultload.py")

FAILS=()
fail() { FAILS+=("$*"); echo "FAIL: $*"; }
say() { echo "[$(date -u +%H:%M:%S.%1N)] $*"; }

trap inst_cleanup EXIT

# ---------------------------------------------------------------- instances
M=$DIR/master R=$DIR/replica
inst_fresh faults "$DIR" "$M" "$R"
SYNC=$M/conf/sync
mount -t tmpfs -o "size=$SIZE,mode=0750,uid=$(id -u cyrus),gid=$(id -g cyrus)" faults-tmpfs "$SYNC"
inst_imapd_conf "$M" master cyrsync-faults-master "admins: admin" "sync_log: 1" \
    "sync_host: 127.0.0.1" "sync_port: $((PORT + 2))" \
    "sync_authname: repluser" "sync_password: x" \
    "sync_try_imap: no"
inst_imapd_conf "$R" replica cyrsync-faults-replica "admins: admin repluser"
inst_cyrus_conf "$M" "imap cmd=\"imapd -C $M/imapd.conf\" listen=\"127.0.0.1:$PORT\" prefork=1 maxchild=10"
inst_cyrus_conf "$R" "imap cmd=\"imapd -C $R/imapd.conf\" listen=\"127.0.0.1:$((PORT + 1))\" prefork=1 maxchild=10" \
    "sync cmd=\"sync_server -C $R/imapd.conf\" listen=\"127.0.0.1:$((PORT + 2))\" prefork=0 maxchild=4"
inst_own "$M" "$R"
chmod 755 "$DIR"

T0=$(date +%s)
say "prefix $PREFIX; master imap 127.0.0.1:$PORT, replica imap :$((PORT + 1)) sync :$((PORT + 2))"
say "master's $SYNC: tmpfs size=$SIZE in a private mount namespace"
inst_start faults "$MASTER_BIN" "$M" "$PORT"
inst_start faults "$MASTER_BIN" "$R" "$((PORT + 1))"
say "master and replica up"

lines_of() { [ -e "$1" ] && python3 -c "import sys; print(open(sys.argv[1],'rb').read().count(b'\n'))" "$1" || echo 0; }
size_of() { [ -e "$1" ] && stat -c %s "$1" || echo 0; }
# the master's syslog from byte offset $1 (to $2)
syslog_from() {
    python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); sys.stdout.buffer.write(d[int(sys.argv[2]):int(sys.argv[3]) if len(sys.argv) > 3 else len(d)])' \
        "$M/syslog" "$@"
}

# ---------------------------------------------------------------- before
"${LOAD[@]}" create "$PORT" pre during post1 post2 post3
read -r _ pre_ok pre_failed < <("${LOAD[@]}" append "$PORT" pre "$NPRE")
for u in post1 post2 post3; do
    read -r _ o f < <("${LOAD[@]}" append "$PORT" "$u" 1)
    pre_ok=$((pre_ok + o)) pre_failed=$((pre_failed + f))
done
cp "$SYNC/log" "$DIR/log.before" 2>/dev/null || : >"$DIR/log.before"
REC_BEFORE=$(lines_of "$DIR/log.before")
say "before: created 5 users, $pre_ok/$((NPRE + 3)) APPENDs to pre and post1..3 OK; log: $REC_BEFORE records, $(size_of "$DIR/log.before") bytes"
[ "$pre_failed" = 0 ] || fail "before the fault: $pre_failed APPENDs failed"

# ---------------------------------------------------------------- the fault
dd if=/dev/zero of="$SYNC/filler" bs=4096 >/dev/null 2>&1 || true
say "tmpfs full: $(df -k --output=used,avail "$SYNC" | tail -n 1 | awk '{print $1 " KiB used, " $2 " KiB free"}'), log $(size_of "$SYNC/log") bytes (its last page's tail is all that is left)"
SYSLOG_MARK=$(size_of "$M/syslog")
read -r _ dur_ok dur_failed STALLED < <("${LOAD[@]}" fill "$PORT" during "$SYNC/log" "$MAXAPP" "$STALL" 2>"$DIR/fill.err")
cp "$SYNC/log" "$DIR/log.during"
REC_DURING=$(lines_of "$DIR/log.during")
say "during: $dur_ok APPENDs OK, $dur_failed failed, log stopped growing: $([ "$STALLED" = 1 ] && echo yes || echo no); log: $REC_DURING records, $(size_of "$DIR/log.during") bytes"
[ -s "$DIR/fill.err" ] && sed 's/^/    client: /' "$DIR/fill.err" | head -n 5 || true
# imapd keeps serving: a new connection while the disk is still full
SERVED=no
read -r _ n _ < <("${LOAD[@]}" count "$PORT" pre)
[ "$n" = "$NPRE" ] && SERVED=yes
say "a new IMAP connection during the fault: STATUS pre -> $n messages (served: $SERVED)"

rm -f "$SYNC/filler"
SYSLOG_FREED=$(size_of "$M/syslog")
say "space freed: $(df -k --output=avail "$SYNC" | tail -n 1 | tr -d ' ') KiB free"

# ---------------------------------------------------------------- after
read -r _ sub_ok sub_failed < <("${LOAD[@]}" sub "$PORT" post1 post2 post3)
read -r _ post_ok post_failed < <("${LOAD[@]}" append "$PORT" pre "$NPOST")
cp "$SYNC/log" "$DIR/log.after"
REC_AFTER=$(lines_of "$DIR/log.after")
say "after: post1..post3 SUBSCRIBE INBOX: $sub_ok/3 OK; $post_ok/$NPOST APPENDs to pre OK; log: $REC_AFTER records, $(size_of "$DIR/log.after") bytes"

# the syslog of the fault: what the daemons said about the failed records
syslog_from "$SYSLOG_MARK" "$SYSLOG_FREED" >"$DIR/syslog.fault"
grep -E 'IOERROR|SYNCERROR|sync_log|write\(\) to|No space left' "$DIR/syslog.fault" >"$DIR/syslog.fault.synclog" || true
SYSLOG_LINES=$(wc -l <"$DIR/syslog.fault.synclog")
SYSLOG_NAMING=$(grep -E 'IOERROR|SYNCERROR' "$DIR/syslog.fault.synclog" | grep -c 'user\.during' || true)
say "syslog during the fault: $SYSLOG_LINES lines about the sync log, $SYSLOG_NAMING SYNCERROR/IOERROR naming the record (user.during); first ones:"
sed 's/^[A-Z][a-z][a-z] [0-9 ][0-9] [0-9:.]* [^ ]* /    /' "$DIR/syslog.fault.synclog" | cut -c1-200 | sort | uniq -c | sort -rn | head -n 4 || true

"${LOAD[@]}" logcheck "$DIR/log.after" >"$DIR/logcheck.after"
read -r _ _ _ TORN _ TAIL_TORN < <(head -n 1 "$DIR/logcheck.after")
say "log after the fault: $(head -n 1 "$DIR/logcheck.after")"
grep '^torn ' "$DIR/logcheck.after" | head -n 5 | sed 's/^/    /' || true
PREFIX_KEPT=no
if cmp -s -n "$(size_of "$DIR/log.before")" "$DIR/log.before" "$DIR/log.after"; then PREFIX_KEPT=yes; fi
# records of before that are not in after, line by line
LOST_LINES=$(python3 - "$DIR/log.before" "$DIR/log.after" <<'EOF'
import collections, sys
b = collections.Counter(open(sys.argv[1], 'rb').read().split(b'\n')[:-1])
a = collections.Counter(open(sys.argv[2], 'rb').read().split(b'\n'))
print(sum(max(0, n - a[l]) for l, n in b.items()))
EOF
)
# what was logged after the fault: the lines of log.after from the first
# one log.during does not end (a record glued onto a torn one is not whole)
python3 - "$DIR/log.during" "$DIR/log.after" >"$DIR/log.new" <<'EOF'
import sys
during = open(sys.argv[1], 'rb').read()
sys.stdout.buffer.write(open(sys.argv[2], 'rb').read()[during.rfind(b'\n') + 1:])
EOF
POST_LOGGED=0
for u in post1 post2 post3; do
    grep -qx "SUB $u user\\.$u" "$DIR/log.new" && POST_LOGGED=$((POST_LOGGED + 1))
done
say "log of before kept as the prefix: $PREFIX_KEPT ($LOST_LINES records of before missing); subscriptions of post1..post3 logged as whole records: $POST_LOGGED/3"

# ---------------------------------------------------------------- replicate
SYSLOG_SC=$(size_of "$M/syslog")
sc_rc=0
env LD_PRELOAD="$CASS/utils/syslog.so" CASSANDANE_SYSLOG_FNAME="$M/syslog" \
    timeout 60 "$SYNC_CLIENT" -C "$M/imapd.conf" -v -o -R -1 >"$DIR/sync_client.out" 2>&1 || sc_rc=$?
say "sync_client -R -1 -o: exit $sc_rc"
grep -v -E 'imap_sasl|debug logging' "$DIR/sync_client.out" | head -n 8 | sed 's/^/    | /' || true
syslog_from "$SYSLOG_SC" | grep -E 'sync_client' | grep -E 'ERROR|rror|Invalid|Garbage|set aside|log-bad|Unknown' \
    | sed 's/^[A-Z][a-z][a-z] [0-9 ][0-9] [0-9:.]* [^ ]* /    syslog: /' | cut -c1-200 | head -n 6 || true
echo "    left in sync/: $(cd "$SYNC" && ls -l | awk 'NR > 1 { printf "%s(%s bytes) ", $9, $5 }')"
LOG_BAD=$(size_of "$SYNC/log-bad")

LOST=0 REPLICATED=yes
USERS=(pre during post1 post2 post3)
"${LOAD[@]}" count "$PORT" "${USERS[@]}" >"$DIR/count.master"
"${LOAD[@]}" count "$((PORT + 1))" "${USERS[@]}" >"$DIR/count.replica"
printf '    %-8s %16s %16s\n' user 'master msgs/subs' 'replica msgs/subs'
while read -r u m mf r rf; do
    note=
    if [ "$u" = during ]; then
        note="  (its records failed on the full disk, in C too: not judged)"
    elif [ "$m" != "$r" ] || [ "$mf" != "$rf" ]; then
        note="  <- not replicated"
        REPLICATED=no
        LOST=$((LOST + (m > r ? m - (r < 0 ? 0 : r) : 0) + (mf > rf ? mf - (rf < 0 ? 0 : rf) : 0)))
    fi
    printf '    %-8s %16s %16s%s\n' "$u" "$m/$mf" "$r/$rf" "$note"
done < <(join "$DIR/count.master" "$DIR/count.replica")
[ "$sc_rc" = 0 ] || REPLICATED=no

# ---------------------------------------------------------------- deaths
DEATHS=$(cat "$M/syslog" "$R/syslog" "$M/master.log" "$R/master.log" \
         | grep -c -E 'signaled to death|terminated abnormally|core dumped' || true)
[ "$sc_rc" -ge 128 ] && [ "$sc_rc" != 124 ] && DEATHS=$((DEATHS + 1))
for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || DEATHS=$((DEATHS + 1)); done
say "process deaths (signals, abnormal exits, a master gone): $DEATHS"

# ---------------------------------------------------------------- verdict
[ "$dur_failed" = 0 ] && [ "$post_failed" = 0 ] && [ "$sub_failed" = 0 ] \
    || fail "IMAP commands failed: $dur_failed APPENDs during the fault, $sub_failed SUBSCRIBEs and $post_failed APPENDs after"
[ "$STALLED" = 1 ] || fail "the log never stopped growing during the fault (the disk never got full?)"
[ "$SERVED" = yes ] || fail "imapd did not serve a new connection during the fault"
[ "$SYSLOG_NAMING" -ge 1 ] || fail "no SYNCERROR/IOERROR line naming a failed record (user.during)"
[ "$TORN" = 0 ] && [ "$TAIL_TORN" = 0 ] || fail "the log does not read cleanly: $TORN torn line(s), partial last line: $TAIL_TORN"
[ "$PREFIX_KEPT" = yes ] && [ "$LOST_LINES" = 0 ] || fail "the log of before the fault was not kept ($LOST_LINES records missing)"
[ "$POST_LOGGED" = 3 ] || fail "only $POST_LOGGED of 3 changes after the fault were logged as whole records"
[ "$REPLICATED" = yes ] || fail "not everything was replicated (sync_client exit $sc_rc)"
[ "$LOST" = 0 ] || fail "$LOST change(s) logged before or after the fault did not reach the replica (messages, subscriptions)"
[ "$DEATHS" = 0 ] || fail "$DEATHS process death(s)"

echo
echo "FAULTS appends_ok=$((pre_ok + dur_ok + post_ok)) appends_failed=$((pre_failed + dur_failed + post_failed + sub_failed))" \
     "fault_appends=$dur_ok records_before=$REC_BEFORE records_during=$REC_DURING records_after=$REC_AFTER" \
     "syslog_lines=$SYSLOG_LINES syslog_naming=$SYSLOG_NAMING torn=$((TORN + TAIL_TORN)) log_bad=$LOG_BAD" \
     "replicated=$REPLICATED lost=$((LOST + LOST_LINES)) deaths=$DEATHS served=$SERVED seconds=$(( $(date +%s) - T0 ))" \
     "checks_failed=${#FAILS[@]}"
if [ ${#FAILS[@]} -eq 0 ]; then echo "faults: PASS"; else echo "faults: ${#FAILS[@]} check(s) failed"; fi
[ ${#FAILS[@]} -eq 0 ]
