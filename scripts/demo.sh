#!/usr/bin/env bash
# The main job, end to end, on a small built-in example tree: installs what is
# missing, builds the tools, makes a composefs image with a digest store,
# mounts it with composefs-fuse, lists it, reads a file through it, unmounts.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
export PATH="/usr/local/go/bin:$PATH"

# Built by make, as the README builds them (-trimpath, the commit recorded),
# so that a later `make install` installs these very binaries.
bin="$PWD/bin"
make --no-print-directory BUILDDIR="$bin"

work=$(mktemp -d /tmp/composefs-demo.XXXXXX)
mnt="$work/mnt"
cleanup() {
	if mountpoint -q "$mnt" 2>/dev/null; then
		fusermount3 -u "$mnt" 2>/dev/null || umount "$mnt" 2>/dev/null || umount -l "$mnt" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# The example tree: a few directories, small (inline) and larger (external)
# files, a symlink, a fifo and a user xattr.
src="$work/tree"
mkdir -p "$src/etc" "$src/usr/share/doc" "$src/var/empty"
echo "Hello from a composefs image served by composefs-fuse." >"$src/hello.txt"
printf 'NAME=demo\nVERSION=1\n' >"$src/etc/os-release"
for i in $(seq 1 2000); do echo "line $i of a file large enough to live in the object store"; done >"$src/usr/share/doc/README"
ln -s ../usr/share/doc/README "$src/etc/readme-link"
mkfifo "$src/var/fifo"
setfattr -n user.demo -v "composefs" "$src/hello.txt" 2>/dev/null || true

echo "== mkcomposefs --digest-store=objects tree demo.cfs"
"$bin/mkcomposefs" --digest-store="$work/objects" "$src" "$work/demo.cfs"
echo "image: $(stat -c %s "$work/demo.cfs") bytes, objects: $(find "$work/objects" -type f | wc -l)"

echo "== composefs-fuse --basedir=objects demo.cfs mnt"
mkdir -p "$mnt"
"$bin/composefs-fuse" --basedir="$work/objects" "$work/demo.cfs" "$mnt"

echo "== ls -lR mnt"
ls -lR --time-style=+%F "$mnt"
echo "== cat mnt/hello.txt"
cat "$mnt/hello.txt"
echo "== head -3 mnt/etc/readme-link (an external file, read from the object store)"
head -3 "$mnt/etc/readme-link"
echo "== getfattr -d mnt/hello.txt"
getfattr -d "$mnt/hello.txt" 2>/dev/null || true

echo "== unmount"
fusermount3 -u "$mnt" 2>/dev/null || umount "$mnt"
echo "done"
