#!/usr/bin/env bash
# difftest.sh -- differential test of the sync log: vanilla Cyrus C against
# Cyrus patched onto cyrsync.  Called by tests/cyrus/run (suite "difftest");
# can be run alone once both builds exist:
#   tests/cyrus/difftest.sh --version V --work DIR --vanilla BUILD --patched BUILD
# where BUILD is a build dir of tests/cyrus/run (BUILD/src, BUILD/inst).
#
# Known differences (KNOWN, not FAIL), each checked, not just tolerated:
#  - fd readers: the C begin() fails (NULL file name); cyrsync must give
#    the items the C file reader gives (sync_client -f - works now);
#  - empty content: the C begin() fails; cyrsync must give no items;
#  - 3.10 and 3.12: the C reader takes no LITERAL+ ({N+}) from a log (prot
#    stream not a client) and stops reading there; cyrsync reads literals
#    as 3.6 did, so the C items must be a prefix of cyrsync's;
#  - cyrsync's writer keeps its group commit's state in a log-commit file
#    beside each channel's log it wrote: the writer cases and cyr_synclog
#    must be the same but for those files;
#  - a malformed or torn line (issue 8): the C reader stops there and the
#    rest of the log is lost; cyrsync sets the line aside (its bytes in
#    log-bad beside the log, offset and length in syslog) and reads on.  C's
#    items must be a prefix of cyrsync's, the rest of the output the same
#    but for log-bad, and a channel read that gave more must have left
#    log-bad.
# Prints one "PASS|FAIL|KNOWN <case>" line per case, the diff of each
# failing case, and exits 1 when any case failed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK= VANILLA= PATCHED= VERSION=
while [ $# -gt 0 ]; do
    case "$1" in
        --version) VERSION=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --vanilla) VANILLA=$2; shift 2 ;;
        --patched) PATCHED=$2; shift 2 ;;
        *) echo "difftest.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$WORK" ] && [ -n "$VANILLA" ] && [ -n "$PATCHED" ] || { echo "usage: see header" >&2; exit 2; }

rm -rf "$WORK"
mkdir -p "$WORK"
FAILS=0

# build difftest against one build: like cyr_synclog (cli_fatal.c,
# mutex_fake.c, libcyrus_imap + libcyrus_sieve + libcyrus + libcyrus_min), against the
# installed shared libraries, headers from the build tree
build() {
    local fl=$1 b=$2
    local src=$b/src inst=$b/inst
    local out=$WORK/difftest-$fl
    gcc -O1 -g -Wall -o "$out" \
        -I"$src" -I"$src/lib" -I"$src/imap" \
        "$HERE/difftest.c" "$src/imap/cli_fatal.c" "$src/imap/mutex_fake.c" \
        -L"$inst/lib" -Wl,-rpath,"$inst/lib" \
        -lcyrus_imap -lcyrus_sieve -lcyrus -lcyrus_min
    echo "built $out"
}
build vanilla "$VANILLA"
build patched "$PATCHED"

# conf FLAVOUR NAME EXTRA...: an imapd.conf with its own configdirectory
conf() {
    local fl=$1 name=$2; shift 2
    local d=$WORK/$fl/$name
    mkdir -p "$d/conf"
    {
        echo "configdirectory: $d/conf"
        echo "partition-default: $d/part"
        echo "syslog_prefix: difftest"
        printf '%s\n' "$@"
    } >"$d/imapd.conf"
    # cyrus_init() switches from root to the cyrus user
    chown -R cyrus:mail "$d"
    echo "$d/imapd.conf"
}

result() {  # result CASE STATUS(0 same) [KNOWN]
    if [ "$2" = 0 ]; then echo "PASS $1"
    elif [ "${3:-}" = KNOWN ]; then echo "KNOWN $1"
    else echo "FAIL $1"; FAILS=$((FAILS + 1)); fi
}

# a listing of every file below configdirectory/sync: path, mode, content
dump_tree() {
    local d=$1
    (cd "$d" && find sync -print0 2>/dev/null | sort -z | while IFS= read -r -d '' f; do
        if [ -d "$f" ]; then echo "dir $f $(stat -c %a "$f")"
        else echo "file $f $(stat -c %a "$f") $(stat -c %s "$f") $(sha256sum <"$f" | cut -c1-16)"; fi
    done)
}

# commit_known V P: two writer outputs (dirs with stdout, tree, conf/sync)
# differ only by cyrsync's log-commit files (its group commit's shared
# state, one beside each channel's log): everything else is the same, and
# each log-commit has a log beside it
commit_known() {
    local v=$1 p=$2 f
    diff "$v/stdout" "$p/stdout" >/dev/null || return 1
    diff "$v/tree" <(grep -v -E '^file (.*/)?log-commit ' "$p/tree") >/dev/null || return 1
    if [ -d "$v/conf/sync" ] || [ -d "$p/conf/sync" ]; then
        diff -r -x log-commit "$v/conf/sync" "$p/conf/sync" >/dev/null 2>&1 || return 1
    fi
    for f in $(sed -n -E 's/^file ((.*\/)?log-commit) .*/\1/p' "$p/tree"); do
        grep -q -E "^file $(dirname "$f")/log " "$p/tree" || return 1
    done
    return 0
}

