#!/usr/bin/env bash
# Builds bot-bottle's base image without any container registry: debootstrap a Debian bookworm
# rootfs from Debian's package mirror, then `docker import` it. CI and offline users pass this
# image as the BASE build argument wherever real users get debian:bookworm-slim.
#
# usage: hack/build-base-image.sh [--force] [IMAGE]      (default IMAGE: bot-bottle/base:bookworm)
# env:   BB_DEBIAN_MIRROR (default http://deb.debian.org/debian)
set -euo pipefail

force=0
if [[ "${1:-}" == "--force" ]]; then force=1; shift; fi
image="${1:-bot-bottle/base:bookworm}"
mirror="${BB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What the sidecar (git, ssh, CA store) and the test agent (curl, git, python3 + requests) need;
# the Dockerfiles install these themselves on a stock debian base.
packages=ca-certificates,curl,git,openssh-client,python3,python3-requests,tar

if [[ $force == 0 ]] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image already present (pass --force to rebuild)"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    echo "error: debootstrap is not installed; install it with: apt-get install -y debootstrap" >&2
    exit 1
fi
if [[ $(id -u) != 0 ]]; then
    echo "error: debootstrap needs root (run this script as root or under sudo)" >&2
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/bb-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "debootstrap bookworm ($packages) from $mirror ..."
debootstrap --variant=minbase --include="$packages" bookworm "$work/rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
# Keep the image small and reproducible-ish: no apt lists, caches or logs.
rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/*.bin \
    "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/log/*
tar -C "$work/rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "built $image"
