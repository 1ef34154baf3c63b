package erofs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/composefs/composefs-go/dumpfile"
)

// Bounds on what exercise reads, so that damaged images stay cheap.
const (
	exerciseInodes   = 20000
	exerciseReadMax  = 256 << 10
	exerciseFSPaths  = 20000
	exerciseReadSize = 64 << 10
)

// errBug marks a broken invariant, as opposed to damage reported properly.
var errBug = errors.New("BUG")

// acceptable tells whether err is what a damaged image may give: nothing,
// or an error wrapping ErrCorrupt or ErrUnsupported.
func acceptable(err error) bool {
	return err == nil || !errors.Is(err, errBug) && (errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupported))
}

// exercise reads everything an image offers, through every API: the dump
// walk, a raw traversal of inodes, directories (Lookup of every listed name
// must find it), xattrs, data and links, and the resumable directory cursor. It returns the
// first error met; invariant violations wrap errBug.
func exercise(im *Image) error {
	var first error
	note := func(err error) {
		if err != nil && (first == nil || errors.Is(err, errBug) && !errors.Is(first, errBug)) {
			first = err
		}
	}
	note(im.Walk(func(e *dumpfile.Entry) error {
		_, err := dumpfile.AppendLine(nil, e)
		if err != nil {
			return fmt.Errorf("%w: dump line: %v", errBug, err)
		}
		return nil
	}))
	note(exerciseRaw(im))
	note(exerciseCursor(im))
	return first
}

func exerciseRaw(im *Image) error {
	var first error
	note := func(err error) {
		if err != nil && (first == nil || errors.Is(err, errBug) && !errors.Is(first, errBug)) {
			first = err
		}
	}
	visited := map[uint64]bool{}
	queue := []uint64{im.RootNid()}
	buf := make([]byte, exerciseReadSize)
	for len(queue) > 0 && len(visited) < exerciseInodes {
		nid := queue[0]
		queue = queue[1:]
		if visited[nid] {
			continue
		}
		visited[nid] = true
		in, err := im.Inode(nid)
		if err != nil {
			note(err)
			continue
		}
		note(exerciseInode(im, &in, buf))
		if !in.IsDir() {
			continue
		}
		type dirent struct {
			name string
			nid  uint64
			ft   uint8
		}
		var list []dirent
		err = im.ReadDir(&in, func(name string, cnid uint64, ft uint8) error {
			list = append(list, dirent{name, cnid, ft})
			queue = append(queue, cnid)
			return nil
		})
		note(err)
		if err != nil {
			continue
		}
		listed := map[string]bool{}
		for _, d := range list {
			listed[d.name] = true
		}
		for _, d := range list {
			got, ft, err := im.Lookup(&in, d.name)
			if err != nil || got != d.nid || ft != d.ft {
				note(fmt.Errorf("%w: inode %d: Lookup(%q) = %d, %d, %v; ReadDir listed %d, %d", errBug, nid, d.name, got, ft, err, d.nid, d.ft))
			}
			for _, missing := range []string{d.name + "\x00", d.name + "\xff"} {
				if listed[missing] {
					continue
				}
				if _, _, err := im.Lookup(&in, missing); err == nil || !errors.Is(err, fs.ErrNotExist) && !acceptable(err) {
					note(fmt.Errorf("%w: inode %d: Lookup(%q) of a missing name: %v", errBug, nid, missing, err))
				}
			}
		}
	}
	return first
}

func exerciseInode(im *Image, in *Inode, buf []byte) error {
	xs, err := im.Xattrs(in)
	if err != nil {
		return err
	}
	for _, x := range xs {
		if _, found, err := im.GetXattr(in, x.Name); err != nil || !found {
			return fmt.Errorf("%w: inode %d: GetXattr(%q) = %v, %v after Xattrs listed it", errBug, in.Nid, x.Name, found, err)
		}
	}
	if _, _, err := im.Redirect(in); err != nil {
		return err
	}
	if _, _, _, err := im.Metacopy(in); err != nil {
		return err
	}
	if in.IsSymlink() {
		if _, err := im.Readlink(in); err != nil {
			return err
		}
	}
	if in.Layout == LayoutChunkBased {
		if _, err := im.AllHoles(in); err != nil {
			return err
		}
	}
	if !in.IsRegular() && !in.IsDir() && !in.IsSymlink() {
		return nil
	}
	limit := min(in.Size, exerciseReadMax)
	for off := uint64(0); off < limit; off += uint64(len(buf)) {
		n, err := im.ReadAt(in, buf, int64(off))
		if err != nil && err != io.EOF {
			return err
		}
		if want := min(uint64(len(buf)), in.Size-off); uint64(n) != want {
			return fmt.Errorf("%w: inode %d: ReadAt at %d gave %d bytes, want %d (%v)", errBug, in.Nid, off, n, want, err)
		}
	}
	if in.Size > 0 && in.Size < 1<<62 {
		if _, err := im.ReadAt(in, buf[:1], int64(in.Size-1)); err != nil && err != io.EOF {
			return err
		}
		if n, err := im.ReadAt(in, buf[:1], int64(in.Size)); n != 0 || err != io.EOF {
			return fmt.Errorf("%w: inode %d: ReadAt at the end = %d, %v", errBug, in.Nid, n, err)
		}
	}
	return nil
}

// exerciseCursor lists directories through the resumable cursor: every
// entry's Next must be where DirPosAfter puts its name, and resuming there
// must give the entry listed after it.
func exerciseCursor(im *Image) error {
	queue := []uint64{im.RootNid()}
	seen := map[uint64]bool{}
	for len(queue) > 0 && len(seen) < exerciseFSPaths {
		nid := queue[0]
		queue = queue[1:]
		if seen[nid] {
			continue
		}
		seen[nid] = true
		dir, err := im.Inode(nid)
		if err != nil || !dir.IsDir() {
			continue
		}
		var names [][]byte
		var nexts []uint64
		err = im.ReadDirAt(&dir, 0, func(d *Dirent) bool {
			names = append(names, bytes.Clone(d.Name))
			nexts = append(nexts, d.Next)
			if d.Type == FTDir && !IsDotOrDotDot(d.Name) {
				queue = append(queue, d.Nid)
			}
			return len(names) < exerciseFSPaths
		})
		if err != nil {
			return err
		}
		for i, name := range names {
			pos, err := im.DirPosAfter(&dir, string(name))
			if err != nil {
				return err
			}
			var after []byte
			if err := im.ReadDirAt(&dir, pos, func(d *Dirent) bool { after = bytes.Clone(d.Name); return false }); err != nil {
				return err
			}
			var resumed []byte
			if err := im.ReadDirAt(&dir, nexts[i], func(d *Dirent) bool { resumed = bytes.Clone(d.Name); return false }); err != nil {
				return err
			}
			var want []byte
			if i+1 < len(names) {
				want = names[i+1]
			}
			if !bytes.Equal(after, want) || !bytes.Equal(resumed, want) {
				return fmt.Errorf("%w: inode %d: after %q: DirPosAfter gives %q, resuming at Next %q, want %q", errBug, nid, name, after, resumed, want)
			}
		}
	}
	return nil
}
