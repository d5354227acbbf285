#!/usr/bin/env bash
# Build the Debian 12 base image that stands in for the base AMI: what the
# Molecule platforms and the local image bakes start from. No registry is
# needed: debootstrap from Debian's archive, then `podman import`.
#
#   scripts/build-base-image.sh            build if missing
#   scripts/build-base-image.sh --force    rebuild
#
# The image name comes from THREETIER_BASE_IMAGE (default
# localhost/threetier-base:bookworm).
set -euo pipefail

image=${THREETIER_BASE_IMAGE:-localhost/threetier-base:bookworm}
here=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/scripts/containers.conf}

if [ "${1:-}" != "--force" ] && podman image exists "$image"; then
    exit 0
fi
# One build at a time (make test brings the fleet up beside Molecule): the
# second caller waits, then finds the image.
exec 9>/var/tmp/threetier-base-image.lock
flock 9
if [ "${1:-}" != "--force" ] && podman image exists "$image"; then
    exit 0
fi
for cmd in debootstrap podman; do
    command -v "$cmd" >/dev/null || { echo "build-base-image: $cmd is missing (run make setup)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "build-base-image: debootstrap needs root" >&2; exit 1; }

root=$(mktemp -d /var/tmp/threetier-base.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "build-base-image: debootstrap bookworm into $root"
# What every host of the kit needs to be managed by Ansible and run systemd.
debootstrap --variant=minbase \
    --include=python3,python3-apt,sudo,systemd,systemd-sysv,dbus,ca-certificates,iproute2,procps \
    bookworm "$root" >"$root.log" 2>&1 || { tail -30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# The image's apt sources are the host's own (whatever mirror this machine uses).
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    rm -f "$root/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
elif [ -f /etc/apt/sources.list ]; then
    cp /etc/apt/sources.list "$root/etc/apt/sources.list"
fi

# Image hygiene: no package lists, no logs, an empty machine-id (generated at
# boot). The empty lists directory gets an old mtime so that apt's
# cache_valid_time does not trust it (see ../shared/notes/containers.md).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
touch -d @0 "$root/var/lib/apt/lists"
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
find "$root/var/log" -type f -delete

echo "build-base-image: importing $image"
tar --numeric-owner --xattrs -C "$root" -c . |
    podman import \
        --change 'CMD ["/lib/systemd/systemd"]' \
        --change 'ENV container=podman' \
        - "$image" >/dev/null
echo "build-base-image: $image ready"
