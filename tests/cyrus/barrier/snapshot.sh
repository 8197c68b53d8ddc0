#!/usr/bin/env bash
# tests/cyrus/barrier/snapshot.sh -- live snapshot under write load through
# the global write barrier.  See --help.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: tests/cyrus/barrier/snapshot.sh PREFIX [options]

PREFIX is the install prefix of a Cyrus built with --with-cyrsync and
cyrus-patches/<version>/0003-global-barrier.patch (e.g.
/var/tmp/cb/3.12.4-patched/inst).  Run as root; a `cyrus` user must exist.

1. Starts master with imapd on 127.0.0.1:PORT from a fresh instance in DIR
   (global_lock: yes, global_lock_max_freeze: MAXs,
   sasl_pwcheck_method: alwaystrue as Cassandane does).
2. Two clients APPEND to their INBOX in a loop (appender.py).
3. While they run, snapshots copy the config and spool dirs:
     frozen   cyr_withlock_run -- copy conf (less proc/ socket/ lock/) and spool     (NFROZEN times)
     cli      cyrsync withlock -C imapd.conf -- cp ...       (if --cyrsync)
     control  the same copy without any lock                 (NCONTROL times)
     nested   cyr_withlock_run -- reconstruct: a Cyrus tool under the freeze
              (CYRUS_HAVELOCK_GLOBAL=1) must not wait for it: exit 0, < MAX
     overrun  cyr_withlock_run -- sleep MAX+2: must exit 75, and the
              clients must not stall for much longer than MAX.
     damaged  the barrier file's version overwritten under the live
              daemons: cyr_withlock_run must exit 75 and leave it as it is
     removed  the barrier file deleted under the live daemons: the next
              cyr_withlock_run freezes a new file they do not use and
              must exit 75
4. Stops everything, then checks every copy with the copy's own config:
   `reconstruct -n -G` (reads every mailbox's cyrus.header/cyrus.index and
   spool dir, re-parses each message file against its index record, and
   reports without changing anything: a message file the index does not
   know, an index record whose file is missing or differs, a torn index),
   `cyr_dbtool ... consistent` on mailboxes.db, and the message count
   against the appends the clients had been told were done before the copy
   started; and tar's own "file changed as we read it" warnings.

Prints a transcript; exits 0 when every frozen copy is clean, every freeze
verdict is consistent, the overrun, damaged and removed cases are reported
(75) and the stall bound holds.  Control copies are reported, not judged (a race may miss).

