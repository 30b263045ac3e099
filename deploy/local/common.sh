# Shared helpers for the local service scripts. Sourced, never executed.
#
# Every path and port can be overridden from the environment so that two checkouts (or a CI run next to a
# developer's services) can live side by side on one machine.

# shellcheck shell=bash

LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LOCAL_DIR/../.." && pwd)"

# Runtime state (pid files, logs, data) of every service, one folder each.
STATE_DIR="${LOCAL_SERVICES_DIR:-$REPO_ROOT/var/services}"
# Downloaded jars live outside the work tree so that a fresh clone or a wiped var/ starts offline.
CACHE_DIR="${LOCAL_SERVICES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alocc}"

BIND_HOST="127.0.0.1"
# The ports lie below Linux's ephemeral range (32768-60999 by default: /proc/sys/net/ipv4/ip_local_port_range).
# Inside it, the kernel may give one of them to an outgoing connection as its local port (the broker's own
# connections to its controller take such ports), and once that connection closes its TIME_WAIT keeps the
# port from being bound for a minute: ten starts in a row failed with "Address already in use" in one stress
# run with the ports at 39092/39192.
KAFKA_VERSION="${LOCAL_KAFKA_VERSION:-4.1.2}"
KAFKA_PORT="${LOCAL_KAFKA_PORT:-29092}"
KAFKA_CONTROLLER_PORT="${LOCAL_KAFKA_CONTROLLER_PORT:-29093}"
REDIS_PORT="${LOCAL_REDIS_PORT:-26390}"

