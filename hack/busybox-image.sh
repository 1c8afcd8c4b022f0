#!/usr/bin/env bash
# Builds peapod's busybox test image from Debian's busybox-static as an image
# archive: an OCI image layout (index.json, blobs/sha256/...) that is also a
# `docker save` tarball (manifest.json), tagged docker.io/library/busybox:1.36 and
# docker.io/library/busybox:latest. The output is deterministic: the same busybox
# binary always gives the same bytes and digests.
#
#   hack/busybox-image.sh OUT.tar        (BUSYBOX=/path/to/busybox to override)
#
# Load it with `peapod image load OUT.tar` (or docker load / ctr import).
set -euo pipefail
if [ $# -ne 1 ]; then
	echo "usage: $0 OUT.tar" >&2
	exit 2
fi
out=$(realpath -m -- "$1")
busybox=${BUSYBOX:-/bin/busybox}
if [ ! -x "$busybox" ]; then
	echo "$busybox is missing: install Debian's busybox-static (make deps)" >&2
	exit 1
fi
cd "$(dirname "$0")/.."
exec go run ./internal/image/mkbusybox -busybox "$busybox" "$out"