Options:
  --dir DIR         instance dir (default /var/tmp/cb/snap)
  --port N          imapd port (default 9500)
  --max-freeze S    global_lock_max_freeze in seconds (default 2)
  --seconds S       the clients append until the last snapshot is done, at
                    most S seconds (default 120)
  --frozen N        frozen snapshots with cyr_withlock_run (default 3)
  --control N       unlocked control copies (default 4)
  --cyrsync PATH    the cyrsync CLI (target/release/cyrsync) for one more
                    snapshot through `cyrsync withlock`
  -h, --help        this text
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
PREFIX=$(cd "$1" && pwd); shift
DIR=/var/tmp/cb/snap
PORT=9500
MAX=2
SECONDS_LOAD=120
NFROZEN=3
NCONTROL=4
CYRSYNC=
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --max-freeze) MAX=$2; shift 2 ;;
        --seconds) SECONDS_LOAD=$2; shift 2 ;;
        --frozen) NFROZEN=$2; shift 2 ;;
        --control) NCONTROL=$2; shift 2 ;;
        --cyrsync) CYRSYNC=$(readlink -f "$2"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "snapshot: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

SBIN=$PREFIX/sbin
MASTER=$PREFIX/libexec/master
[ -x "$MASTER" ] || MASTER=$PREFIX/sbin/master
for f in "$MASTER" "$SBIN/cyr_withlock_run" "$SBIN/reconstruct" "$SBIN/cyr_dbtool" "$SBIN/mbexamine"; do
    [ -x "$f" ] || { echo "snapshot: $f missing (not a patched install?)" >&2; exit 2; }
done

FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
say() { echo "[$(date -u +%H:%M:%S.%3N)] $*"; }
now() { date +%s.%N; }

MASTER_PID=
APPENDERS=()
cleanup() {
    local p
    for p in "${APPENDERS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$MASTER_PID" ] && kill -0 "$MASTER_PID" 2>/dev/null; then
        kill -TERM "$MASTER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$MASTER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MASTER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- instance
if [ -f "$DIR/master.pid" ] && kill -0 "$(cat "$DIR/master.pid")" 2>/dev/null; then
    echo "snapshot: a master from an earlier run is still alive (pid $(cat "$DIR/master.pid")); stop it first" >&2
    exit 2
fi
rm -rf "$DIR"
mkdir -p "$DIR"/{conf,spool,snaps}
mkdir -p "$DIR"/conf/{socket,proc,lock,log,db,sieve}
write_conf() {   # FILE CONFDIR SPOOLDIR GLOBAL_LOCK
    cat >"$1" <<EOF
configdirectory: $2
partition-default: $3
defaultpartition: default
servername: localhost
admins: admin
sasl_pwcheck_method: alwaystrue
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
unixhierarchysep: no
altnamespace: no
syslog_prefix: cyrsync-snap
global_lock: $4
global_lock_max_freeze: ${MAX}s
EOF
}
write_conf "$DIR/imapd.conf" "$DIR/conf" "$DIR/spool" yes
cat >"$DIR/cyrus.conf" <<EOF
START {
  recover cmd="ctl_cyrusdb -C $DIR/imapd.conf -r"
}
SERVICES {
  imap cmd="imapd -C $DIR/imapd.conf" listen="127.0.0.1:$PORT" prefork=2 maxchild=10
}
EVENTS {
}
DAEMON {
}
EOF
chown -R cyrus:mail "$DIR"

say "instance $DIR, prefix $PREFIX, imapd on 127.0.0.1:$PORT, global_lock_max_freeze ${MAX}s"
"$MASTER" -C "$DIR/imapd.conf" -M "$DIR/cyrus.conf" -p "$DIR/master.pid" -D \
    >"$DIR/master.log" 2>&1 &
MASTER_PID=$!
for _ in $(seq 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
    sleep 0.1
done
kill -0 "$MASTER_PID" 2>/dev/null || { echo "master died:"; cat "$DIR/master.log"; exit 1; }
python3 - "$PORT" <<'EOF'
import imaplib, sys
imap = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
imap.login("admin", "x")
for u in ("test1", "test2"):
    typ, data = imap.create(f"user.{u}")
    if typ != "OK":
        sys.exit(f"CREATE user.{u}: {typ} {data}")
imap.logout()
EOF
say "master pid $MASTER_PID up; created user.test1 user.test2"

# ---------------------------------------------------------------- load
for u in test1 test2; do
    python3 "$HERE/appender.py" "$PORT" "$u" "$SECONDS_LOAD" "$DIR/append-$u.log" "$DIR/stop" &
    APPENDERS+=($!)
done
say "2 clients appending until the last snapshot is done"
sleep 2

# copy.sh SNAPDIR: what every snapshot runs (absolute paths: cyr_withlock_run
# does not search PATH); t0/t1 bracket the copy
cat >"$DIR/copy.sh" <<EOF
#!/bin/sh
set -e
date +%s.%N >"\$1/t0"
# proc/, socket/ and lock/ are run-time state (per-connection files, lock
# files, the barrier's own file, which writers touch while they wait), not
# data: they change outside any mailbox lock, so no snapshot holds them still
tar -C "$DIR" -cf - --exclude=conf/proc --exclude=conf/socket --exclude=conf/lock conf spool | tar -C "\$1" -xf -
date +%s.%N >"\$1/t1"
EOF
chmod 755 "$DIR/copy.sh"

SNAPS=()
snapshot() {   # KIND N COMMAND...
    local kind=$1 n=$2; shift 2
    local s=$DIR/snaps/$kind-$n
    mkdir -p "$s"; chown cyrus:mail "$s"
    local t0 rc=0 t1
    t0=$(now)
    "$@" "$s" >"$s/out" 2>&1 || rc=$?
    t1=$(now)
    echo "$rc" >"$s/rc"
    say "$kind-$n: exit $rc in $(python3 -c "print(f'{($t1-$t0)*1000:.0f}')") ms: $(grep -v '^$' "$s/out" | tr '\n' ' ' | cut -c1-200)"
    SNAPS+=("$kind-$n")
}

for i in $(seq "$NFROZEN"); do
    snapshot frozen "$i" "$SBIN/cyr_withlock_run" -C "$DIR/imapd.conf" "$DIR/copy.sh"
    sleep 0.7
done
if [ -n "$CYRSYNC" ]; then
    snapshot cli 1 "$CYRSYNC" withlock -C "$DIR/imapd.conf" --max-freeze "${MAX}s" -- "$DIR/copy.sh"
    sleep 0.7
fi
for i in $(seq "$NCONTROL"); do
    snapshot control "$i" su -s /bin/sh cyrus -c "$DIR/copy.sh \"\$0\""
    sleep 0.3
done

# nested: a Cyrus tool that takes exclusive mailbox locks, run under the
# freeze, sees CYRUS_HAVELOCK_GLOBAL=1 and must not wait for its own freeze
nt0=$(now)
nrc=0
# (-- : 3.12's cyr_withlock_run parses options with GNU getopt_long, which
# would take the command's own -C as its own)
"$SBIN/cyr_withlock_run" -C "$DIR/imapd.conf" -- "$SBIN/reconstruct" -C "$DIR/imapd.conf" user.test1 \
    >"$DIR/nested.out" 2>&1 || nrc=$?
nms=$(python3 -c "print(f'{($(now)-$nt0)*1000:.0f}')")
say "nested: cyr_withlock_run reconstruct user.test1: exit $nrc in $nms ms: $(tr '\n' ' ' <"$DIR/nested.out" | cut -c1-200)"
[ "$nrc" -eq 0 ] || fail "nested: cyr_withlock_run reconstruct exited $nrc, want 0"
[ "$nms" -lt $((MAX * 1000)) ] || fail "nested: took $nms ms: the tool waited for its own freeze"
sleep 0.5

# overrun: a command longer than the bound
OVER=$((MAX + 2))
ot0=$(now)
orc=0
"$SBIN/cyr_withlock_run" -C "$DIR/imapd.conf" /bin/sleep "$OVER" >"$DIR/overrun.out" 2>&1 || orc=$?
ot1=$(now)
say "overrun: cyr_withlock_run /bin/sleep $OVER: exit $orc: $(tr '\n' ' ' <"$DIR/overrun.out" | cut -c1-300)"
[ "$orc" -eq 75 ] || fail "overrun: cyr_withlock_run exited $orc, want 75 (EX_TEMPFAIL)"

# damaged: the barrier file damaged in place under live writers (its version
# field overwritten: an admin's mistake, a bad restore). The daemons keep
# their mapping and go on; a new process must refuse the file, never
# re-initialise it, so a snapshot cannot be taken now: exit 75. The file is
# left as it was; putting the version back makes it usable again.
BF=$DIR/conf/lock/cyrsync-barrier
version_field() { printf "$1" | dd of="$BF" bs=1 seek=8 count=4 conv=notrunc status=none; }
before=$(od -An -tx1 -j8 -N4 "$BF" | tr -d ' ')
version_field '\011\000\000\000'
drc=0
"$SBIN/cyr_withlock_run" -C "$DIR/imapd.conf" /bin/true >"$DIR/damaged.out" 2>&1 || drc=$?
after=$(od -An -tx1 -j8 -N4 "$BF" | tr -d ' ')
version_field '\001\000\000\000'
say "damaged: cyr_withlock_run on a damaged barrier file: exit $drc: $(tr '\n' ' ' <"$DIR/damaged.out" | cut -c1-300)"
[ "$drc" -eq 75 ] || fail "damaged: cyr_withlock_run exited $drc, want 75 (EX_TEMPFAIL)"
[ "$after" = 09000000 ] || fail "damaged: the file was rewritten (version field $before -> $after)"
sleep 0.5

# removed: a cleaner deletes the barrier file under live writers; the next
# freeze creates a new one, on which the daemons still writing through the
# old one are not stopped: the freeze must be reported not consistent (75)
rm -f "$BF"
rrc=0
"$SBIN/cyr_withlock_run" -C "$DIR/imapd.conf" /bin/true >"$DIR/removed.out" 2>&1 || rrc=$?
say "removed: cyr_withlock_run after the barrier file was removed: exit $rrc: $(tr '\n' ' ' <"$DIR/removed.out" | cut -c1-300)"
[ "$rrc" -eq 75 ] || fail "removed: cyr_withlock_run exited $rrc, want 75 (EX_TEMPFAIL)"

touch "$DIR/stop"
for p in "${APPENDERS[@]}"; do wait "$p" || fail "an appender failed"; done
APPENDERS=()
say "clients done: test1 $(wc -l <"$DIR/append-test1.log") appends, test2 $(wc -l <"$DIR/append-test2.log") appends"
kill -TERM "$MASTER_PID"; wait "$MASTER_PID" 2>/dev/null || true; MASTER_PID=
say "master stopped"

# ---------------------------------------------------------------- checks
echo
echo "== stall check: the longest wait of an APPEND in the overrun window (bound ${MAX}s)"
python3 - "$DIR" "$ot0" "$ot1" "$MAX" <<'EOF' || FAILS=$((FAILS + 1))
import sys
d, ot0, ot1, mx = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
worst = 0.0
for u in ("test1", "test2"):
    for line in open(f"{d}/append-{u}.log"):
        seq, ts, tok, uid = line.split()
        ts, tok = float(ts), float(tok)
        if tok >= ot0 and ts <= ot1:
            worst = max(worst, tok - ts)
print(f"overrun window {ot1 - ot0:.2f}s; longest APPEND in it took {worst:.3f}s")
# the writer waits at most the bound; allow scheduling slack on 2 busy cores
if worst > mx + 1.0:
    print(f"FAIL: an APPEND waited {worst:.3f}s > bound {mx}s + 1s slack")
    sys.exit(1)
if worst < mx * 0.5:
    print(f"FAIL: no APPEND was held back ({worst:.3f}s): did the freeze work?")
    sys.exit(1)
EOF

echo
echo "== copies, checked with their own imapd.conf (global_lock: no)"
printf '%-10s %4s %8s %6s %6s %6s  %s\n' copy rc copy_ms acked copied extra verdict
for k in "${SNAPS[@]}"; do
    s=$DIR/snaps/$k
    rc=$(cat "$s/rc")
    if [ ! -f "$s/t1" ]; then
        printf '%-10s %4s %8s %6s %6s %6s  %s\n' "$k" "$rc" - - - - "no copy"
        case $k in frozen-*|cli-*) fail "$k: no copy made" ;; esac
        continue
    fi
    write_conf "$s/imapd.conf" "$s/conf" "$s/spool" no
    mkdir -p "$s/conf/lock"   # not copied: run-time state
    chown -R cyrus:mail "$s"
    # reconstruct -n: report only; -G: re-parse every message file against its record
    "$SBIN/reconstruct" -C "$s/imapd.conf" -n -G -r user.test1 user.test2 >"$s/reconstruct" 2>&1 || echo "reconstruct exit $?" >>"$s/reconstruct"
    "$SBIN/cyr_dbtool" -C "$s/imapd.conf" "$s/conf/mailboxes.db" twoskip consistent >"$s/dbtool" 2>&1 || echo "cyr_dbtool exit $?" >>"$s/dbtool"
    copied=0
    for u in test1 test2; do
        n=$("$SBIN/mbexamine" -C "$s/imapd.conf" "user.$u" 2>/dev/null | sed -n 's/.*Number of Messages: *\([0-9]*\).*/\1/p' | head -n1)
        copied=$((copied + ${n:-0}))
    done
    t0=$(cat "$s/t0")
    acked=$(cat "$DIR"/append-test*.log | awk -v t0="$t0" '$3 < t0 { n++ } END { print n + 0 }')
    # appends in flight at t0 (sent before, answered after) may or may not be in
    extra=$((copied - acked))
    ms=$(python3 -c "print(f'{($(cat "$s/t1")-$t0)*1000:.0f}')")
    problems=$(grep -v -E '^(user\.test[12])?$' "$s/reconstruct" | grep -v -i '^reconstruct exit 0$' || true)
    verdict=clean
    [ -z "$problems" ] || verdict="reconstruct: $(echo "$problems" | head -n 3 | tr '\n' '|')"
    grep -q -i 'consistent' "$s/dbtool" && ! grep -q -i 'not consistent\|inconsistent\|exit' "$s/dbtool" || verdict="$verdict; mailboxes.db: $(tr '\n' ' ' <"$s/dbtool")"
    if [ "$extra" -lt 0 ] || [ "$extra" -gt 2 ]; then verdict="$verdict; count off"; fi
    # tar itself notices a file that changed while it was read
    changed=$(grep -c 'file changed as we read it' "$s/out" || true)
    [ "$changed" -eq 0 ] || verdict="$verdict; tar: $changed file(s) changed while read"
    printf '%-10s %4s %8s %6s %6s %6s  %s\n' "$k" "$rc" "$ms" "$acked" "$copied" "$extra" "$verdict"
    case $k in
        frozen-*|cli-*)
            [ "$rc" -eq 0 ] || fail "$k: freeze verdict not consistent (exit $rc)"
            [ "$verdict" = clean ] || fail "$k: copy not clean: $verdict" ;;
    esac
done

echo
if [ "$FAILS" -eq 0 ]; then echo "snapshot: PASS"; else echo "snapshot: $FAILS failure(s)"; fi
[ "$FAILS" -eq 0 ]
