#!/usr/bin/env bash
# Run every Molecule scenario (molecule/<name>/molecule.yml) with
# `molecule test`, one after the other, from the repository root.
# Builds the base image first, stops at the first failing scenario, and prints
# each scenario's wall time. Called by `make test-roles`.
#
#   scripts/molecule-all.sh              every role's scenario (molecule/<role>,
#                                        one per directory of roles/)
#   scripts/molecule-all.sh common stack only these, in this order
# The `stack` scenario (the three host roles together, with a database) is
# not in the default run: the local fleet's tests (tests/local, in make test)
# prove the same wiring on the real images, balancers and networks. Run it
# alone with `make molecule SCENARIO=stack`.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export ANSIBLE_CONFIG=${ANSIBLE_CONFIG:-$here/ansible.cfg}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/scripts/containers.conf}
export PATH="$here/.venv/bin:$PATH"
# the apt store (.deb files, package lists) shared by every scenario's
# containers (molecule/README.md)
export THREETIER_APT_CACHE=${THREETIER_APT_CACHE:-$here/.cache/apt}
mkdir -p "$THREETIER_APT_CACHE/archives" "$THREETIER_APT_CACHE/lists"

if [ "$#" -gt 0 ]; then
    scenarios=("$@")
else
    scenarios=()
    for f in molecule/*/molecule.yml; do
        [ -f "$f" ] || continue
        name=$(basename "$(dirname "$f")")
        [ -d "roles/$name" ] || continue
        scenarios+=("$name")
    done
fi
if [ "${#scenarios[@]}" -eq 0 ]; then
    echo "molecule-all: no scenario under molecule/" >&2
    exit 1
fi

scripts/build-base-image.sh

summary=()
started=$SECONDS
for s in "${scenarios[@]}"; do
    [ -f "molecule/$s/molecule.yml" ] || { echo "molecule-all: no scenario molecule/$s" >&2; exit 2; }
    echo "==== molecule test -s $s"
    t0=$SECONDS
    if molecule test -s "$s"; then
        summary+=("$(printf 'PASS  %-12s %4ss' "$s" $((SECONDS - t0)))")
    else
        rc=$?
        summary+=("$(printf 'FAIL  %-12s %4ss' "$s" $((SECONDS - t0)))")
        echo "==== summary (stopped at the first failure)"
        printf '  %s\n' "${summary[@]}"
        echo "  rerun alone: make molecule SCENARIO=$s   (keep the containers: CMD=converge, then CMD=verify, CMD=destroy)"
        exit "$rc"
    fi
done
echo "==== summary"
printf '  %s\n' "${summary[@]}"
printf '  all %d scenario(s) passed in %ss\n' "${#scenarios[@]}" $((SECONDS - started))
