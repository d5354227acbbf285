#!/usr/bin/env bash
# Bring up the local environment: the whole architecture on this machine,
# every step the one an operator runs against AWS, with the emulator as AWS:
#   1. the base image (scripts/build-base-image.sh; nothing when it exists)
#   2. the AWS emulator and, beside it, the local controller that runs what
#      the emulator says as containers (scripts/moto.sh; docs/local-data-plane.md)
#   3. the release artifact (scripts/build-wheel.sh), then one run of
#      playbooks/up.yml:
#      - the images, baked by the same roles as the AMIs and recorded as
#        AMIs (images.yml; only missing ones)
#      - the control plane in the emulator (site.yml, as against AWS): its
#        Auto Scaling groups launch the instances, the controller makes
#        containers of them and HAProxy balancers of the ALBs
#      - PostgreSQL for RDS (local_up.yml), the schema migrated once, every
#        group's instances healthy
# and prints the URL. Re-running changes nothing and keeps the data;
# scripts/down.sh removes it all.
#   THREETIER_LOCAL_PORT=8080       the external balancer's port 80 on 127.0.0.1
#   THREETIER_LOCAL_TLS_PORT=8443   its port 443 there
#   THREETIER_LOCAL_CDN_TLS_PORT=9443  CloudFront's stand-in there (the site's URL)
#   THREETIER_LOCAL_CDN_PORT=9080      and its plain HTTP (the redirect)
# Ansible's output goes to .local/fleet/up.log (the end is shown on failure).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# taskboard alone on the host (SQLite), without the fleet: THREETIER_MODE=run-alone
# (THREETIER_LOCAL_DIR, that mode's state directory, implies it).
if [ "${THREETIER_MODE:-}" = run-alone ] || [ -n "${THREETIER_LOCAL_DIR:-}" ]; then
    exec "$here/scripts/run-alone-up.sh" "$@"
