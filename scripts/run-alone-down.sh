#!/usr/bin/env bash
# Stop what scripts/run-alone-up.sh started (graceful SIGTERM, then wait). No-op when down.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state="${THREETIER_LOCAL_DIR:-$here/.local}"
pidfile="$state/taskboard.pid"

if [ ! -f "$pidfile" ]; then
    echo "taskboard is not running"
    exit 0
fi
pid=$(cat "$pidfile")
# only our gunicorn: a stale pidfile may name a recycled pid
if kill -0 "$pid" 2>/dev/null && grep -q taskboard "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "down: taskboard (pid $pid) did not stop in 30s" >&2
        exit 1
    fi
    echo "taskboard stopped"
else
    echo "taskboard is not running (stale pidfile removed)"
fi
rm -f "$pidfile" "$state/taskboard.port"
