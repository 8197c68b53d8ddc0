#!/usr/bin/env bash
# tests/cyrus/replicalock/replicalock.sh -- a replica that holds one user's
# lock (or is frozen) while a rolling sync_client replicates.  See --help.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: tests/cyrus/replicalock/replicalock.sh PREFIX [options]

PREFIX is a Cyrus install prefix from tests/cyrus/run (WORK/<v>-<flavour>/inst),
vanilla or patched; it runs the master, and the replica too unless
--replica PREFIX2 is given (e.g. a vanilla master against a patched
replica).  Run as root; a `cyrus` user must exist.  Issue 12 (Cyrus issue
#1922): a replica that waits forever on a lock holds up every user.

 1. a master (imapd, sync_log: 1, channel CHANNEL, sync_repeat_interval
    INTERVAL) on 127.0.0.1:PORT and a replica (imapd on PORT+1,
    sync_server on PORT+2; sync_server_lock_wait: WAIT where the replica's
    build has the option, cyrus-patches 0005); users alice, bob and carol;
    a rolling `sync_client -R [-n CHANNEL]` on the master; syslog of each
    captured by Cassandane's utils/syslog.so;
 2. one message per user per second APPENDed on the master for the whole
    run (replicalock.py run); every second one line: messages on the
    master and on the replica per user, each user's replication lag (age
    of the oldest message not yet on the replica), sync_client passes
    (log -> log-run renames plus "Reprocessing sync log file" lines);
 3. LOCK: holdlock.py holds alice's lock file on the replica (--lock user:
    her user namespace lock `*U*alice`, which sync_server takes before
    applying any of her mailboxes and every open of her mailboxes takes
    shared; --lock mailbox: her INBOX's own lock) for HOLD seconds, as a
    long reconstruct, squatter or admin tool would;
 4. FROZEN (--freeze SECS > 0): the replica frozen for SECS seconds with
    `cyrsync withlock` (patched replica; global_lock_max_freeze raised
    above SECS), upstream's `cyr_withlock_run` (vanilla 3.12: its own
    global lock, unbounded), or nothing where the replica has no barrier
    (vanilla 3.6/3.10: "n/a");
 5. the appenders stop; master and replica are compared: per user the
    message count and the UID list.

Judged (--assert, for patched master + patched replica; otherwise only
printed, with the verdict each check would have):
  lag      bob's and carol's largest lag of a message on its way while
           alice was locked (appended before the release, not on the
           replica before the lock) < 2 x INTERVAL + WAIT
  release  alice on the replica within INTERVAL + 1 s of the release (the
           second: the 1/4 s poll and the pass itself)
  loop     at most HOLD/INTERVAL + 2 passes while locked, no log-run
           reprocessed (a pass that failed and was replayed)
  frozen   during the freeze everyone may lag (every writer is frozen),
           but the same sync_client keeps running, no run fails or is
           replayed, at most FREEZE/INTERVAL + 2 passes, and every user is
           on the replica within 2 x INTERVAL + WAIT of the thaw
  same     master and replica have the same messages (count and UIDs) for
           every user at the end, and every APPEND was OK (nothing lost)
Prints the table, then one line "REPLICALOCK key=value ..." for
tests/cyrus/run's side-by-side table, then PASS or the failed checks.

