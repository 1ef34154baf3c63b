// Package dirscan turns a directory on disk into composefs entries, the way
// C mkcomposefs reads a SOURCE directory (lcfs_build, then its digest and
// --digest-store passes): the same entries, attributes, inlining and
// payloads, so that the image written from them is the image C writes.
package dirscan

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/verity"
)

// Store receives the content of external files (mkcomposefs --digest-store).
// *objects.FlatStore implements it.
type Store interface {
	// Add copies src into the store under its fs-verity digest and returns
	// the payload naming the object ("xx/rest") and the digest.
	Add(alg verity.Algorithm, src *os.File) (payload string, digest []byte, err error)
}

// Options mirror mkcomposefs' flags for a directory source.
type Options struct {
	// UseEpoch sets every mtime to 0 (--use-epoch).
	UseEpoch bool
	// SkipDevices leaves out character and block devices, whiteouts
	// (character devices 0/0) included (--skip-devices).
	SkipDevices bool
	// SkipXattrs reads no xattrs (--skip-xattrs).
	SkipXattrs bool
	// UserXattrs reads only user.* xattrs (--user-xattrs). It conflicts
	// with SkipXattrs, as in C.
	UserXattrs bool
	// Hardlinks keeps files that are hardlinked in the source as hardlink
	// entries (the first path in entry order holds the data, the others
	// point to it, and nlink counts the paths). C does not: every path is a
	// file of its own with nlink 1. Off by default. A whiteout with two
	// names in the source is then an error (dumpfile.ErrHardlinkedWhiteout):
	// overlayfs may make its whiteouts links of one inode, so scan an upper
	// directory without Hardlinks.
	Hardlinks bool
	// ComputeDigest computes the fs-verity digest of every external file
	// and names its payload after it ("xx/rest"), as C mkcomposefs always
	// does. Without it (and without a Store) an external file's payload is
	// its path relative to the source directory and it has no digest.
	ComputeDigest bool
	// DigestAlgorithm is the fs-verity hash; 0 means SHA256, C's only one.
	DigestAlgorithm verity.Algorithm
	// Threads bounds how many files are read at once for inline content,
	// digests and the store; 0 means one per CPU (C's default).
	Threads int
	// Store, when set, receives every external file (--digest-store); its
	// payloads and digests are used, so it implies ComputeDigest.
	Store Store
	// Progress, when set, counts the work as it is done, for a caller
	// that shows it while Scan runs.
	Progress *Progress
}

// Progress is how far a Scan has got. It is safe to read while the scan
// runs: the walk counts entries first, then files are read (inline
// content, digest, store copy) and counted with their bytes.
type Progress struct {
	Entries atomic.Int64
	Files   atomic.Int64 // regular files read
	Bytes   atomic.Int64 // their sizes
}

// Scan reads the directory tree at root. The entries come in depth-first
// order with each directory's children sorted bytewise by name (the order
// composefs-info dump lists an image in), the root "/" first.
//
// What each entry holds, as C's in-memory tree holds it before writing:
//   - every file: mode, uid, gid and mtime (seconds and nanoseconds) from
//     lstat; xattrs from llistxattr, sorted by name (the order C writes
//     them in), within C's limits.
//   - directories: st_size, and nlink 2 + number of subdirectories.
//   - regular files: nlink 1 (see Options.Hardlinks); empty ones have
//     nothing more; up to RecommendedInlineContentMax (64) bytes are inline
//     Content; larger ones are external, with Payload and Digest as set by
//     Options.ComputeDigest and Options.Store.
//   - symlinks: the target as Payload, its length as Size.
//   - devices: Rdev as st_rdev shows it; whiteouts (character device 0/0)
//     are kept as they are, the image writer turns them into overlay
//     whiteouts.
//
// Symlinks are never followed, including the root: root must be a
// directory.
//
// An error about a file is an *fs.PathError naming it once, on disk:
// "scan /src/dir/file: permission denied". The file's own errors (from
// opening, reading, hashing or storing it) give only their cause.
func Scan(root string, opts Options) ([]dumpfile.Entry, error) {
	if opts.SkipXattrs && opts.UserXattrs {
		return nil, errors.New("scan: SkipXattrs and UserXattrs conflict")
	}
	if opts.DigestAlgorithm == 0 {
		opts.DigestAlgorithm = verity.SHA256
	}
	if !opts.DigestAlgorithm.Valid() {
		return nil, fmt.Errorf("scan: unsupported fs-verity algorithm %v", opts.DigestAlgorithm)
	}
	if opts.Threads <= 0 {
		opts.Threads = runtime.NumCPU()
	}
	s := &scanner{opts: opts, inodes: make(map[inodeKey]int)}
	if err := s.scanRoot(root); err != nil {
		return nil, err
	}
	if err := s.readFiles(); err != nil {
		return nil, err
	}
	s.fillHardlinks()
	return s.entries, nil
}
