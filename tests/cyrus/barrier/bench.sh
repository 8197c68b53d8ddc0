#!/usr/bin/env bash
# tests/cyrus/barrier/bench.sh NAME=BUILDDIR... -- ns per outermost
# mboxname_lock(LOCK_EXCLUSIVE) + mboxname_release() cycle of each build
# (BUILDDIR/src configured tree, BUILDDIR/inst installed), with global_lock
# off and on, side by side in one run.  Run as root (the program becomes
# cyrus); uses /var/tmp/cb/bench.
#   tests/cyrus/barrier/bench.sh vanilla=/var/tmp/cb/3.12.4-vanilla patched=/var/tmp/cb/3.12.4-patched
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${BENCH_DIR:-/var/tmp/cb/bench}
N=${BENCH_N:-200000}
[ $# -ge 1 ] || { sed -n 2,8p "$0" >&2; exit 2; }
rm -rf "$DIR"; mkdir -p "$DIR"
# lock files on tmpfs (BENCH_LOCKDIR, default /dev/shm/cb-bench): the
# open/fcntl/close of a lock file is what a cycle costs, and on this
# machine's overlay file system its noise would hide the rest
LOCKDIR=${BENCH_LOCKDIR:-/dev/shm/cb-bench}
rm -rf "$LOCKDIR"
for gl in no yes; do
    mkdir -p "$DIR/conf-$gl" "$LOCKDIR/$gl"
    cat >"$DIR/imapd-$gl.conf" <<CONF
configdirectory: $DIR/conf-$gl
partition-default: $DIR/spool
mboxname_lockpath: $LOCKDIR/$gl
global_lock: $gl
CONF
done
chown -R cyrus:mail "$DIR" "$LOCKDIR"
trap 'rm -rf "$LOCKDIR"' EXIT
declare -A res
names=()
for arg in "$@"; do
    name=${arg%%=*} b=${arg#*=}
    names+=("$name")
    # linked as Cyrus links its tools (LD_UTILITY_ADD, mutex_fake.c)
    cc -O2 -I"$b/src" -I"$b/src/lib" -I"$b/src/imap" "$HERE/lockbench.c" "$b/src/imap/mutex_fake.c" \
        -L"$b/inst/lib" -Wl,-rpath,"$b/inst/lib" -lcyrus_imap -lcyrus_sieve -lcyrus -lcyrus_min \
        $(sed -n 's/^LIBS = //p' "$b/src/Makefile") $(sed -n 's/^COM_ERR_LIBS = //p' "$b/src/Makefile") \
        -o "$DIR/lockbench-$name"
done
# system calls per cycle (strace -c over 5 x SN cycles, start-up included):
# a number the machine's load cannot blur
SN=2000
declare -A sys
for gl in no yes; do
    for name in "${names[@]}"; do
        out=$("$DIR/lockbench-$name" "$DIR/imapd-$gl.conf" "$N")
        res[$name,$gl]=$(echo "$out" | cut -d' ' -f1)
        if command -v strace >/dev/null; then
            strace -f -c -o "$DIR/strace-$name-$gl" "$DIR/lockbench-$name" "$DIR/imapd-$gl.conf" "$SN" >/dev/null
            sys[$name,$gl]=$(awk -v c=$((5 * SN)) '$NF == "total" { printf "%.2f", $4 / c }' "$DIR/strace-$name-$gl")
        fi
    done
done
echo "outermost mboxname_lock(LOCK_EXCLUSIVE)+mboxname_release cycle: ns (best of 5 rounds x $N) and"
echo "system calls per cycle (strace -c, 5 x $SN cycles + start-up); lock files in $LOCKDIR"
printf '%-18s %16s %16s %14s %14s\n' build "ns, lock: no" "ns, lock: yes" "sys, lock: no" "sys, lock: yes"
for name in "${names[@]}"; do
    printf '%-18s %16s %16s %14s %14s\n' "$name" "${res[$name,no]}" "${res[$name,yes]}" \
        "${sys[$name,no]:--}" "${sys[$name,yes]:--}"
done