# --------------------------------------------------------- writer cases
WRITE_CONFS=(
    "default-only|sync_log: 1"
    "many-channels|sync_log: 1|sync_log_channels: \"\" c1 c2 c3 c4 c5 c6 c7 c8 c9 c10 squatter|sync_log_unsuppressable_channels: c3 squatter"
    "no-default|sync_log: 1|sync_log_channels: c1 c2|sync_log_unsuppressable_channels: \"\""
    "disabled|sync_log: 0|sync_log_channels: \"\" c1"
    "rightnow|sync_log: 1|sync_log_channels: \"\" c1|sync_rightnow_channel: \"\""
    "rightnow-disabled|sync_log: 0|sync_log_channels: c1|sync_rightnow_channel: c1"
)
for spec in "${WRITE_CONFS[@]}"; do
    IFS='|' read -r -a parts <<<"$spec"
    name=${parts[0]}
    mode=write
    case "$name" in rightnow*) mode=rightnow ;; esac
    for fl in vanilla patched; do
        c=$(conf "$fl" "w-$name" "${parts[@]:1}")
        d=$(dirname "$c")
        rc=0
        "$WORK/difftest-$fl" -C "$c" "$mode" >"$d/stdout" 2>"$d/stderr" || rc=$?
        echo "exit $rc" >>"$d/stdout"
        dump_tree "$d/conf" >"$d/tree"
    done
    v=$WORK/vanilla/w-$name p=$WORK/patched/w-$name
    st=0
    diff -u "$v/stdout" "$p/stdout" >"$WORK/w-$name.diff" || st=1
    diff -u "$v/tree" "$p/tree" >>"$WORK/w-$name.diff" || st=1
    if [ -d "$v/conf/sync" ] || [ -d "$p/conf/sync" ]; then
        diff -r "$v/conf/sync" "$p/conf/sync" >>"$WORK/w-$name.diff" 2>&1 || st=1
    fi
    known=
    if [ $st != 0 ] && commit_known "$v" "$p"; then known=KNOWN; fi
    result "write.$name($(cat "$v/tree" | grep -c '^file' || true)-files)" $st $known
    [ $st = 0 ] || [ -n "$known" ] || head -n 40 "$WORK/w-$name.diff"
done

# --------------------------------------------------------- cyr_synclog
# the installed tool, unchanged, on both builds: same log bytes
for fl in vanilla patched; do
    b=$VANILLA; [ $fl = patched ] && b=$PATCHED
    c=$(conf "$fl" cyr_synclog "sync_log: 1" "sync_log_channels: \"\" c1")
    d=$(dirname "$c")
    {
        "$b/inst/sbin/cyr_synclog" -C "$c" -u "user.a b" &&
        "$b/inst/sbin/cyr_synclog" -C "$c" -m 'user.q"uote' &&
        "$b/inst/sbin/cyr_synclog" -C "$c" -s user.x 'user.x.cafÃ©' &&
        "$b/inst/sbin/cyr_synclog" -C "$c" -b user.x "user.x.{br}" &&
        "$b/inst/sbin/cyr_synclog" -C "$c" -q user.x &&
        "$b/inst/sbin/cyr_synclog" -C "$c" "APPEND raw.line"
        echo "exit $?"
    } >"$d/stdout" 2>&1
    dump_tree "$d/conf" >"$d/tree"
done
st=0
{ diff -u "$WORK/vanilla/cyr_synclog/stdout" "$WORK/patched/cyr_synclog/stdout" &&
  diff -u "$WORK/vanilla/cyr_synclog/tree" "$WORK/patched/cyr_synclog/tree" &&
  diff -r "$WORK/vanilla/cyr_synclog/conf/sync" "$WORK/patched/cyr_synclog/conf/sync"; } \
    >"$WORK/cyr_synclog.diff" 2>&1 || st=1
known=
if [ $st != 0 ] && commit_known "$WORK/vanilla/cyr_synclog" "$WORK/patched/cyr_synclog"; then known=KNOWN; fi
result "tool.cyr_synclog" $st $known
[ $st = 0 ] || [ -n "$known" ] || head -n 30 "$WORK/cyr_synclog.diff"

