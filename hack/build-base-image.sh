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
if [[ $(id -u) != 0 ]]; then
    echo "error: debootstrap needs root to build $image (run this script as root or under sudo)," >&2
    echo "       or pull debian:bookworm-slim from a registry and use that as the base instead" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null; then
    # A fresh Debian machine has apt but not debootstrap: install Debian's own package rather
    # than stopping the first run on a missing tool. Anywhere else, say what to install.
    if command -v apt-get >/dev/null && [[ -r /etc/debian_version ]]; then
        echo "debootstrap is not installed: installing Debian's debootstrap package with apt-get ..."
        if ! out="$( { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
                       DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap; } 2>&1)"; then
            echo "$out" >&2
            echo "error: installing debootstrap failed (see above); install it by hand or use debian:bookworm-slim" >&2
            exit 1
        fi
        echo "installed $(dpkg-query -W -f='debootstrap ${Version}' debootstrap)"
    else
        echo "error: debootstrap is not installed and this is not a Debian host with apt-get;" >&2
        echo "       install debootstrap with your package manager, or use debian:bookworm-slim as the base" >&2
        exit 1
    fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/bb-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "debootstrap bookworm ($packages) from $mirror (a minute or two) ..."
# Stage lines as they happen, and every 25th package, so a long download never looks stuck;
# the whole log is kept for the error path.
debootstrap --variant=minbase --include="$packages" bookworm "$work/rootfs" "$mirror" 2>&1 \
    | tee "$work/debootstrap.log" \
    | awk '/^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) [^ ]+( [0-9]|\.\.\.$)/ { n++; if (n % 25 == 0) { print "    ... " n " package steps (" $2 " " $3 ")"; fflush() } next }
           /^I: / { print "    " $0; fflush() }' \
    || { echo "error: debootstrap failed; its last lines:" >&2; tail -30 "$work/debootstrap.log" >&2; exit 1; }
echo "packing the root filesystem into $image ..."
# Keep the image small and reproducible-ish: no apt lists, caches or logs.
rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/*.bin \
    "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/log/*
tar -C "$work/rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "built $image"
