package dirscan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/internal/errpath"
	"golang.org/x/sys/unix"
)

// scanner holds the state of one Scan.
type scanner struct {
	opts    Options
	entries []dumpfile.Entry
	// files are the regular files whose content must be read (inline) or
	// digested (external), by index into entries, with their path on disk.
	files []fileJob
	// inodes maps a hardlinked inode to the index of its first entry
	// (Options.Hardlinks only).
	inodes map[inodeKey]int
	// links are the indexes of hardlink entries.
	links []int
	// dirs are the directories being walked, to refuse a cycle (a bind
	// mount of an ancestor) instead of recursing forever.
	dirs map[inodeKey]bool
}

type fileJob struct {
	index  int
	fsPath string
}

type inodeKey struct{ dev, ino uint64 }

func (s *scanner) scanRoot(root string) error {
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return scanError(root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return scanError(root, unix.ENOTDIR)
	}
	s.dirs = make(map[inodeKey]bool)
	return s.addDir(root, "/", &st)
}

// addDir adds a directory and, depth first in name order, everything in it.
func (s *scanner) addDir(fsPath, path string, st *unix.Stat_t) error {
	key := inodeKey{uint64(st.Dev), st.Ino}
	if s.dirs[key] {
		return scanError(fsPath, errors.New("directory cycle (the directory contains itself)"))
	}
	s.dirs[key] = true
	defer delete(s.dirs, key)

	index, err := s.addNode(fsPath, path, st)
	if err != nil {
		return err
	}
	names, err := readDirNames(fsPath)
	if err != nil {
		return scanError(fsPath, err)
	}
	// C inserts children in strcmp order, which is Go's string order.
	slices.Sort(names)
	subdirs := uint32(0)
	for _, name := range names {
		childFS := filepath.Join(fsPath, name)
		childPath := path + "/" + name
		if path == "/" {
			childPath = "/" + name
		}
		var cst unix.Stat_t
		if err := unix.Lstat(childFS, &cst); err != nil {
			return scanError(childFS, err)
		}
		switch cst.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			subdirs++
			if err := s.addDir(childFS, childPath, &cst); err != nil {
				return err
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			if s.opts.SkipDevices {
				continue
			}
			fallthrough
		default:
			if _, err := s.addNode(childFS, childPath, &cst); err != nil {
				return err
			}
		}
	}
	// What C's writer computes for a directory: itself, "." and one ".."
	// per subdirectory.
	s.entries[index].Nlink = 2 + subdirs
	return nil
}

// scanError is an error about the file at fsPath: an *fs.PathError saying
// "scan FSPATH: ...", without a second mention of fsPath from below.
func scanError(fsPath string, err error) error {
	return errpath.New("scan", fsPath, err)
}

func readDirNames(fsPath string) ([]string, error) {
	f, err := os.Open(fsPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// addNode appends the entry for one path from its lstat result and returns
// its index.
func (s *scanner) addNode(fsPath, path string, st *unix.Stat_t) (int, error) {
	index := len(s.entries)
	fail := func(err error) (int, error) { return 0, scanError(fsPath, err) }
	mode := st.Mode
	typ := mode & unix.S_IFMT

	if s.opts.Hardlinks && typ != unix.S_IFDIR && st.Nlink > 1 {
		key := inodeKey{uint64(st.Dev), st.Ino}
		if first, ok := s.inodes[key]; ok {
			if typ == unix.S_IFCHR && st.Rdev == 0 {
				return fail(fmt.Errorf("hardlink to whiteout %s: %w", dumpfile.Escape(s.entries[first].Path), dumpfile.ErrHardlinkedWhiteout))
			}
			// Its attributes are the first path's: fillHardlinks copies them.
			s.entries = append(s.entries, dumpfile.Entry{Path: path, Mode: mode, Hardlink: s.entries[first].Path})
			s.counted()
			s.entries[first].Nlink++
			s.links = append(s.links, index)
			return index, nil
		}
		s.inodes[key] = index
	}

	e := dumpfile.Entry{
		Path:  path,
		Size:  uint64(st.Size),
		Mode:  mode,
		Nlink: 1,
		UID:   st.Uid,
		GID:   st.Gid,
	}
	if typ == unix.S_IFCHR || typ == unix.S_IFBLK {
		e.Rdev = uint64(st.Rdev)
	}
	if !s.opts.UseEpoch {
		e.Mtime = dumpfile.Timespec{Sec: int64(st.Mtim.Sec), Nsec: uint32(st.Mtim.Nsec)}
	}
	switch typ {
	case unix.S_IFLNK:
		target, err := os.Readlink(fsPath)
		if err != nil {
			return fail(err)
		}
		if target == "" || len(target) > dumpfile.PayloadMax {
			return fail(fmt.Errorf("symlink target of %d bytes (want 1 to %d)", len(target), dumpfile.PayloadMax))
		}
		e.Payload = target
		e.Size = uint64(len(target))
	case unix.S_IFREG:
		switch {
		case e.Size == 0:
			// Nothing to read: C neither inlines nor digests an empty file.
		case e.Size <= dumpfile.RecommendedInlineContentMax || s.opts.ComputeDigest || s.opts.Store != nil:
			s.files = append(s.files, fileJob{index: index, fsPath: fsPath})
		default:
			// No digest: the object is the file itself, by its path
			// relative to the source (the source is the object store).
			e.Payload = path[1:]
			if len(e.Payload) > dumpfile.PayloadMax {
				return fail(fmt.Errorf("path of %d bytes too long for a payload (max %d)", len(e.Payload), dumpfile.PayloadMax))
			}
		}
	}
	if !s.opts.SkipXattrs {
		xattrs, err := readXattrs(fsPath, s.opts.UserXattrs)
		if err != nil {
			return fail(err)
		}
		e.Xattrs = xattrs
	}
	s.entries = append(s.entries, e)
	s.counted()
	return index, nil
}

// counted counts one more entry found, for Options.Progress.
func (s *scanner) counted() {
	if p := s.opts.Progress; p != nil {
		p.Entries.Add(1)
	}
}

// fillHardlinks gives every hardlink entry its target's attributes, as
// composefs-info dump prints them for a hardlink.
func (s *scanner) fillHardlinks() {
	byPath := make(map[string]int, len(s.inodes))
	for _, i := range s.inodes {
		byPath[s.entries[i].Path] = i
	}
	for _, i := range s.links {
		link := &s.entries[i]
		t := s.entries[byPath[link.Hardlink]]
		t.Path, t.Hardlink, t.Payload = link.Path, link.Hardlink, ""
		t.Content = slices.Clone(t.Content)
		t.Xattrs = slices.Clone(t.Xattrs)
		*link = t
	}
}
