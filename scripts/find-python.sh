#!/usr/bin/env bash
# Print the path of a Python >= 3.12 interpreter (ansible-core 2.21 needs it).
# Looks at python3.13, python3.12 and python3 on PATH, then at pyenv's
# installed versions. Exits 1 with a message naming what to install if none.
set -euo pipefail

ok() {
    # A candidate must really run (a pyenv shim may exist for a version that
    # is not selected) and be 3.12 or newer.
    "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

real_path() {
    "$1" -c 'import sys; print(sys.executable)'
}

for name in "${THREETIER_PYTHON:-}" python3.13 python3.12 python3; do
    [ -n "$name" ] || continue
    if command -v "$name" >/dev/null 2>&1 && ok "$name"; then
        real_path "$name"
        exit 0
    fi
done

# pyenv's versions, also when pyenv itself is not on PATH (a bare CI shell)
root=""
if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
elif [ -d "${PYENV_ROOT:-$HOME/.pyenv}/versions" ]; then
    root=${PYENV_ROOT:-$HOME/.pyenv}
fi
if [ -n "$root" ]; then
    for candidate in $(ls -d "$root"/versions/3.1[3-9]*/bin/python3 "$root"/versions/3.12*/bin/python3 2>/dev/null | sort -rV); do
        if ok "$candidate"; then
            real_path "$candidate"
            exit 0
        fi
    done
fi

cat >&2 <<'MSG'
threetier needs Python 3.12 or newer (ansible-core 2.21 requires it), with venv.
None was found on PATH (python3.13, python3.12, python3) nor among pyenv's versions.
Install one, for example:  apt-get install python3.12 python3.12-venv  (where available)
                      or:  pyenv install 3.12
or point THREETIER_PYTHON at an interpreter.
MSG
exit 1
