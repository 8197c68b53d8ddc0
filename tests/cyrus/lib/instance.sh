# tests/cyrus/lib/instance.sh -- Cyrus instances for the live suites
# (synclog/faults.sh, replicalock/replicalock.sh, barrier/snapshot.sh),
# sourced, so that each suite writes only what its scenario needs.
#
# An instance is a directory D with D/imapd.conf, D/cyrus.conf,
# D/conf (configdirectory), D/spool (partition-default), D/syslog (what
# Cassandane's syslog.so captures, when $CASS is set) and D/master.pid.
# Every process started through inst_start is in PIDS, which inst_cleanup
# stops (TERM, then KILL after 5 s).

PIDS=()

# inst_bin PREFIX NAME: a Cyrus program wherever make install put it
inst_bin() {
    local p
    for p in "$1/libexec/$2" "$1/sbin/$2" "$1/bin/$2"; do [ -x "$p" ] && { echo "$p"; return 0; }; done
    echo "no $2 under $1" >&2
    return 1
}

# inst_cassandane PREFIX LOG: set CASS to the Cassandane tree beside the
# install PREFIX of tests/cyrus/run, building its syslog.so if needed
# (make's output in LOG)
inst_cassandane() {
    CASS=$(dirname "$1")/src/cassandane
    if [ ! -e "$CASS/utils/syslog.so" ]; then
        mkdir -p "$(dirname "$2")"
        make -C "$CASS/utils" >"$2" 2>&1 || { tail -n 20 "$2"; exit 2; }
    fi
}

inst_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
}

# inst_fresh TAG TOP D...: refuse (exit 2) while a master of an earlier run
# in one of the instance dirs D is alive, then remove TOP and create each D
# with its configdirectory's subdirectories and its spool
inst_fresh() {
    local tag=$1 top=$2 d pidf; shift 2
    for d in "$@"; do
        pidf=$d/master.pid
        if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
            echo "$tag: a master from an earlier run is still alive (pid $(cat "$pidf")); stop it first" >&2
            exit 2
        fi
    done
    rm -rf "$top"
    for d in "$@"; do
        mkdir -p "$d"/conf/{socket,proc,lock,log,db,sieve,sync} "$d/spool"
    done
}

# inst_imapd_conf D SERVERNAME SYSLOG_PREFIX EXTRA...: D/imapd.conf with
# plaintext logins any password accepts, the unix-less "user.x" namespace,
# and the EXTRA lines
inst_imapd_conf() {
    local d=$1 name=$2 prefix=$3; shift 3
    {
        echo "configdirectory: $d/conf"
        echo "partition-default: $d/spool"
        echo "defaultpartition: default"
        echo "servername: $name"
        echo "sasl_pwcheck_method: alwaystrue"
        echo "sasl_mech_list: PLAIN LOGIN"
        echo "allowplaintext: yes"
        echo "unixhierarchysep: no"
        echo "altnamespace: no"
        echo "syslog_prefix: $prefix"
        printf '%s\n' "$@"
    } >"$d/imapd.conf"
}

# inst_cyrus_conf D SERVICE...: D/cyrus.conf with the database recovery at
# START and each SERVICE line (e.g. 'imap cmd="imapd -C D/imapd.conf"
# listen="127.0.0.1:PORT" prefork=1 maxchild=10')
inst_cyrus_conf() {
    local d=$1; shift
    {
        echo "START {"
        echo "  recover cmd=\"ctl_cyrusdb -C $d/imapd.conf -r\""
        echo "}"
        echo "SERVICES {"
        printf '  %s\n' "$@"
        echo "}"
        echo "EVENTS {"
        echo "}"
        echo "DAEMON {"
        echo "}"
    } >"$d/cyrus.conf"
}

# inst_own D...: the instances belong to cyrus:mail, with a syslog file
# any daemon can write
inst_own() {
    local d
    for d in "$@"; do
        : >"$d/syslog"
        chown -R cyrus:mail "$d"
        chmod 666 "$d/syslog"
    done
}

# inst_start TAG MASTER_BIN D PORT: start Cyrus's master on instance D and
# wait (10 s at most) until PORT accepts connections; exit 1 with the
# master's log if it does not. In a session of its own: a master that shuts
# down signals its whole process group, which would take down the other
# instances of a concurrent run. With $CASS set, the daemons' syslog goes to
# D/syslog.
inst_start() {
    local tag=$1 bin=$2 d=$3 port=$4 pid
    local pre=()
    [ -n "${CASS:-}" ] && pre=(env LD_PRELOAD="$CASS/utils/syslog.so" CASSANDANE_SYSLOG_FNAME="$d/syslog")
    setsid "${pre[@]}" "$bin" -C "$d/imapd.conf" -M "$d/cyrus.conf" -p "$d/master.pid" -D \
        >"$d/master.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$tag: master in $d did not come up:"
    tail -n 20 "$d/master.log" "$d/syslog" 2>/dev/null
    exit 1
}
