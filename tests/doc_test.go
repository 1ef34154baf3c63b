// Package tests holds the end-to-end tests: real mounts of composefs images
// through composefs-fuse, compared entry by entry with what the kernel shows
// for the same image (EROFS + overlayfs), verity policy, rootless mounts and
// damaged images. They need root, /dev/fuse, EROFS and overlayfs, and skip
// with a message when something is missing.
package tests
