#!/usr/bin/env bash
# Start, stop or check the local AWS emulator (moto server with the kit's
# extensions) and, beside it, the local controller that keeps the podman
# data plane in step with it (docs/local-data-plane.md). The emulator listens
# on 127.0.0.1 only; pidfiles and logs live under .local/ (moto.log,
# controller.log).
#
#   scripts/moto.sh start|stop|status|restart|url
#
# Environment: MOTO_PORT (default 4566); THREETIER_LOCAL_TLS_PORT (default
# 8443: the internet-facing ALB's 443, once it has an HTTPS listener);
# THREETIER_LOCAL_PORT (default 8080,
# where the controller publishes the internet-facing balancer). `start` waits
# until the server answers and prints its URL; it does nothing for what is
# already running.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state="$here/.local"
pidfile="$state/moto.pid"
logfile="$state/moto.log"
port="${MOTO_PORT:-4566}"
url="http://127.0.0.1:$port"
python="$here/.venv/bin/python"
# moto with the kit's extensions (scripts/localaws)
server="$here/scripts/moto_server.py"
controller="$here/scripts/local_controller.py"
cpidfile="$state/controller.pid"
clogfile="$state/controller.log"

# ours: the pidfile's process is alive and is this checkout's moto server
# (after a restore without processes the pid may belong to another one)
running() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$server"
}

controller_running() {
    [ -f "$cpidfile" ] || return 1
    local pid
    pid=$(cat "$cpidfile")
    kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$controller"
}

start_controller() {
    controller_running && return 0
    # the controller runs podman, nsenter and nft as this user (root)
    CONTAINERS_CONF="${CONTAINERS_CONF:-$here/scripts/containers.conf}" AWS_ENDPOINT_URL="$url" \
        nohup "$python" "$controller" --endpoint "$url" --state-dir "$state/controller" >>"$clogfile" 2>&1 &
    echo $! >"$cpidfile"
    sleep 0.5
    if ! controller_running; then
        echo "moto.sh: the local controller exited; see $clogfile" >&2
        tail -n 20 "$clogfile" >&2 || true
        rm -f "$cpidfile"
        exit 1
    fi
}

stop_pid() {
    local file=$1 pid
    pid=$(cat "$file")
    kill "$pid"
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$file"
}

answers() {
    "$here/.venv/bin/python" - "$url" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=1)
PY
}

start() {
    if running; then
        start_controller
        echo "$url"
        return 0
    fi
    [ -x "$python" ] || { echo "moto.sh: $python missing; run make setup" >&2; exit 1; }
    mkdir -p "$state"
    # a data plane is attached (the controller): target health from its
    # reports, draining and Auto Scaling terminations as on AWS
    # the recorder (off until a test starts it: tests/local/test_release.py)
    # writes its file under the state directory, not where make ran
    THREETIER_EMULATOR_DATA_PLANE=1 MOTO_RECORDER_FILEPATH="$state/moto-recording.jsonl" \
        nohup "$python" "$server" -H 127.0.0.1 -p "$port" >>"$logfile" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
        if answers; then
            start_controller
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
    if controller_running; then
        stop_pid "$cpidfile"
    fi
    rm -f "$cpidfile"
    if running; then
        stop_pid "$pidfile"
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status)
        if running; then
            echo "running: $url (pid $(cat "$pidfile")), controller: $(controller_running && echo "pid $(cat "$cpidfile")" || echo stopped)"
        else
            echo "stopped"; exit 3
        fi ;;
    url) echo "$url" ;;
    *) echo "usage: $0 start|stop|status|restart|url" >&2; exit 2 ;;
esac