Options:
  --replica PREFIX2   the replica's install prefix (default: PREFIX)
  --dir DIR           instance dir (default /var/tmp/cs/replicalock)
  --port N            first of three ports (default 10300)
  --hold S            seconds alice is locked (default 60)
  --interval S        sync_repeat_interval (default 3: with the wait of 3 s a
                      pass that meets the lock lasts about one interval, and the
                      lag bound keeps 3 s of slack over the worst case, a user
                      synced first in one pass and last in the next)
  --wait S            sync_server_lock_wait on the replica (default 3)
  --freeze S          seconds the replica is frozen; 0: no frozen phase
                      (default 8)
  --lock user|mailbox which of alice's locks is held (default user)
  --channel NAME      sync log channel; "default" for the default channel
                      (default rl)
  --cyrsync PATH      the cyrsync CLI (target/release/cyrsync), for the
                      frozen phase on a patched replica
  --assert            fail (exit 1) when a check fails
  --oneshot           instead of the rolling scenario: alice locked, one
                      new message per user, then `sync_client -u alice bob
                      carol` and one rolling pass `sync_client -R -1`; prints
                      "ONESHOT ..." lines (exit code, seconds, who arrived)
  -h, --help          this text
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
PREFIX=$(cd "$1" && pwd); shift
RPREFIX=$PREFIX
DIR=/var/tmp/cs/replicalock
PORT=10300
HOLD=60
INTERVAL=3
WAIT=3
FREEZE=8
LOCK=user
CHANNEL=rl
CYRSYNC=
ASSERT=0
ONESHOT=0
while [ $# -gt 0 ]; do
    case "$1" in
        --replica) RPREFIX=$(cd "$2" && pwd); shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --hold) HOLD=$2; shift 2 ;;
        --interval) INTERVAL=$2; shift 2 ;;
        --wait) WAIT=$2; shift 2 ;;
        --freeze) FREEZE=$2; shift 2 ;;
        --lock) LOCK=$2; shift 2 ;;
        --channel) CHANNEL=$2; shift 2 ;;
        --cyrsync) CYRSYNC=$(readlink -f "$2"); shift 2 ;;
        --assert) ASSERT=1; shift ;;
        --oneshot) ONESHOT=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "replicalock: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ "$CHANNEL" = default ] && CHANNEL=
case "$LOCK" in user|mailbox) ;; *) echo "replicalock: --lock user|mailbox" >&2; exit 2 ;; esac

. "$HERE/../lib/instance.sh"
MASTER_BIN=$(inst_bin "$PREFIX" master) || exit 2
RMASTER_BIN=$(inst_bin "$RPREFIX" master) || exit 2
SYNC_CLIENT=$(inst_bin "$PREFIX" sync_client) || exit 2
inst_bin "$RPREFIX" sync_server >/dev/null || exit 2
inst_cassandane "$PREFIX" "$DIR.utils.log"
# what each side's build knows: patched (linked with cyrsync: tests/cyrus/run
# leaves .cyrsync.a in the build dir), its imapd.conf options
flavour_of() { if [ -e "$(dirname "$1")/.cyrsync.a" ]; then echo patched; else echo vanilla; fi; }
has_option() { grep -q "{ \"$2\"," "$(dirname "$1")/src/lib/imapoptions" 2>/dev/null; }
MFL=$(flavour_of "$PREFIX") RFL=$(flavour_of "$RPREFIX")
LW=no; has_option "$RPREFIX" sync_server_lock_wait && LW=yes
GL=no; has_option "$RPREFIX" global_lock && GL=yes
RL=(python3 "$HERE/replicalock.py")
USERS=(alice bob carol)

FAILS=()
check() {   # NAME OK(0|1) DETAIL
    if [ "$2" = 1 ]; then echo "  ok    $1: $3"; else echo "  FAIL  $1: $3"; FAILS+=("$1"); fi
}
say() { echo "[$(date -u +%H:%M:%S.%1N)] $*"; }

trap inst_cleanup EXIT

# ---------------------------------------------------------------- instances
M=$DIR/master R=$DIR/replica
inst_fresh replicalock "$DIR" "$M" "$R"
MEXTRA=("admins: admin" "sync_log: 1" "sync_repeat_interval: $INTERVAL"
        "sync_host: 127.0.0.1" "sync_port: $((PORT + 2))"
        "sync_authname: repluser" "sync_password: x" "sync_try_imap: no")
[ -n "$CHANNEL" ] && MEXTRA+=("sync_log_channels: $CHANNEL")
REXTRA=("admins: admin repluser")
[ $LW = yes ] && REXTRA+=("sync_server_lock_wait: ${WAIT}s")
# the barrier: 3.6/3.10 gain global_lock from patch 0003 (off by default);
# the freeze must outlast the lock wait, so the bound is raised above it
if [ $GL = yes ]; then
    REXTRA+=("global_lock: yes")
    has_option "$RPREFIX" global_lock_max_freeze && REXTRA+=("global_lock_max_freeze: $((FREEZE + 10))s")
