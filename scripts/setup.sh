#!/usr/bin/env bash
# Install what threetier needs on the control node, only what is missing:
#   - Debian packages (podman, runc, debootstrap, nftables, PostgreSQL server binaries...)
#   - a project virtual environment in .venv with the pins of requirements.txt
#     and taskboard (app/) installed editable.
# Re-running it with nothing missing changes nothing and takes about a second.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
venv="$here/.venv"

# --- Debian packages -------------------------------------------------------
# command -> package
declare -A wanted=(
    [podman]=podman
    [runc]=runc
    [debootstrap]=debootstrap
    [git]=git
    [curl]=curl
    # make diagram renders with graphviz
    [dot]=graphviz
    # the fleet test of the page in a real browser (headless)
    [chromium]=chromium
    [chromedriver]=chromium-driver
    # ... which trusts the local CA (an NSS database of the test's own)
    [certutil]=libnss3-tools
    [pg_ctlcluster]=postgresql
    # the app's tests of TLS to the database make their CA and certificates
    [openssl]=openssl
    # the local controller applies the security groups inside each
    # container's network namespace (nsenter + nft), from the host
    [nft]=nftables
    [iptables]=iptables
)
missing=()
for cmd in "${!wanted[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done
# PostgreSQL server binaries (initdb, postgres) for the app's tests.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
# extra packages asked for by the caller (space separated)
for pkg in ${THREETIER_EXTRA_PACKAGES:-}; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages: ${missing[*]}" >&2
        echo "setup: install them as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # the postgresql package starts a cluster of its own; the tests start
    # their own throwaway servers and need nothing running.
fi

# --- Python virtual environment -------------------------------------------
python=$("$here/scripts/find-python.sh")
stamp="$venv/.threetier-stamp"
want_stamp="$("$python" -c 'import sys; print(sys.version)' | head -1) $(cat requirements.txt $(ls app/pyproject.toml 2>/dev/null) | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ]; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
    rm -rf "$venv"
    echo "setup: creating $venv with $python"
    "$python" -m venv "$venv"
fi
echo "setup: installing Python packages into .venv (requirements.txt)"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v '^WARNING: Location' || true
if [ -f app/pyproject.toml ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e app 2>&1 | grep -v '^WARNING: Location' || true
fi
"$venv/bin/python" -m pip check >/dev/null || { "$venv/bin/python" -m pip check; exit 1; }
echo "$want_stamp" > "$stamp"
echo "setup: done"
