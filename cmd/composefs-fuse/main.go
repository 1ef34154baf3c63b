// Command composefs-fuse mounts a composefs image through FUSE, showing what
// the kernel shows for the same image mounted with EROFS and overlayfs.
//
//	composefs-fuse [OPTIONS] IMAGE MOUNTPOINT
//
// It works as mount.fuse3's helper too, so that
// `mount -t fuse.composefs-fuse IMAGE MNT -o basedir=DIR` and fstab lines
// do what they say. Its command line and serving are package fusemount's.
package main

import (
	"os"

	"github.com/composefs/composefs-go/internal/fusemount"
)

func main() {
	os.Exit(fusemount.Main(os.Args[1:], os.Stdout, os.Stderr))
}