fi
inst_imapd_conf "$M" master cyrsync-rl-master "${MEXTRA[@]}"
inst_imapd_conf "$R" replica cyrsync-rl-replica "${REXTRA[@]}"
inst_cyrus_conf "$M" "imap cmd=\"imapd -C $M/imapd.conf\" listen=\"127.0.0.1:$PORT\" prefork=1 maxchild=20"
inst_cyrus_conf "$R" "imap cmd=\"imapd -C $R/imapd.conf\" listen=\"127.0.0.1:$((PORT + 1))\" prefork=1 maxchild=20" \
    "sync cmd=\"sync_server -C $R/imapd.conf\" listen=\"127.0.0.1:$((PORT + 2))\" prefork=0 maxchild=4"
inst_own "$M" "$R"
chmod 755 "$DIR"

T0=$(date +%s)
say "master: $MFL $PREFIX (imap :$PORT); replica: $RFL $RPREFIX (imap :$((PORT + 1)), sync :$((PORT + 2)))"
say "channel ${CHANNEL:-(default)}, sync_repeat_interval ${INTERVAL}s, replica sync_server_lock_wait: $([ $LW = yes ] && echo "${WAIT}s" || echo "not in this build (blocks)"), lock held ${HOLD}s ($LOCK lock)"
inst_start replicalock "$MASTER_BIN" "$M" "$PORT"
inst_start replicalock "$RMASTER_BIN" "$R" "$((PORT + 1))"
"${RL[@]}" create "$PORT" "${USERS[@]}"
"${RL[@]}" append1 "$PORT" "${USERS[@]}"

# the rolling sync_client, for the whole run
SC_ARGS=(-C "$M/imapd.conf" -R -v)
[ -n "$CHANNEL" ] && SC_ARGS+=(-n "$CHANNEL")
setsid env LD_PRELOAD="$CASS/utils/syslog.so" CASSANDANE_SYSLOG_FNAME="$M/syslog" \
    "$SYNC_CLIENT" "${SC_ARGS[@]}" >"$DIR/sync_client.out" 2>&1 &
SC_PID=$!
PIDS+=("$SC_PID")
if ! "${RL[@]}" converge "$PORT" "$((PORT + 1))" 30 "${USERS[@]}"; then
    echo "replicalock: the replica did not get the first messages; sync_client says:"
    tail -n 20 "$DIR/sync_client.out"; grep sync_client "$M/syslog" | tail -n 20
    exit 1
fi
say "users created and replicated by sync_client pid $SC_PID ($(( $(date +%s) - T0 ))s of setup)"

# alice's lock file on the replica: her user namespace lock (*U*alice; in
# 3.12 lock/*U*user/alice.lock) or her INBOX's own lock (named after
# user.alice, or in 3.12 after the mailbox's uniqueid: STATUS MAILBOXID)
find "$R/conf/lock" -type f >"$DIR/lockfiles"
case $LOCK in
    user) LOCKFILE=$(grep -E '/\*U\*([^/]*/)?alice\.lock$' "$DIR/lockfiles" | head -n 1 || true) ;;
    mailbox)
        MBID=$("${RL[@]}" mailboxid "$((PORT + 1))" alice 2>/dev/null || true)
        if [ -n "$MBID" ] && grep -q "/$MBID\.lock\$" "$DIR/lockfiles"; then
            LOCKFILE=$(grep "/$MBID\.lock\$" "$DIR/lockfiles" | head -n 1)
        else
            LOCKFILE=$(grep -E 'user[./]alice\.lock$' "$DIR/lockfiles" | grep -v '\*U\*' | head -n 1 || true)
        fi ;;
esac
if [ -z "$LOCKFILE" ]; then
    echo "replicalock: no $LOCK lock file of alice under $R/conf/lock:"; sed 's/^/    /' "$DIR/lockfiles"
    exit 1
fi
say "alice's $LOCK lock on the replica: ${LOCKFILE#"$R"/}"

