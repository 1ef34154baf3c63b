package fusefs

import (
	"errors"
	"fmt"
	"path"
	"sync/atomic"

	"github.com/composefs/composefs-go/erofs"
)

// The server keeps no paths, yet a log line should name the file it is
// about. pathOf finds one from the image: a directory names its parent in
// its ".." entry, so its path is found by climbing; any other inode is
// first looked for in the directories the kernel looked into lately (the
// one it was just found in is among them), and only then by a bounded
// search of the tree. This runs only for log lines (refused opens, damage),
// and remembers a few answers.

const (
	// recentDirCount is how many recently used directories are kept.
	recentDirCount = 64
	// pathSearchBudget bounds the directory entries a search reads.
	pathSearchBudget = 1 << 17
	// pathDepthMax bounds climbing and searching (damaged images loop).
	pathDepthMax = 64
	// pathsKept bounds the answers remembered.
	pathsKept = 256
)

// recentDirs is a ring of the nids of the directories most recently looked
// up in or listed.
type recentDirs struct {
	next atomic.Uint64
	nids [recentDirCount]atomic.Uint64
}

func (r *recentDirs) note(nid uint64) {
	i := r.next.Load()
	if r.nids[i%recentDirCount].Load() == nid {
		return
	}
	r.nids[r.next.Add(1)%recentDirCount].Store(nid)
}

// pathOf names the inode at nid for a log line: "/a/b", or "inode N" when
// no path to it is found.
func (f *FS) pathOf(nid uint64) string {
	p, ok := f.pathAt(nid, 0)
	if !ok {
		return fmt.Sprintf("inode %d", nid)
	}
	return p
}

func (f *FS) pathAt(nid uint64, depth int) (string, bool) {
	if nid == f.rootNid {
		return "/", true
	}
	if depth == pathDepthMax {
		return "", false
	}
	f.pathMu.Lock()
	p, ok := f.paths[nid]
	f.pathMu.Unlock()
	if ok {
		return p, p != ""
	}
	p, ok = f.findPath(nid, depth)
	f.pathMu.Lock()
	if f.paths == nil || len(f.paths) >= pathsKept {
		f.paths = map[uint64]string{}
	}
	f.paths[nid] = p
	f.pathMu.Unlock()
	return p, ok
}

func (f *FS) findPath(nid uint64, depth int) (string, bool) {
	// A directory: climb through "..".
	if in, err := f.img.Inode(nid); err == nil && in.IsDir() {
		if parent, _, err := f.img.Lookup(&in, ".."); err == nil && parent != nid {
			if name, ok := f.nameIn(parent, nid); ok {
				if pp, ok := f.pathAt(parent, depth+1); ok {
					return path.Join(pp, name), true
				}
			}
		}
	}
	seen := map[uint64]bool{}
	for i, last := 0, f.recent.next.Load(); i < recentDirCount; i++ {
		dir := f.recent.nids[(last-uint64(i))%recentDirCount].Load()
		if dir == 0 || dir == nid || seen[dir] {
			continue
		}
		seen[dir] = true
		if name, ok := f.nameIn(dir, nid); ok {
			if dp, ok := f.pathAt(dir, depth+1); ok {
				return path.Join(dp, name), true
			}
		}
	}
	return f.searchPath(nid)
}

var errStop = errors.New("stop")

// nameIn finds the name under which directory dir lists nid.
func (f *FS) nameIn(dir, nid uint64) (string, bool) {
	in, err := f.img.Inode(dir)
	if err != nil || !in.IsDir() {
		return "", false
	}
	var name string
	found := false
	err = f.img.ReadDirAt(&in, 0, func(d *erofs.Dirent) bool {
		if d.Nid == nid && !erofs.IsDotOrDotDot(d.Name) {
			name, found = string(d.Name), true
			return false
		}
		return true
	})
	return name, found && err == nil
}

// searchPath walks the tree breadth first, so that the shortest path is
// found and a deep or looping branch cannot starve the rest.
func (f *FS) searchPath(nid uint64) (string, bool) {
	type dir struct {
		nid  uint64
		path string
	}
	level := []dir{{f.rootNid, "/"}}
	seen := map[uint64]bool{f.rootNid: true}
	budget := pathSearchBudget
	found := ""
	for depth := 0; depth < pathDepthMax && len(level) > 0 && found == "" && budget > 0; depth++ {
		var next []dir
		for _, d := range level {
			in, err := f.img.Inode(d.nid)
			if err != nil || !in.IsDir() {
				continue
			}
			err = f.img.ReadDir(&in, func(name string, child uint64, ft uint8) error {
				if budget--; budget < 0 {
					return errStop
				}
				if child == nid {
					found = path.Join(d.path, name)
					return errStop
				}
				if !seen[child] && ft == erofs.FTDir {
					seen[child] = true
					next = append(next, dir{child, path.Join(d.path, name)})
				}
				return nil
			})
			if errors.Is(err, errStop) {
				break
			}
		}
		level = next
	}
	return found, found != ""
}