fi
cd "$here"
export PATH="$here/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$here/ansible.cfg" CONTAINERS_CONF="$here/scripts/containers.conf"
export ANSIBLE_CALLBACKS_ENABLED="${ANSIBLE_CALLBACKS_ENABLED:-ansible.posix.timer}"
export ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1
# the ports, checked before anything changes (the last run's log too)
port="${THREETIER_LOCAL_PORT:-8080}"
tls_port="${THREETIER_LOCAL_TLS_PORT:-8443}"
cdn_port="${THREETIER_LOCAL_CDN_PORT:-9080}"
cdn_tls_port="${THREETIER_LOCAL_CDN_TLS_PORT:-9443}"
seen=" "
for p in "THREETIER_LOCAL_PORT=$port" "THREETIER_LOCAL_TLS_PORT=$tls_port" \
    "THREETIER_LOCAL_CDN_PORT=$cdn_port" "THREETIER_LOCAL_CDN_TLS_PORT=$cdn_tls_port"; do
    v=${p#*=}
    if ! [[ "$v" =~ ^[0-9]+$ ]] || [ "$v" -lt 1 ] || [ "$v" -gt 65535 ]; then
        echo "up: ${p%%=*} must be a port number, got '$v'" >&2
        exit 2
    fi
    if [[ "$seen" == *" $v "* ]]; then
        echo "up: THREETIER_LOCAL_PORT, THREETIER_LOCAL_TLS_PORT, THREETIER_LOCAL_CDN_PORT and" \
            "THREETIER_LOCAL_CDN_TLS_PORT must differ (${p%%=*} repeats $v)" >&2
        exit 2
    fi
    seen="$seen$v "
done
state="$here/.local/fleet"
log="$state/up.log"
mkdir -p "$state"
: >"$log"

# The run-alone mode of earlier versions (taskboard on the host) is replaced.
if [ -f "$here/.local/taskboard.pid" ]; then
    "$here/scripts/down.sh" --run-alone-only >/dev/null
fi

started=$(date +%s)
step() {
    local name=$1
    shift
    local t0 out changed
    t0=$(date +%s)
    out="$state/step.log"
    printf 'up: %-44s' "$name"
    if "$@" >"$out" 2>&1; then
        cat "$out" >>"$log"
        # changed= summed over every host of the playbook's recap
        changed=$(grep -E ' : ok=[0-9]+ ' "$out" | grep -oE 'changed=[0-9]+' | awk -F= '{ s += $2; n++ } END { if (n) print s }' || true)
        echo "ok ($(($(date +%s) - t0)) s${changed:+, changed=$changed})"
    else
        cat "$out" >>"$log"
        echo "FAILED"
        echo "up: the end of $log:" >&2
        grep -vE '^\s*$' "$out" | tail -n 40 >&2
        exit 1
    fi
}

# The fleet of earlier versions of the kit (before the local controller):
# instances, balancers and the endpoint as containers Ansible made, the
# database on the old db network, and networks with the subnets' CIDRs that
# the controller's networks need. Removed (the database's data stays in its
# volume); the new layout is made again below.
earlier_layout() {
    local containers networks
    containers=$(podman ps -a --filter label=fleet=local \
        --format '{{.ID}} {{index .Labels "threetier.controller"}} {{index .Labels "threetier.kind"}}' |
        awk '$2 == "<no" || $2 == "" { if ($NF != "database") print $1 }')
    # the old layout's database lacks the kind label
    containers="$containers $(podman ps -a --filter label=fleet=local --filter label=role=db \
        --format '{{.ID}} {{index .Labels "threetier.kind"}}' | awk '$2 != "database" { print $1 }')"
    networks=$(podman network ls --filter label=fleet=local --format '{{.Name}} {{.Labels}}' |
        awk 'index($0, "threetier.controller=") == 0 { print $1 }')
    if [ -n "${containers// /}" ]; then
        # shellcheck disable=SC2086
        podman rm --force --time 10 $containers >/dev/null
    fi
    if [ -n "$networks" ]; then
        # shellcheck disable=SC2086
        podman network rm --force $networks >/dev/null
    fi
    echo "removed: containers ${containers:-none}; networks ${networks:-none}"
}
if podman ps -a --filter label=fleet=local --format '{{index .Labels "threetier.kind"}}' | grep -q '^<no value>$\|^$' ||
    podman network ls --filter label=fleet=local --format '{{.Labels}}' | grep -vq 'threetier.controller='; then
    step "the fleet of an earlier version" earlier_layout
fi

release=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' app/src/taskboard/_version.py)
step "base image" scripts/build-base-image.sh
step "AWS emulator and local controller" env THREETIER_LOCAL_PORT="$port" THREETIER_LOCAL_TLS_PORT="$tls_port" \
    THREETIER_LOCAL_CDN_PORT="$cdn_port" THREETIER_LOCAL_CDN_TLS_PORT="$cdn_tls_port" \
    scripts/moto.sh start
AWS_ENDPOINT_URL=$(scripts/moto.sh url)
export AWS_ENDPOINT_URL
if [ ! -f "dist/taskboard-$release-py3-none-any.whl" ]; then
    step "release artifact $release" scripts/build-wheel.sh
fi
# one run of images.yml, site.yml and local_up.yml (playbooks/up.yml);
# make up needs no pruning of older AMIs (images.yml alone prunes)
step "images, control plane, fleet (up.yml)" \
    ansible-playbook playbooks/up.yml -e "threetier_release=$release" -e images_prune=false

echo "up: done in $(($(date +%s) - started)) s (log: $log; stop: make down)"
# the URL local_ready.yml checked: https once the external balancer has its
# certificate (the local inventory's), signed by the local CA
url=$(grep -o 'threetier (local) is up: [^ "'"'"']*' "$log" | tail -n 1 | awk '{ print $NF }')
url=${url:-http://127.0.0.1:$port/}
case "$url" in
https://*) echo "up: the local CA signs its certificate: curl --cacert $here/.local/ca/ca.crt $url" ;;
esac
echo "threetier (local) is up: $url"
