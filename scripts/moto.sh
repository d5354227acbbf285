#!/usr/bin/env bash
# Start, stop or check the local AWS emulator (moto server) for the make
# targets. It listens on 127.0.0.1 only; pidfile and log live under .local/.
#
#   scripts/moto.sh start|stop|status|restart|url
#
# Environment: MOTO_PORT (default 4566). `start` waits until the server
# answers and prints its URL; it does nothing if ours is already running.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state="$here/.local"
pidfile="$state/moto.pid"
logfile="$state/moto.log"
port="${MOTO_PORT:-4566}"
url="http://127.0.0.1:$port"
python="$here/.venv/bin/python"
# moto with the kit's start-up fix (launch-template versions with user data)
server="$here/scripts/moto_server.py"

# ours: the pidfile's process is alive and is this checkout's moto server
# (after a restore without processes the pid may belong to another one)
running() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$server"
}

answers() {
    "$here/.venv/bin/python" - "$url" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=1)
PY
}

start() {
    if running; then
        echo "$url"
        return 0
    fi
    [ -x "$python" ] || { echo "moto.sh: $python missing; run make setup" >&2; exit 1; }
    mkdir -p "$state"
    nohup "$python" "$server" -H 127.0.0.1 -p "$port" >>"$logfile" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
        if answers; then
            echo "$url"
            return 0
        fi
        if ! running; then
            echo "moto.sh: moto server exited; see $logfile" >&2
            tail -n 20 "$logfile" >&2 || true
            rm -f "$pidfile"
            exit 1
        fi
        sleep 0.1
    done
    echo "moto.sh: moto server did not answer on $url within 10 s; see $logfile" >&2
    exit 1
}

stop() {
    if running; then
        pid=$(cat "$pidfile")
        kill "$pid"
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status)
        if running; then echo "running: $url (pid $(cat "$pidfile"))"; else echo "stopped"; exit 3; fi ;;
    url) echo "$url" ;;
    *) echo "usage: $0 start|stop|status|restart|url" >&2; exit 2 ;;
esac