# --------------------------------------------------------- concurrency
# C and cyrsync writers append to the same channel at once while C and
# cyrsync readers take turns consuming it: every record written must be
# read exactly once, intact (no torn or interleaved lines, none lost).
c=$(conf shared concurrent "sync_log: 1")
d=$(dirname "$c")
# what one writer process produces, as items
"$WORK/difftest-vanilla" -C "$c" write >/dev/null 2>&1
mv "$d/conf/sync/log" "$d/one.log"
chown cyrus:mail "$d/one.log"
"$WORK/difftest-vanilla" -C "$c" read file "$d/one.log" | grep '^item' | sort >"$d/one.items"
rm -rf "$d/conf/sync"
NW=3
pids=()
for i in $(seq $NW); do
    "$WORK/difftest-vanilla" -C "$c" write >/dev/null 2>&1 & pids+=($!)
    "$WORK/difftest-patched" -C "$c" write >/dev/null 2>&1 & pids+=($!)
done
: >"$d/read.items"
rounds=0
alive() { local p; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while alive; do
    for fl in vanilla patched; do
        "$WORK/difftest-$fl" -C "$c" read channel "" | grep '^item' >>"$d/read.items" || true
        rounds=$((rounds + 1))
    done
    sleep 0.2
done
wait "${pids[@]}" || true
for fl in patched vanilla; do   # drain what is left
    "$WORK/difftest-$fl" -C "$c" read channel "" | grep '^item' >>"$d/read.items" || true
done
for i in $(seq $((NW * 2))); do cat "$d/one.items"; done | sort >"$d/expected.items"
sort "$d/read.items" >"$d/read.sorted"
st=0
diff "$d/expected.items" "$d/read.sorted" >"$WORK/concurrent.diff" || st=1
echo "concurrent: $((NW * 2)) writers (C and cyrsync), $rounds reader rounds (C and cyrsync), $(wc -l <"$d/read.sorted") items read, $(wc -l <"$d/expected.items") expected"
result "concurrent.mixed-writers-readers" $st
[ $st = 0 ] || head -n 30 "$WORK/concurrent.diff"

# the channel logs the writer produced are reader inputs too
mkdir -p "$WORK/inputs"
# {N} literals crash the 3.6 C reader (continuation to a NULL stream)
if [ "$VERSION" = 3.6.1 ]; then
    "$WORK/difftest-vanilla" gen "$WORK/inputs"
else
    "$WORK/difftest-vanilla" gen "$WORK/inputs" nonsync
fi
if [ -d "$WORK/vanilla/w-many-channels/conf/sync" ]; then
    (cd "$WORK/vanilla/w-many-channels/conf/sync" && find . -name log -type f) | while read -r f; do
        n=$(echo "$f" | sed 's|^\./||; s|/|_|g')
        cp "$WORK/vanilla/w-many-channels/conf/sync/$f" "$WORK/inputs/written-$n"
    done
fi
# truncations of a written log at a few byte offsets
if [ -e "$WORK/inputs/written-log" ]; then
    for cut in 1 7 100 333 1000 2049; do
        head -c "$cut" "$WORK/inputs/written-log" >"$WORK/inputs/truncated-$cut"
    done
fi

# the readers open their file O_RDWR (to lock it), as the cyrus user
chown -R cyrus:mail "$WORK/inputs"

# --------------------------------------------------------- reader cases
for fl in vanilla patched; do conf "$fl" reader "sync_log: 1" >/dev/null; done

# read_on_known OUT MODE INPUT: the reader outputs differ only as cyrsync's
# read-on at a bad line makes them differ (see the case below)
read_on_known() {
    local v=$WORK/vanilla/reader/$1 p=$WORK/patched/reader/$1 mode=$2
    local vi pi
    vi=$(grep '^item' "$v" || true)
    pi=$(grep '^item' "$p" || true)
    # C's items, then possibly more (whole lines)
    [ "$pi" = "$vi" ] || [ -z "$vi" ] || [ "${pi#"$vi"$'\n'}" != "$pi" ] || return 1
    # everything but the items and the set-aside file is the same
    diff <(grep -v '^item' "$v") <(grep -v '^item' "$p" | grep -v '/log-bad$') >/dev/null || return 1
    # more items than C only where the bad bytes were kept (channel mode
    # lists what is left: log-bad beside the channel's log)
    if [ "$mode" = channel ] && [ "$pi" != "$vi" ]; then
        grep -q '^\./rc/log-bad$' "$p" || return 1
    fi
    # and what log-bad holds is lines of the input, not something else
    local bad=$WORK/patched/reader/conf/sync/rc/log-bad
    if [ "$mode" = channel ] && [ -e "$bad" ]; then
        python3 - "$bad" "$3" <<'PYEOF' || return 1
import sys
bad, inp = (open(f, 'rb').read() for f in sys.argv[1:3])
sys.exit(0 if all(l in inp for l in bad.split(b'\n') if l) else 1)
PYEOF
    fi
    return 0
}
for input in "$WORK"/inputs/*; do
    base=$(basename "$input")
    for mode in file content fd channel; do
        for fl in vanilla patched; do
            d=$WORK/$fl/reader
            out=$d/$base.$mode
            arg=$input
            if [ $mode = channel ]; then
                rm -rf "$d/conf/sync"
                mkdir -p "$d/conf/sync/rc"
                cp "$input" "$d/conf/sync/rc/log"
                chown -R cyrus:mail "$d/conf/sync"
                arg=rc
            fi
            rc=0
            timeout 20 "$WORK/difftest-$fl" -C "$d/imapd.conf" read "$mode" "$arg" >"$out" 2>&1 || rc=$?
            echo "exit $rc" >>"$out"
            if [ $mode = channel ]; then
                echo "left behind:" >>"$out"
                (cd "$d/conf/sync" && find . | sort) >>"$out"
            fi
        done
        st=0
        diff -u "$WORK/vanilla/reader/$base.$mode" "$WORK/patched/reader/$base.$mode" \
            >"$WORK/r-$base.$mode.diff" || st=1
        known=
        # documented: the C reader's begin() fails on a descriptor reader
        if [ $mode = fd ] && grep -q '^begin IMAP_IOERROR' "$WORK/vanilla/reader/$base.$mode" \
                && grep -q '^begin OK' "$WORK/patched/reader/$base.$mode"; then
            # ...and cyrsync's gives the items the C file reader gives, or
            # (a bad line read past) those of cyrsync's own file reader,
            # whose difference from C's is the known one below
            if diff <(grep -E '^(item|getitem)' "$WORK/vanilla/reader/$base.file") \
                    <(grep -E '^(item|getitem)' "$WORK/patched/reader/$base.$mode") >/dev/null; then
                known=KNOWN
            elif diff <(grep -E '^(item|getitem)' "$WORK/patched/reader/$base.file") \
                      <(grep -E '^(item|getitem)' "$WORK/patched/reader/$base.$mode") >/dev/null \
                    && read_on_known "$base.file" file "$input"; then
                known=KNOWN
            fi
        fi
        # documented: the C reader's begin() fails on empty content (it falls
        # through to a NULL file name); cyrsync reads zero items
        if [ $mode = content ] && [ "$base" = empty ] \
                && grep -q '^begin IMAP_IOERROR' "$WORK/vanilla/reader/$base.$mode" \
                && grep -q '^begin OK' "$WORK/patched/reader/$base.$mode" \
                && ! grep -q '^item' "$WORK/patched/reader/$base.$mode"; then
            known=KNOWN
        fi
        # documented (issue 8): at a malformed or torn line the C reader
        # stops (the rest of the log is lost); cyrsync sets the line aside
        # (its bytes in log-bad beside the log) and reads on.  So C's items
        # must be a prefix of cyrsync's, everything else the same but the
        # log-bad file, and where cyrsync read more, it kept the bad bytes
        if [ $st != 0 ] && [ -z "$known" ] && read_on_known "$base.$mode" "$mode" "$input"; then
            known=KNOWN
        fi
        if [ $st != 0 ] && [ -z "$known" ] && [ "$VERSION" != 3.6.1 ] && grep -q '+}' "$input"; then
            vi=$(grep '^item' "$WORK/vanilla/reader/$base.$mode" || true)
            pi=$(grep '^item' "$WORK/patched/reader/$base.$mode" || true)
            if [ "${pi#"$vi"}" != "$pi" ] || [ -z "$vi" ]; then known=KNOWN; fi
        fi
        result "read.$mode.$base" $st $known
        if [ $st != 0 ] && [ -z "$known" ]; then head -n 30 "$WORK/r-$base.$mode.diff"; fi
    done
done

# --------------------------------------------------------- squatter's loop
# begin, items, (no end), a new record, begin again: the second begin()
# ends the first run as C's does (log-run unlinked), then reads the new log
for fl in vanilla patched; do
    c=$(conf "$fl" rolling "sync_log: 1")
    d=$(dirname "$c")
    mkdir -p "$d/conf/sync/sq"
    printf 'USER first.a\nMAILBOX user.first.b\n' >"$d/conf/sync/sq/log"
    chown -R cyrus:mail "$d/conf/sync"
    rc=0
    timeout 20 "$WORK/difftest-$fl" -C "$c" rolling sq >"$d/out" 2>&1 || rc=$?
    { echo "exit $rc"; echo "left behind:"; (cd "$d/conf/sync" && find . | sort); } >>"$d/out"
done
st=0
diff -u "$WORK/vanilla/rolling/out" "$WORK/patched/rolling/out" >"$WORK/rolling.diff" || st=1
result "read.rolling.begin-without-end" $st
[ $st = 0 ] || head -n 30 "$WORK/rolling.diff"

echo "difftest: $FAILS failing case(s); outputs in $WORK"
[ $FAILS = 0 ]
