#!/usr/bin/env bash
# Run taskboard alone, in the background, on 127.0.0.1: SQLite, migrations
# applied, the web page served. Prints the URL. Re-running while it is up
# changes nothing. `scripts/run-alone-down.sh` stops it.
#   TASKBOARD_PORT=8080 scripts/up.sh     a fixed port (default: a free one)
#   THREETIER_LOCAL_DIR=DIR               pidfile, log, database (default .local/)
# `make up` runs the whole local fleet; this is taskboard alone (scripts/up.sh
# calls it when THREETIER_MODE=run-alone or THREETIER_LOCAL_DIR is set).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
state="${THREETIER_LOCAL_DIR:-$here/.local}"
pidfile="$state/taskboard.pid"
portfile="$state/taskboard.port"
log="$state/taskboard.log"
mkdir -p "$state"

running() {
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null \
        && grep -q taskboard "/proc/$(cat "$pidfile")/cmdline" 2>/dev/null
}

if running && [ -f "$portfile" ]; then
    echo "taskboard is already up: http://127.0.0.1:$(cat "$portfile")/"
    exit 0
fi
rm -f "$pidfile"

port="${TASKBOARD_PORT:-}"
if [ -z "$port" ]; then
    port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
elif ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    echo "up: TASKBOARD_PORT must be a port number, got '$port'" >&2
    exit 2
fi

export DATABASE_URL="sqlite:///$state/taskboard.sqlite"
export TASKBOARD_SERVE_STATIC=1
export TASKBOARD_BIND="127.0.0.1:$port"
export TASKBOARD_WORKERS="${TASKBOARD_WORKERS:-2}"
unset TASKBOARD_DB_SECRET_ID

"$venv/bin/taskboard-migrate" upgrade >/dev/null
nohup "$venv/bin/gunicorn" --config python:taskboard.gunicorn_conf --pid "$pidfile" --no-control-socket \
    taskboard.wsgi:app >>"$log" 2>&1 </dev/null &

for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz" 2>/dev/null && running; then
        echo "$port" >"$portfile"
        echo "taskboard is up: http://127.0.0.1:$port/  (log: $log; stop: make down)"
        exit 0
    fi
    sleep 0.2
done
echo "up: taskboard did not start; the end of $log:" >&2
tail -n 20 "$log" >&2
exit 1
