// Package dumpfile is the composefs dumpfile: the text form of a composefs
// tree, one line per path, as the C tools (mkcomposefs --from-file,
// composefs-info dump) read and write it.
//
// Entry is the project's one description of a path in a tree: the dumpfile
// parser, the directory scanner and the image reader produce it; the image
// writer and the dumpfile printer consume it.
package dumpfile

// Timespec is a modification time with nanoseconds.
type Timespec struct {
	Sec  int64
	Nsec uint32
}

// Xattr is one extended attribute, its name in full (with its namespace
// prefix, e.g. "user.foo") and its raw value.
type Xattr struct {
	Name  string
	Value []byte
}

// Entry is one path of a composefs tree: one dumpfile line.
type Entry struct {
	// Path is absolute, "/" for the root; raw bytes, not escaped.
	Path string
	Size uint64
	// Mode is the full st_mode: file type bits and permission bits.
	Mode  uint32
	Nlink uint32
	UID   uint32
	GID   uint32
	// Rdev is the device number of a character or block device, in the
	// kernel's new_encode_dev form (as st_rdev shows it).
	Rdev  uint64
	Mtime Timespec
	// Payload is, for a regular file, the path of its object relative to
	// the object store ("ab/cdef..."); for a symlink, its target.
	Payload string
	// Content is the inline content of a small regular file.
	Content []byte
	// Digest is the fs-verity digest of a regular file's content in
	// lowercase hex: 64 characters for sha256, 128 for sha512; "" for none.
	Digest string
	// Xattrs in the order the source gave them.
	Xattrs []Xattr
	// Hardlink, when not empty, makes this entry a hardlink to the entry at
	// that path; the entry's own stat fields are then not used.
	Hardlink string
}
