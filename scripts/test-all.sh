#!/usr/bin/env bash
# Every test, as CI runs it (`make test`, called by .ci/run):
#   1. lint (ruff, yamllint, ansible-lint)
#   2. taskboard's tests (real PostgreSQL)        } meanwhile the local fleet
#   3. every Molecule scenario (podman, systemd)  } comes up (make up) and,
#                                                 } from the start, the kit's tests
#                                                 } run against their own moto
#                                                 } servers (tests/)
#   4. the fleet's tests (tests/local/: real traffic), once the fleet is up
#   then make down, when this run brought the fleet up. The kit's tests go
#   beside the rest because much of the rest waits (health checks, draining,
#   package installs): side by side the two cores stay busy.
# Prints each step's wall time; stops at the first failing step.
#   THREETIER_TEST_FLEET=0   skip the fleet (steps 5 and the make up)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
logdir="$here/.local/test"
mkdir -p "$logdir"
fleet=${THREETIER_TEST_FLEET:-1}
summary=()
started=$SECONDS

finish() {
    echo "==== test summary"
    printf '  %s\n' "${summary[@]}"
    echo "  total $((SECONDS - started)) s"
}

step() {
    local name=$1 t0=$SECONDS
    shift
    echo "==== $name"
    if "$@"; then
        summary+=("$(printf 'PASS  %-26s %5s s' "$name" $((SECONDS - t0)))")
    else
        local rc=$?
        summary+=("$(printf 'FAIL  %-26s %5s s' "$name" $((SECONDS - t0)))")
        finish
        exit "$rc"
    fi
}

# The base image first: the fleet's bake and Molecule both start from it.
step "base image" scripts/build-base-image.sh

up_pid=""
fleet_was_up=0
if [ "$fleet" = 1 ]; then
    if podman container exists tt-local-lb-ext 2>/dev/null; then
        fleet_was_up=1
    fi
    # The fleet comes up beside the app's tests and the Molecule scenarios
    # (its bake and boots mostly wait on package installs and systemd).
    echo "==== make up, in the background (log: $logdir/up.log)"
    up_t0=$SECONDS
    # in its own process group, so that a failing step stops all of it
    # (ansible-playbook and its workers too, not only up.sh)
    setsid scripts/up.sh >"$logdir/up.log" 2>&1 &
    up_pid=$!
fi
kit_pid=""
stop_background() {
    for pid in "$up_pid" "$kit_pid"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" 2>/dev/null || true
        fi
    done
}
trap stop_background EXIT
# the slowest tests of each suite, in the log
durations="--durations=15"

# the kit's tests set the run's length: they start first, lint runs beside
# them (a lint failure still stops the run, and the trap stops them)
if [ "$fleet" = 1 ]; then
    echo "==== test-kit, in the background (log: $logdir/test-kit.log)"
    kit_t0=$SECONDS
    rm -f "$logdir/test-kit.took"
    setsid bash -c 't0=$SECONDS; make --no-print-directory test-kit PYTEST_ARGS="$1"; rc=$?
                   echo $((SECONDS - t0)) >"$2"; exit $rc' _ "$durations" "$logdir/test-kit.took" \
        >"$logdir/test-kit.log" 2>&1 &
    kit_pid=$!
fi
step "lint" make --no-print-directory lint
step "test-app" make --no-print-directory test-app
step "test-roles" make --no-print-directory test-roles
if [ "$fleet" != 1 ]; then
    step "test-kit" make --no-print-directory test-kit PYTEST_ARGS="$durations"
else
    echo "==== waiting for make up"
    if wait "$up_pid"; then
        up_pid=""
        summary+=("$(printf 'PASS  %-26s %5s s' "make up (in background)" $((SECONDS - up_t0)))")
        cat "$logdir/up.log"
    else
        up_pid=""
        summary+=("FAIL  make up (in background)")
        tail -n 60 "$logdir/up.log"
        finish
        exit 1
    fi
    export THREETIER_FLEET_UP=1  # the fleet tests need not run up.sh first
    fleet_rc=0
    step_t0=$SECONDS
    echo "==== test-fleet"
    make --no-print-directory test-fleet PYTEST_ARGS="$durations" || fleet_rc=$?
    fleet_s=$((SECONDS - step_t0))
    kit_rc=0
    wait "$kit_pid" || kit_rc=$?
    kit_pid=""
    echo "==== test-kit (ran beside the other steps)"
    cat "$logdir/test-kit.log"
    summary+=("$(printf '%s  %-26s %5s s' "$([ $kit_rc = 0 ] && echo PASS || echo FAIL)" "test-kit (in background)" "$(cat "$logdir/test-kit.took" 2>/dev/null || echo $((SECONDS - kit_t0)))")")
    summary+=("$(printf '%s  %-26s %5s s' "$([ $fleet_rc = 0 ] && echo PASS || echo FAIL)" "test-fleet" "$fleet_s")")
    if [ "$fleet_was_up" = 0 ]; then
        step "make down" scripts/down.sh
    fi
    if [ "$kit_rc" != 0 ] || [ "$fleet_rc" != 0 ]; then
        finish
        exit 1
    fi
fi
finish
