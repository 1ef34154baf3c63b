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

# missing prints the Debian packages whose commands are not installed.
missing() {
	command -v fusermount3 >/dev/null || echo fuse3
	command -v fsck.erofs >/dev/null || echo erofs-utils
	command -v fsverity >/dev/null || echo fsverity
	command -v setfattr >/dev/null || echo attr
}

if [ -n "$(missing)" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages $(missing | tr '\n' ' '); run as root or install them" >&2
		exit 1
	fi
	# Two test runs started together would both run apt-get, and the
	# second fail on dpkg's lock: they take turns, and the second finds
	# nothing left to install. The dpkg timeout covers anyone else's apt.
	(
		flock 7
		mapfile -t need < <(missing)
		if [ ${#need[@]} -gt 0 ]; then
			echo "deps: installing ${need[*]}" >&2
			export DEBIAN_FRONTEND=noninteractive
			apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
			apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
		fi
	) 7>/run/lock/composefs-go-deps
fi
