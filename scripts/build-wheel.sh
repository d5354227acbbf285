#!/usr/bin/env bash
# Build taskboard's release artifact: dist/taskboard-<version>-py3-none-any.whl
#   scripts/build-wheel.sh            the version of app/src/taskboard/_version.py
#   scripts/build-wheel.sh 1.2.3      that version, built from a temporary copy
#                                     (the tree is never modified)
# The last line printed is the wheel's path.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
python="$here/.venv/bin/python"
[ -x "$python" ] || python=python3
# where the wheel goes (THREETIER_DIST_DIR: elsewhere, e.g. a test's own directory)
dist="${THREETIER_DIST_DIR:-$here/dist}"
version="${1:-}"

if [ -n "$version" ]; then
    # PEP 440 public versions only: digits, dots and the usual suffixes.
    if ! [[ "$version" =~ ^[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?$ ]]; then
        echo "build-wheel: not a release version: '$version' (e.g. 1.2.3, 1.3.0rc1)" >&2
        exit 2
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Build from a clean copy of the sources (no build/ or egg-info leftovers).
mkdir -p "$work/app"
cp -r "$here/app/pyproject.toml" "$here/app/README.md" "$here/app/src" "$work/app/"
find "$work/app" -name '__pycache__' -prune -exec rm -rf {} +
rm -rf "$work/app/src/"*.egg-info
if [ -n "$version" ]; then
    printf '"""The one source of taskboard'"'"'s version (read by pyproject.toml and the app)."""\n\n__version__ = "%s"\n' \
        "$version" > "$work/app/src/taskboard/_version.py"
else
    version=$("$python" -c 'import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
print(next(n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "__version__"))' \
        "$work/app/src/taskboard/_version.py")
fi

# The page names its release: its assets' URLs carry it (a browser never
# mixes one release's script with another's page), so a release is also a new
# page for the web tier (release.yml rolls it where it differs).
page="$work/app/src/taskboard/static/index.html"
sed -i -e "s|href=\"style.css\"|href=\"style.css?v=$version\"|" \
    -e "s|src=\"app.js\"|src=\"app.js?v=$version\"|" \
    -e "s|<meta charset=\"utf-8\">|&\n  <meta name=\"taskboard-release\" content=\"$version\">|" "$page"
grep -q "taskboard-release\" content=\"$version\"" "$page" || { echo "build-wheel: could not stamp the release into $page" >&2; exit 1; }

"$python" -m build --wheel --outdir "$work/out" "$work/app" >"$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2
    echo "build-wheel: build failed" >&2
    exit 1
}
wheel=$(ls "$work/out"/taskboard-*-py3-none-any.whl)
name=$(basename "$wheel")
if [ "$name" != "taskboard-$version-py3-none-any.whl" ]; then
    echo "build-wheel: expected taskboard-$version-py3-none-any.whl, got $name" >&2
    exit 1
fi
mkdir -p "$dist"
# the page unpacked from an earlier build of this release (release.yml, local_bake.yml) is stale now
rm -rf "$dist/page-$version"
# atomically: a reader of dist/ never sees a half-written wheel
cp "$wheel" "$dist/.$name.tmp"
mv -f "$dist/.$name.tmp" "$dist/$name"
echo "$dist/$name"
