package objects

import (
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Exposure is what Add may have shown other users: a store whose objects
// they can reach holds copies of files they could not read at the source.
type Exposure struct {
	// Dir is the base directory Add writes into.
	Dir string
	// Shared: other users can search Dir and every directory above it,
	// so they can open an object whose name they know (objects are 0644).
	Shared bool
	// Unreadable counts the objects Add stored, since the store was
	// opened, from source files without read permission for others.
	Unreadable int
}

// Exposure reports on the base directory Add writes into. A path that
// cannot be checked counts as shared: the caller warns rather than not.
func (s *FlatStore) Exposure() Exposure {
	if len(s.roots) == 0 {
		return Exposure{}
	}
	r := s.roots[0]
	return Exposure{
		Dir:        r.path,
		Shared:     searchableByOthers(r),
		Unreadable: int(s.unreadable.Load()),
	}
}

// searchableByOthers tells whether a user outside the owner and group of
// the store and of each directory above it can pass through them all.
func searchableByOthers(r storeRoot) bool {
	var st unix.Stat_t
	if err := unix.Fstat(int(r.dir.Fd()), &st); err != nil {
		return true
	}
	if st.Mode&0o001 == 0 {
		return false
	}
	abs, err := filepath.Abs(r.path)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return true
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return true
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" {
			return true
		}
	}
}

// readableByOthers tells whether the permission bits let any user read.
func readableByOthers(m fs.FileMode) bool { return m.Perm()&0o004 != 0 }
