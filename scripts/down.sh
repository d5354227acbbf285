#!/usr/bin/env bash
# Remove the local environment: stop the AWS emulator and the local
# controller first (so that nothing is launched again), then remove every
# container, volume, network and image of the fleet (labelled fleet=local, or
# named tt-local-* and localhost/threetier-{web,app,lb,db}) and the host's
# NAT exemption of the VPC (the controller's). The base image stays (the
# Molecule scenarios use it too). No-op when nothing is up.
#   scripts/down.sh --run-alone-only   only stop a taskboard of the old run-alone mode
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# taskboard alone on the host (SQLite), without the fleet: THREETIER_MODE=run-alone
# (THREETIER_LOCAL_DIR, that mode's state directory, implies it).
if [ "${THREETIER_MODE:-}" = run-alone ] || [ -n "${THREETIER_LOCAL_DIR:-}" ]; then
    exec "$here/scripts/run-alone-down.sh" "$@"
fi
cd "$here"
export CONTAINERS_CONF="$here/scripts/containers.conf"
state="$here/.local"

# The old run-alone mode (taskboard on the host, pidfile in .local/).
pidfile="$state/taskboard.pid"
if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null && grep -q taskboard "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$pidfile" "$state/taskboard.port"
fi
[ "${1:-}" = "--run-alone-only" ] && exit 0

removed=0
"$here/scripts/moto.sh" stop
containers=$( (podman ps -aq --filter label=fleet=local; podman ps -aq --filter label=threetier.bake) | sort -u)
if [ -n "$containers" ]; then
    # shellcheck disable=SC2086
    podman rm --force --time 10 $containers >/dev/null
    removed=1
fi
if podman volume exists tt-local-pgdata; then
    podman volume rm --force tt-local-pgdata >/dev/null
    removed=1
fi
networks=$(podman network ls --quiet --filter label=fleet=local)
if [ -n "$networks" ]; then
    # shellcheck disable=SC2086
    podman network rm --force $networks >/dev/null
    removed=1
fi
for repo in threetier-web threetier-app threetier-lb threetier-db; do
    images=$(podman images --quiet --filter "reference=localhost/$repo" | sort -u)
    if [ -n "$images" ]; then
        # shellcheck disable=SC2086
        podman rmi --force $images >/dev/null
        removed=1
    fi
done
# the controller's NAT exemptions (iptables rules commented threetier-vpc:tt-local-)
while read -r rule; do
    # shellcheck disable=SC2086
    iptables -t nat $(printf '%s\n' "$rule" | sed 's/^-A /-D /') 2>/dev/null || true
    removed=1
done < <(iptables -t nat -S POSTROUTING 2>/dev/null | grep -- '--comment threetier-vpc:tt-local-' || true)
rm -rf "$state/fleet" "$state/controller"
rm -f "$here"/.cache/ansible-facts/tt-local-* 2>/dev/null || true
if [ "$removed" = 1 ]; then
    echo "the local environment is removed (emulator stopped)"
else
    echo "the local environment is not up (emulator stopped)"
fi
