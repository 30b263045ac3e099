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
KAFKA_VERSION="${LOCAL_KAFKA_VERSION:-4.1.2}"
KAFKA_PORT="${LOCAL_KAFKA_PORT:-39092}"
KAFKA_CONTROLLER_PORT="${LOCAL_KAFKA_CONTROLLER_PORT:-39093}"
REDIS_PORT="${LOCAL_REDIS_PORT:-36379}"

# Progress and diagnostics go to stderr: stdout is reserved for the `export` lines that callers eval.
log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# pid_alive PIDFILE PATTERN: true when the pid file names a live process whose command line contains PATTERN
# (the pattern guards against a recycled pid that now belongs to an unrelated process).
pid_alive() {
    local pidfile="$1" pattern="$2" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(<"$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"
}

# port_open PORT: true when something accepts TCP connections on BIND_HOST:PORT.
port_open() {
    (exec 3<>"/dev/tcp/$BIND_HOST/$1") 2>/dev/null
}

# stop_pid PIDFILE PATTERN GRACE_SECONDS: SIGTERM, wait, then SIGKILL; removes the pid file.
stop_pid() {
    local pidfile="$1" pattern="$2" grace="$3" pid waited=0
    if ! pid_alive "$pidfile" "$pattern"; then
        rm -f "$pidfile"
        return 0
    fi
    pid="$(<"$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < grace * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop within ${grace}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
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
