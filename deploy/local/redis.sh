# The local Redis: Debian's redis-server on a private port, in-memory only (no RDB snapshots, no AOF).
# Sourced by `services`; needs common.sh first.

# shellcheck shell=bash

REDIS_HOME_DIR="$STATE_DIR/redis"
REDIS_PIDFILE="$REDIS_HOME_DIR/redis.pid"
# redis-server names its listen address in its process title.
REDIS_PATTERN="redis-server $BIND_HOST:$REDIS_PORT"

redis_running() {
    pid_alive "$REDIS_PIDFILE" "$REDIS_PATTERN"
}

redis_up() {
    with_lock "$STATE_DIR/redis.lock" redis_up_locked
}

redis_up_locked() {
    if redis_running; then
        log "redis already running (pid $(<"$REDIS_PIDFILE")) on $BIND_HOST:$REDIS_PORT"
        return 0
    fi
    command -v redis-server >/dev/null || die "redis-server not found: apt-get install -y redis-server"
    if port_open "$REDIS_PORT"; then
        die "port $BIND_HOST:$REDIS_PORT is taken by another process; stop it or set LOCAL_REDIS_PORT"
    fi
    rm -rf "$REDIS_HOME_DIR"
    mkdir -p "$REDIS_HOME_DIR"
    log "starting redis on $BIND_HOST:$REDIS_PORT"
    # save "" and appendonly no: test and demo data never touch the disk. 9>&- keeps the daemon from
    # inheriting (and holding) our lock.
    redis-server --bind "$BIND_HOST" --port "$REDIS_PORT" --protected-mode yes \
        --save "" --appendonly no --dir "$REDIS_HOME_DIR" \
        --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_HOME_DIR/redis.log" >&2 9>&- \
        || die "redis-server failed to start (log: $REDIS_HOME_DIR/redis.log)"
    local started=$SECONDS
    until [[ "$(redis-cli -h "$BIND_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; do
        if ((SECONDS - started > 20)); then
            tail -n 20 "$REDIS_HOME_DIR/redis.log" >&2 2>/dev/null || true
            die "redis not answering PING after 20s (log: $REDIS_HOME_DIR/redis.log)"
        fi
        sleep 0.1
    done
    log "redis ready (pid $(<"$REDIS_PIDFILE"))"
}

redis_down() {
    with_lock "$STATE_DIR/redis.lock" redis_down_locked
}

redis_down_locked() {
    if redis_running; then
        log "stopping redis (pid $(<"$REDIS_PIDFILE"))"
    fi
    stop_pid "$REDIS_PIDFILE" "$REDIS_PATTERN" 10
}

redis_status() {
    if redis_running; then
        printf 'redis: running, pid %s, url redis://%s:%s/0, log %s\n' \
            "$(<"$REDIS_PIDFILE")" "$BIND_HOST" "$REDIS_PORT" "$REDIS_HOME_DIR/redis.log"
        return 0
    fi
    printf 'redis: stopped (would listen on %s:%s)\n' "$BIND_HOST" "$REDIS_PORT"
    return 1
}

redis_exports() {
    printf 'export ALOCC_REDIS__URL=redis://%s:%s/0\n' "$BIND_HOST" "$REDIS_PORT"
}
