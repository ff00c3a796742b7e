#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the controller's tests and benchmarks, from
# Debian's packages: initdb + pg_ctl under /var/tmp, listening on 127.0.0.1:$PGPORT
# and a unix socket in its own directory. Idempotent.
#
#   scripts/postgres.sh start     # install if missing, init if missing, start; prints the URL
#   scripts/postgres.sh url       # the URL tests use (postgres://...)
#   scripts/postgres.sh stop      # fast shutdown
#   scripts/postgres.sh kill      # immediate shutdown (the crash test)
#   scripts/postgres.sh status
#   scripts/postgres.sh destroy   # stop and remove the cluster
#
# Environment: INTERFERENCE_PG_DIR (default /var/tmp/interference-pg), PGPORT (55432).
set -euo pipefail

DIR="${INTERFERENCE_PG_DIR:-/var/tmp/interference-pg}"
PORT="${PGPORT:-55432}"
DATA="$DIR/data"
SOCK="$DIR/sock"
LOG="$DIR/postgres.log"
DBNAME=interference
URL="postgres://postgres@127.0.0.1:$PORT/$DBNAME"

bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
    if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
        return 1
    fi
    echo "$d"
}

ensure_installed() {
    if ! bindir >/dev/null; then
        echo "postgres.sh: installing Debian's postgresql package" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y postgresql >/dev/null 2>&1 || {
            apt-get update >/dev/null
            apt-get install -y postgresql >/dev/null
        }
    fi
    bindir >/dev/null || { echo "postgres.sh: PostgreSQL server binaries not found after install" >&2; exit 1; }
}

# PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() {
    [ -f "$DATA/postmaster.pid" ] && as_pg "$(bindir)/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
    ensure_installed
    local bin
    bin="$(bindir)"
    mkdir -p "$DIR" "$SOCK"
    # Only what is not the running cluster's own: a recursive chown races the server
    # creating and dropping files (databases of parallel tests).
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$DIR" "$SOCK"; fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
        as_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
        cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 400
shared_buffers = 256MB
fsync = on
synchronous_commit = on
CONF
    fi
    if ! running; then
        # 9>&-: the server must not inherit (and so hold forever) the lock.
        as_pg "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 300 start >/dev/null 9>&-
    fi
    # A cluster started by someone else may still be in crash recovery.
    local waited=0
    until as_pg "$bin/pg_isready" -q -h "$SOCK" -p "$PORT"; do
        waited=$((waited + 1))
        if [ "$waited" -gt 300 ]; then
            echo "postgres.sh: the server did not accept connections within 300 s (log: $LOG)" >&2
            exit 1
        fi
        sleep 1
    done
    if ! as_pg "$bin/psql" -h "$SOCK" -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'" | grep -q 1; then
        as_pg "$bin/createdb" -h "$SOCK" -p "$PORT" -U postgres "$DBNAME"
    fi
    echo "$URL"
}

stop_mode() {
    if bindir >/dev/null && running; then
        as_pg "$(bindir)/pg_ctl" -D "$DATA" -m "$1" -w -t 120 stop >/dev/null
    fi
}

# Tests start the cluster from many processes at once: one action at a time.
mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9

case "${1:-start}" in
    start) start ;;
    url) echo "$URL" ;;
    stop) stop_mode fast ;;
    kill) stop_mode immediate ;;
    status) if running; then echo "running: $URL"; else echo "stopped"; exit 3; fi ;;
    destroy) stop_mode immediate || true; rm -rf "$DIR" ;;
    *) echo "usage: $0 start|url|stop|kill|status|destroy" >&2; exit 2 ;;
esac