# Progress and diagnostics go to stderr: stdout is reserved for the `export` lines that callers eval.
log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# history TEXT: one timestamped line in the services' start history (kept across starts, unlike their logs).
history() { mkdir -p "$STATE_DIR" && printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$STATE_DIR/history.log"; }

# cmdline_of PID: the process's command line with NULs as spaces; empty when it cannot be read.
# Read into a variable and matched in bash, not piped into `grep -q`: under `set -o pipefail` a grep that
# exits at its first match can kill the writer with SIGPIPE and turn a match into a failure.
cmdline_of() {
    local cmdline=""
    { cmdline="$(tr '\0' ' ' <"/proc/$1/cmdline")"; } 2>/dev/null || true
    printf '%s' "$cmdline"
}

# cmdline_matches PID PATTERN: true when the command line of PID contains PATTERN (a fixed string).
cmdline_matches() {
    local cmdline
    cmdline="$(cmdline_of "$1")"
    [[ -n "$cmdline" && "$cmdline" == *"$2"* ]]
}

# process_alive PID: true while PID exists and has not exited (a zombie, exited but not yet reaped by its
# parent, counts as dead).
process_alive() {
    local stat state
    kill -0 "$1" 2>/dev/null || return 1
    { stat="$(<"/proc/$1/stat")"; } 2>/dev/null || return 1
    # The state is the first field after the command name, which is in parentheses and may hold spaces.
    state="${stat##*) }"
    [[ "${state%% *}" != Z ]]
}

# pid_alive PIDFILE PATTERN: true when the pid file names a live process whose command line contains PATTERN
# (the pattern guards against a recycled pid that now belongs to an unrelated process).
#
# Only for a process that has finished starting: between fork and exec the command line of a child is its
# parent's, and during exec it reads empty (measured: 1 in 7 first reads under CPU load). A start-up waits on
# its own child (start_detached's STARTED_PID) with process_alive instead.
pid_alive() {
    local pidfile="$1" pattern="$2" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(<"$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    process_alive "$pid" || return 1
    cmdline_matches "$pid" "$pattern"
}

# pids_matching PATTERN: the pids (one per line) of every process whose command line contains PATTERN, the
# calling shell and its subshells aside. Finds a service that its pid file lost track of.
pids_matching() {
    local pattern="$1" dir pid
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
        if cmdline_matches "$pid" "$pattern" && process_alive "$pid"; then
            printf '%s\n' "$pid"
        fi
    done
}

# pids_listening PORT: the pids of the processes that listen on BIND_HOST:PORT.
pids_listening() {
    ss -Hltnp "src $BIND_HOST:$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true
}

# wait_ports_free SECONDS PORT...: wait up to SECONDS for no TCP socket of any state (TIME_WAIT included) to
# hold one of the PORTs as its local port; false if some still does.
wait_ports_free() {
    local seconds="$1" deadline filter="" port
    shift
    for port in "$@"; do filter+="${filter:+ or }sport = :$port"; done
    deadline=$((SECONDS + seconds))
    while [[ -n "$(ss -Htan "( $filter )" 2>/dev/null)" ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

# port_open PORT: true when something accepts TCP connections on BIND_HOST:PORT.
port_open() {
    (exec 3<>"/dev/tcp/$BIND_HOST/$1") 2>/dev/null
}

# wait_gone TENTHS PID...: wait up to TENTHS tenths of a second for every PID to end; false if some did not,
# and then STILL_ALIVE lists them.
wait_gone() {
    local tenths="$1" pid waited=0
    shift
    while :; do
        STILL_ALIVE=()
        for pid in "$@"; do process_alive "$pid" && STILL_ALIVE+=("$pid"); done
        ((${#STILL_ALIVE[@]} > 0)) || return 0
        ((waited < tenths)) || return 1
        sleep 0.1
        waited=$((waited + 1))
    done
}

# stop_pids GRACE_SECONDS PID...: SIGTERM each process, wait up to GRACE_SECONDS for all of them, then SIGKILL
# what is left and wait (up to 10 s) for it to go.
stop_pids() {
    local grace="$1"
    shift
    (($# > 0)) || return 0
    kill -TERM "$@" 2>/dev/null || true
    wait_gone $((grace * 10)) "$@" && return 0
    log "pid(s) ${STILL_ALIVE[*]} did not stop within ${grace}s; sending SIGKILL"
    kill -KILL "${STILL_ALIVE[@]}" 2>/dev/null || true
    wait_gone 100 "$@" && return 0
    log "warning: pid(s) ${STILL_ALIVE[*]} still alive after SIGKILL"
    return 1
}

# stop_service PIDFILE PATTERN GRACE_SECONDS [PORT...]: stop every process of one service, found three ways:
# the pid file (whatever the command line says: a failed start may stop it before it has exec'd), the
# processes whose command line contains PATTERN (one a failed start or a lost pid file left behind), and the
# processes listening on PORT that also match PATTERN (never an unrelated process). Removes the pid file.
stop_service() {
    local pidfile="$1" pattern="$2" grace="$3" pid pids=()
    shift 3
    if [[ -s "$pidfile" ]]; then
        pid="$(<"$pidfile")"
        if [[ "$pid" =~ ^[0-9]+$ ]] && process_alive "$pid"; then
            pids+=("$pid")
        fi
    fi
    mapfile -t -O "${#pids[@]}" pids < <(pids_matching "$pattern")
    local port
    for port in "$@"; do
        while read -r pid; do
            [[ -n "$pid" ]] && cmdline_matches "$pid" "$pattern" && pids+=("$pid")
        done < <(pids_listening "$port")
    done
    if ((${#pids[@]} > 0)); then
        mapfile -t pids < <(printf '%s\n' "${pids[@]}" | sort -un)
        stop_pids "$grace" "${pids[@]}"
    fi
    rm -f "$pidfile"
}

# stop_untracked NAME PIDFILE PATTERN GRACE_SECONDS [PORT...]: before a start, stop a service of this checkout
# that no pid file tracks (left by a failed start, or its pid file deleted by hand): it still owns the data dir
# and may be about to open the ports. NAME is what the log line calls it.
stop_untracked() {
    local name="$1" leftover
    shift
    leftover="$(pids_matching "$2" | tr '\n' ' ')"
    [[ -n "$leftover" ]] || return 0
    log "stopping a $name that no pid file tracks (pid ${leftover% })"
    stop_service "$@"
}

# start_detached PIDFILE LOGFILE CMD...: start CMD in a session of its own (it outlives the caller and never
# receives the caller's Ctrl-C), write its pid to PIDFILE and set STARTED_PID. setsid execs CMD in place (a
# background child of a script is no process-group leader, so setsid need not fork): the pid is the service's
# own. 9>&- keeps the service from inheriting (and holding) the caller's lock.
start_detached() {
    local pidfile="$1" logfile="$2"
    shift 2
    setsid "$@" </dev/null >"$logfile" 2>&1 9>&- &
    STARTED_PID=$!
    echo "$STARTED_PID" >"$pidfile"
}

# with_lock FILE CMD...: run CMD while holding an exclusive flock on FILE, so that concurrent callers (two
# test sessions, a developer and CI) never start the same service twice or format a data dir under a
# running broker.
with_lock() {
    local lockfile="$1"
    shift
    mkdir -p "$(dirname "$lockfile")"
    (
        flock -w 600 9 || die "timed out waiting for lock $lockfile"
        "$@"
    ) 9>"$lockfile"
}
