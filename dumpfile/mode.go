package dumpfile

import "errors"

// File type bits of st_mode, as Linux numbers them. They are spelled out
// here (rather than taken from syscall) because a dumpfile is a portable text
// format and its numbers are Linux's wherever the parser runs.
const (
	TypeMask    uint32 = 0o170000
	TypeSocket  uint32 = 0o140000
	TypeSymlink uint32 = 0o120000
	TypeRegular uint32 = 0o100000
	TypeBlock   uint32 = 0o060000
	TypeDir     uint32 = 0o040000
	TypeChar    uint32 = 0o020000
	TypeFIFO    uint32 = 0o010000
)

// validType tells whether the file type bits of mode name one of the seven
// file types composefs stores; C's lcfs_validate_mode refuses anything else.
func validType(mode uint32) bool {
	switch mode & TypeMask {
	case TypeSocket, TypeSymlink, TypeRegular, TypeBlock, TypeDir, TypeChar, TypeFIFO:
		return true
	}
	return false
}

// Type is the file type bits of the entry's mode (one of the Type* values).
func (e *Entry) Type() uint32 { return e.Mode & TypeMask }

// IsDir tells whether the entry is a directory.
func (e *Entry) IsDir() bool { return e.Type() == TypeDir }

// IsRegular tells whether the entry is a regular file.
func (e *Entry) IsRegular() bool { return e.Type() == TypeRegular }

// IsSymlink tells whether the entry is a symbolic link.
func (e *Entry) IsSymlink() bool { return e.Type() == TypeSymlink }

// IsHardlink tells whether the entry is a hardlink to another entry.
func (e *Entry) IsHardlink() bool { return e.Hardlink != "" }

// IsWhiteout tells whether the entry is an overlayfs whiteout: a character
// device with device number 0/0.
func (e *Entry) IsWhiteout() bool { return e.Type() == TypeChar && e.Rdev == 0 }

// ErrHardlinkedWhiteout is wrapped by the errors about a whiteout with more
// than one name. A whiteout marks a path as gone from the layers below; a
// second name for it means nothing, C's image reader refuses a whiteout
// inode with more than one link, and composefs-rs refuses one anywhere.
var ErrHardlinkedWhiteout = errors.New("a whiteout cannot be hardlinked")

// IsExternal tells whether the entry is a regular file whose content lives
// outside the image (not inline, not empty): the case where C writes a
// redirect and a metacopy xattr.
func (e *Entry) IsExternal() bool {
	return e.IsRegular() && !e.IsHardlink() && e.Size > 0 && e.Content == nil
}
