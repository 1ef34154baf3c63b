#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine: the Go
# toolchain is expected at /usr/local/go (or on PATH); the Debian packages
# below are installed only when missing.
set -euo pipefail

export PATH="/usr/local/go/bin:$PATH"
if ! command -v go >/dev/null; then
	echo "deps: Go is not installed (expected /usr/local/go/bin/go)" >&2
	exit 1
fi

need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v fsck.erofs >/dev/null || need+=(erofs-utils)
command -v fsverity >/dev/null || need+=(fsverity)
command -v setfattr >/dev/null || need+=(attr)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages ${need[*]}; run as root or install them" >&2
		exit 1
	fi
	echo "deps: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq "${need[@]}" >/dev/null
fi