FREEZE_CMD= FREEZE_HOW=n/a
if [ "$FREEZE" != 0 ]; then
    if [ "$RFL" = patched ] && [ -n "$CYRSYNC" ]; then
        FREEZE_CMD="$CYRSYNC withlock -C $R/imapd.conf --max-freeze $((FREEZE + 10))s -- /bin/sleep $FREEZE"
        FREEZE_HOW="cyrsync withlock"
    elif [ "$RFL" = vanilla ] && [ $GL = yes ]; then
        FREEZE_CMD="$(inst_bin "$RPREFIX" cyr_withlock_run) -C $R/imapd.conf -- /bin/sleep $FREEZE"
        FREEZE_HOW="cyr_withlock_run (upstream's global lock)"
    fi
    say "frozen phase: ${FREEZE}s with $FREEZE_HOW$([ -z "$FREEZE_CMD" ] && echo " (no barrier in this replica build, or no --cyrsync: skipped)")"
fi

# --oneshot: the one-shot modes against the locked replica instead of the
# rolling scenario (the compatibility matrix): the rolling sync_client is
# stopped; alice locked; one new message per user; then `sync_client -u
# alice bob carol`, and `sync_client -R -1` (one rolling pass) on the
# channel; each: exit code, seconds, whether bob and carol arrived, what
# is left in the channel's directory
if [ $ONESHOT = 1 ]; then
    kill -TERM "$SC_PID"; wait "$SC_PID" 2>/dev/null || true
    python3 "$HERE/../syncclient/holdlock.py" "$LOCKFILE" >"$DIR/holdlock.out" &
    HOLDER=$!
    PIDS+=("$HOLDER")
    for _ in $(seq 50); do grep -q locked "$DIR/holdlock.out" && break; sleep 0.1; done
    say "alice locked on the replica; one-shot runs (timeout 60s each)"
    oneshot() {   # LABEL ARGS...
        local label=$1; shift
        "${RL[@]}" append1 "$PORT" "${USERS[@]}"
        local t0 rc=0
        t0=$(date +%s.%N)
        env LD_PRELOAD="$CASS/utils/syslog.so" CASSANDANE_SYSLOG_FNAME="$M/syslog" \
            timeout 60 "$SYNC_CLIENT" -C "$M/imapd.conf" "$@" >"$DIR/oneshot-$label.out" 2>&1 || rc=$?
        local secs; secs=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
        # (alice cannot be read on the replica while locked: any open of
        # her mailboxes takes her user lock shared)
        local got=""
        for u in bob carol; do
            got="$got $u:$("${RL[@]}" compare "$PORT" "$((PORT + 1))" "$u" | sed -n 's/.*uids_equal=\([A-Za-z]*\).*/\1/p' | head -n 1)"
        done
        echo "ONESHOT $label exit=$rc seconds=$secs replicated:$got left=$(ls "$M/conf/sync${CHANNEL:+/$CHANNEL}" 2>/dev/null | tr '\n' ',')"
        grep -E 'bailing|Deferred|LOCKED|failed|rror' "$DIR/oneshot-$label.out" | sort | uniq -c | head -n 5 | sed 's/^/      /' || true
    }
    oneshot user -v -u alice bob carol
    oneshot rolling-once -v -R -1 ${CHANNEL:+-n "$CHANNEL"}
    kill -TERM "$HOLDER"
    exit 0
fi

echo
"${RL[@]}" run --mport "$PORT" --rport "$((PORT + 1))" --chandir "$M/conf/sync${CHANNEL:+/$CHANNEL}" \
    --syslog "$M/syslog" --sc-pid "$SC_PID" --hold "$HOLD" \
    --hold-cmd "python3 $HERE/../syncclient/holdlock.py '$LOCKFILE'" \
    --freeze-cmd "$FREEZE_CMD" --postmax $((2 * INTERVAL + WAIT + 15)) | tee "$DIR/run.out"
echo
RLLINE=$(grep '^RL ' "$DIR/run.out" | tail -n 1)
val() { tr ' ' '\n' <<<"$RLLINE" | sed -n "s/^$1=//p" | head -n 1; }

"${RL[@]}" compare "$PORT" "$((PORT + 1))" "${USERS[@]}" | tee "$DIR/compare.out"
DIFFER=$(sed -n 's/^differ //p' "$DIR/compare.out")

echo
echo "sync_client's syslog (first lines about runs, locks and failures):"
grep "sync_client\[$SC_PID\]" "$M/syslog" \
    | grep -E 'LOCKED|ocked|Deferred|Reprocessing|failed|bailing|SYNCERROR|SYNCNOTICE|quarantin' \
    | sed 's/^[A-Z][a-z][a-z] [0-9 ][0-9] [0-9:.]* [^ ]* /    /' | cut -c1-200 | sort | uniq -c | sort -rn | head -n 12 || true
