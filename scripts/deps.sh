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
	command -v make >/dev/null || echo make
	command -v fusermount3 >/dev/null || echo fuse3
	command -v fsck.erofs >/dev/null || echo erofs-utils
	command -v fsverity >/dev/null || echo fsverity
	command -v setfattr >/dev/null || echo attr
	command -v docker-registry >/dev/null || echo docker-registry
	command -v skopeo >/dev/null || echo skopeo
	[ -x /usr/sbin/nginx ] || echo nginx-light
	command -v umoci >/dev/null || echo umoci
}

# lock_wait is how long, in seconds, apt_get waits in all for a lock another
# apt or dpkg holds: unattended-upgrades on a machine just booted, say.
lock_wait=300

# apt_get runs apt-get quietly, its messages on stderr. While another apt
# or dpkg holds a lock it needs, it says so once and tries again every few
# seconds, up to lock_wait seconds in all, for apt-get update as well as
# install: apt's own DPkg::Lock::Timeout waits for dpkg's lock only, not
# for the package lists' lock that update takes.
apt_get() {
	local out held waited=0
	while ! out=$(LC_ALL=C apt-get -qq "$@" 2>&1 >/dev/null); do
		held=$(grep -m1 -E 'Could not get lock|Unable to lock|Unable to acquire the dpkg frontend lock' <<<"$out" || true)
		if [ -z "$held" ] || [ "$waited" -ge "$lock_wait" ]; then
			printf '%s\n' "$out" >&2
			return 1
		fi
		if [ "$waited" -eq 0 ]; then
			echo "deps: waiting up to $((lock_wait / 60)) minutes for the apt lock (${held#E: })" >&2
		fi
		sleep 5
		waited=$((waited + 5))
	done
	if [ -n "$out" ]; then
		printf '%s\n' "$out" >&2
	fi
}

if [ -n "$(missing)" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages $(missing | tr '\n' ' '); run as root or install them" >&2
		exit 1
	fi
	# Two test runs started together would both run apt-get, and the
	# second fail on dpkg's lock: they take turns, and the second finds
	# nothing left to install. apt_get waits for anyone else's apt.
	(
		flock 7
		mapfile -t need < <(missing)
		if [ ${#need[@]} -gt 0 ]; then
			echo "deps: installing ${need[*]}" >&2
			export DEBIAN_FRONTEND=noninteractive
			apt_get update
			apt_get install -y "${need[@]}"
		fi
	) 7>/run/lock/composefs-go-deps
fi
