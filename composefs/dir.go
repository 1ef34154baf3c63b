package composefs

import "github.com/composefs/composefs-go/erofs"

// ReadDirAt lists directory dir from position pos (0: the start) as the
// kernel's readdir does, "." and ".." included, calling fn for each entry
// until it returns false; d.Next is where a listing stopping after d
// resumes. overlayfs reads the root through its merging path, which drops
// whiteouts (character devices 0/0, the stubs of V0/V1 images among them);
// other directories list them, though a lookup of one fails. An entry
// whose inode cannot be decoded stays listed: looking it up reports the
// damage.
func (f *FS) ReadDirAt(dir *erofs.Inode, pos uint64, fn func(d *Dirent) bool) error {
	isRoot := dir.Nid == f.rootNid
	return f.img.ReadDirAt(dir, pos, func(d *erofs.Dirent) bool {
		if isRoot && d.Type == erofs.FTChr && f.isWhiteoutNid(d.Nid) {
			return true
		}
		return fn(d)
	})
}

func (f *FS) isWhiteoutNid(nid uint64) bool {
	in, err := f.img.Inode(nid)
	return err == nil && isWhiteout(&in)
}

// DirPosAfter is the position in dir of the first entry that sorts after
// name: where a scan of the entries that follow a looked-up name starts.
func (f *FS) DirPosAfter(dir *erofs.Inode, name string) (uint64, error) {
	return f.img.DirPosAfter(dir, name)
}

// Dirent is a directory entry as ReadDirAt lists it.
type Dirent = erofs.Dirent
