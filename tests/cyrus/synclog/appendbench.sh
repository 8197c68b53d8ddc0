#!/usr/bin/env bash
# tests/cyrus/synclog/appendbench.sh NAME=BUILDDIR... -- durable sync log
# appends/s (and p50/p99 latency) through each build's sync_log_channel(),
# with 1, 4 and 16 writer processes, side by side in one run: vanilla is C's
# sync_log.c (lock held across fsync), patched is cyrsync (group commit).
# BUILDDIR/src is the configured tree, BUILDDIR/inst the installed one. Run
# as root; the log lives in BENCH_DIR (default /var/tmp/cb/appendbench, a
# disk, not tmpfs: the flush is what is measured).
#   tests/cyrus/synclog/appendbench.sh vanilla=/var/tmp/cyrsync/3.12.4-vanilla patched=/var/tmp/cyrsync/3.12.4-patched
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${BENCH_DIR:-/var/tmp/cb/appendbench}
SECS=${BENCH_SECS:-3}
[ $# -ge 1 ] || { sed -n 2,9p "$0" >&2; exit 2; }
rm -rf "$DIR"; mkdir -p "$DIR"
names=()
for arg in "$@"; do
    name=${arg%%=*} b=${arg#*=}
    names+=("$name")
    mkdir -p "$DIR/conf-$name"
    printf 'configdirectory: %s\npartition-default: %s\nsync_log: 1\n' \
        "$DIR/conf-$name" "$DIR/spool" >"$DIR/imapd-$name.conf"
    cc -O2 -I"$b/src" -I"$b/src/lib" -I"$b/src/imap" "$HERE/appendbench.c" "$b/src/imap/mutex_fake.c" \
        -L"$b/inst/lib" -Wl,-rpath,"$b/inst/lib" -lcyrus_imap -lcyrus_sieve -lcyrus -lcyrus_min \
        $(sed -n 's/^LIBS = //p' "$b/src/Makefile") $(sed -n 's/^COM_ERR_LIBS = //p' "$b/src/Makefile") \
        -o "$DIR/appendbench-$name"
done
chown -R cyrus:mail "$DIR"
printf '%-8s %-10s %12s %10s %10s %10s\n' writers build appends/s p50_us p99_us "vs ${names[0]}"
for writers in 1 4 16; do
    base=
    for name in "${names[@]}"; do
        rm -rf "$DIR/conf-$name/sync"
        read -r rate p50 p99 < <(setpriv --reuid=cyrus --regid=mail --init-groups \
            "$DIR/appendbench-$name" "$DIR/imapd-$name.conf" "$writers" "$SECS")
        lines=$(cat "$DIR/conf-$name/sync/bench/log" | wc -l)
        [ -n "$base" ] || base=$rate
        printf '%-8s %-10s %12s %10s %10s %9.2fx  (%s lines in the log)\n' \
            "$writers" "$name" "$rate" "$p50" "$p99" "$(echo "$rate / $base" | bc -l)" "$lines"
    done
done
