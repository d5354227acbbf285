#!/bin/sh
# Control node: a release bundle for one target = the taskboard wheel plus
# every dependency as a wheel for the target's Python and platform, in one
# tar (hosts install from it with pip --no-index). pip uses the control
# node's own configuration (index, mirror, proxy).
#   make-bundle.sh PYTHON ARTIFACT BUNDLE PYVERSION ABI PLATFORM...
set -eu
python=$1 artifact=$2 bundle=$3 pyversion=$4 abi=$5
shift 5
[ $# -gt 0 ] || { echo "make-bundle: no platform given" >&2; exit 2; }
work=$(mktemp -d "$bundle.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
platforms=
for p in "$@"; do platforms="$platforms --platform $p"; done
# shellcheck disable=SC2086  # one word per platform option
"$python" -m pip download --disable-pip-version-check --no-input --quiet \
    --only-binary=:all: --implementation cp --python-version "$pyversion" --abi "$abi" \
    $platforms --dest "$work/wheels" "$artifact" 2>"$work/pip.log" || {
    grep -v 'is ignored' "$work/pip.log" >&2
    echo "make-bundle: pip download failed (a dependency without a wheel for $abi $*?)" >&2
    exit 1
}
tar -C "$work/wheels" -cf "$work/bundle.tar" .
mv "$work/bundle.tar" "$bundle"