echo "sync_server's syslog on the replica (lock waits):"
grep 'sync_server' "$R/syslog" | grep -E 'LOCKED|ocked|wait|timed out|SYNCERROR|IOERROR' \
    | sed 's/^[A-Z][a-z][a-z] [0-9 ][0-9] [0-9:.]* [^ ]* /    /' | cut -c1-200 | sort | uniq -c | sort -rn | head -n 8 || true
DEATHS=$(cat "$M/syslog" "$R/syslog" "$M/master.log" "$R/master.log" \
         | grep -c -E 'signaled to death|terminated abnormally|core dumped' || true)

# ---------------------------------------------------------------- verdict
echo
echo "checks (bounds: lag < 2 x ${INTERVAL}s + ${WAIT}s = $((2 * INTERVAL + WAIT))s):"
# num A OP B: a comparison of two decimals (false when either is missing)
num() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) $2 float(sys.argv[2]) else 1)" "$1" "$3" 2>/dev/null; }
bound=$((2 * INTERVAL + WAIT))
ok=1; num "$(val lag_bob)" '<' "$bound" || ok=0; num "$(val lag_carol)" '<' "$bound" || ok=0
check lag $ok "bob $(val lag_bob)s, carol $(val lag_carol)s while alice was locked $(val hold)s"
ar=$(val alice_after_release)
ok=1; { num "$ar" '>=' 0 && num "$ar" '<=' $((INTERVAL + 1)); } || ok=0
check release $ok "alice on the replica ${ar}s after the release (-1: not within the wait)"
ok=1; num "$(val passes_lock)" '<=' "$(python3 -c "print($(val hold) / $INTERVAL + 2)")" || ok=0
[ "$(val reprocessed)" = 0 ] || ok=0
check loop $ok "$(val passes_lock) passes while locked ($(val hold)s, interval ${INTERVAL}s); log-run reprocessed $(val reprocessed) times in the whole run"
if [ -n "$FREEZE_CMD" ]; then
    ok=1
    [ "$(val sc_alive)" = 1 ] && [ "$(val failed_runs)" = 0 ] && [ "$(val reprocessed)" = 0 ] || ok=0
    num "$(val passes_frozen)" '<=' "$(python3 -c "print($(val frozen) / $INTERVAL + 2)")" || ok=0
    at=$(val after_thaw)
    { num "$at" '>=' 0 && num "$at" '<' "$bound"; } || ok=0
    check frozen $ok "frozen $(val frozen)s ($FREEZE_HOW, exit $(val freeze_rc)): lag alice $(val frozen_lag_alice)s bob $(val frozen_lag_bob)s carol $(val frozen_lag_carol)s; $(val passes_frozen) passes; all on the replica ${at}s after the thaw; sync_client still running: $([ "$(val sc_alive)" = 1 ] && echo yes || echo NO), failed runs $(val failed_runs)"
else
    echo "  -     frozen: not run ($FREEZE_HOW)"
fi
ok=1; [ "$DIFFER" = 0 ] && [ "$(val append_failed)" = 0 ] && [ "$(val converged)" = 1 ] || ok=0
check same $ok "$(val appended) messages appended, $(val append_failed) APPENDs failed; users differing at the end: $DIFFER"
ok=1; [ "$DEATHS" = 0 ] || ok=0
check deaths $ok "$DEATHS process deaths"

echo
echo "REPLICALOCK master=$MFL replica=$RFL lock_wait=$([ $LW = yes ] && echo "${WAIT}s" || echo none) $(cut -d' ' -f2- <<<"$RLLINE") differ=$DIFFER deaths=$DEATHS failed_checks=${#FAILS[@]} total_seconds=$(( $(date +%s) - T0 ))"
if [ ${#FAILS[@]} -eq 0 ]; then echo "replicalock: PASS"; else echo "replicalock: FAILED: ${FAILS[*]}"; fi
[ $ASSERT = 0 ] || [ ${#FAILS[@]} -eq 0 ]
