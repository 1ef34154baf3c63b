package tests

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// entryRecord is everything compared about one path of a mounted tree.
type entryRecord struct {
	// DirType and DirIno are what the parent's listing gives (d_type,
	// d_ino).
	DirType uint8
	DirIno  uint64
	// Ino is st_ino: the kernel's EROFS reports the nid, and so does
	// overlayfs over it here.
	Ino uint64
	// StatErr is lstat's errno; the other fields are set only without one.
	StatErr string
	Mode    uint32
	UID     uint32
	GID     uint32
	Size    int64
	Nlink   uint64
	Rdev    uint64
	Mtime   [2]int64
	Target  string
	// Xattrs are "name=hexvalue" in listing order.
	Xattrs   []string
	XattrErr string
	// Content is a hash of the file's bytes (the first 8 MiB and the last
	// 64 KiB of large files) and how many were read, or the errno of
	// opening or reading it.
	Content string
	// Hardlinks lists every path sharing this inode, for non-directories.
	Hardlinks string
}

// snapshot records every path under root, "/" being root itself. The
// listing of each directory, "." and ".." included, is in names.
type snapshot struct {
	Entries map[string]*entryRecord
	// Listings maps a directory to its names as listed, sorted.
	Listings map[string][]string
}

// maxEntries stops a walk gone astray (a directory cycle); a test of a
// large real tree raises it.
var maxEntries = 100_000

func takeSnapshot(t testing.TB, root string) *snapshot {
	t.Helper()
	s := &snapshot{Entries: map[string]*entryRecord{}, Listings: map[string][]string{}}
	s.Entries["/"] = record(root, unix.DT_DIR, 0)
	s.walk(t, root, "/")
	s.groupHardlinks()
	return s
}

// groupHardlinks fills in, for every non-directory, the paths that share
// its inode.
func (s *snapshot) groupHardlinks() {
	byIno := map[uint64][]string{}
	for p, e := range s.Entries {
		if e.StatErr == "" && e.Mode&unix.S_IFMT != unix.S_IFDIR {
			byIno[e.Ino] = append(byIno[e.Ino], p)
		}
	}
	for _, paths := range byIno {
		sort.Strings(paths)
		group := strings.Join(paths, " | ")
		for _, p := range paths {
			s.Entries[p].Hardlinks = group
		}
	}
}

func (s *snapshot) walk(t testing.TB, root, rel string) {
	dir := filepath.Join(root, rel)
	ents, err := readDirents(dir)
	if err != nil {
		s.Listings[rel] = []string{"error: " + errnoName(err)}
		return
	}
	var names []string
	for _, de := range ents {
		names = append(names, de.name)
		if de.name == "." || de.name == ".." {
			continue
		}
		if len(s.Entries) > maxEntries {
			t.Fatalf("more than %d entries under %s", maxEntries, root)
		}
		p := filepath.Join(rel, de.name)
		e := record(filepath.Join(root, p), de.typ, de.ino)
		s.Entries[p] = e
		if e.StatErr == "" && e.Mode&unix.S_IFMT == unix.S_IFDIR {
			s.walk(t, root, p)
		}
	}
	sort.Strings(names)
	s.Listings[rel] = names
}

type dirent struct {
	name string
	typ  uint8
	ino  uint64
}

// readDirents lists a directory with getdents64 as it comes, "." and ".."
// included, with each entry's d_type.
func readDirents(dir string) ([]dirent, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []dirent
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.LittleEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return nil, fmt.Errorf("bad dirent record length %d", reclen)
			}
			name := b[19:reclen]
			if i := slices.Index(name, 0); i >= 0 {
				name = name[:i]
			}
			out = append(out, dirent{name: string(name), typ: b[18], ino: binary.LittleEndian.Uint64(b[0:8])})
			b = b[reclen:]
		}
	}
}

func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

func record(path string, dtype uint8, dino uint64) *entryRecord {
	e := &entryRecord{DirType: dtype, DirIno: dino}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		e.StatErr = errnoName(err)
		return e
	}
	e.Mode, e.UID, e.GID = st.Mode, st.Uid, st.Gid
	e.Size, e.Nlink, e.Rdev = st.Size, st.Nlink, st.Rdev
	e.Mtime = [2]int64{st.Mtim.Sec, st.Mtim.Nsec}
	e.Ino = st.Ino
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		t, err := os.Readlink(path)
		if err != nil {
			t = "error: " + errnoName(err)
		}
		e.Target = t
	case unix.S_IFREG:
		e.Content = contentHash(path, st.Size)
	}
	e.Xattrs, e.XattrErr = xattrs(path)
	return e
}

func contentHash(path string, size int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "error: " + errnoName(err)
	}
	defer f.Close()
	return hashContent(f, size, errnoName)
}

// hashContent hashes the first 8 MiB and the last 64 KiB of a file of size
// bytes; errors are named by errName.
func hashContent(f interface {
	io.Reader
	io.ReaderAt
}, size int64, errName func(error) string) string {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, 8<<20))
	if err != nil {
		return fmt.Sprintf("error after %d bytes: %s", n, errName(err))
	}
	if size > 8<<20 {
		tail := make([]byte, 64<<10)
		m, err := f.ReadAt(tail, size-int64(len(tail)))
		if err != nil && err != io.EOF {
			return fmt.Sprintf("error reading the tail: %s", errName(err))
		}
		h.Write(tail[:m])
		n += int64(m)
	}
	return fmt.Sprintf("%d bytes %x", n, h.Sum(nil)[:12])
}

func xattrs(path string) ([]string, string) {
	sz, err := unix.Llistxattr(path, nil)
	if err != nil {
		return nil, errnoName(err)
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, errnoName(err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:sz]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	return xattrRecords(names, func(name string) ([]byte, error) {
		v := make([]byte, 64<<10)
		n, err := unix.Lgetxattr(path, name, v)
		return v[:max(n, 0)], err
	}, errnoName), ""
}

// xattrRecords records each xattr as "name=hexvalue", or the error its
// get gives, named by errName.
func xattrRecords(names []string, get func(string) ([]byte, error), errName func(error) string) []string {
	var out []string
	for _, name := range names {
		v, err := get(name)
		if err != nil {
			out = append(out, name+" error: "+errName(err))
			continue
		}
		out = append(out, name+"="+hex.EncodeToString(v))
	}
	return out
}

// compareTrees fails the test for every difference between the tree the
// kernel shows (want) and ours (got), path by path and field by field.
func compareTrees(t testing.TB, want, got string) {
	t.Helper()
	compareTreesExcept(t, want, got, nil)
}

// compareTreesExcept is compareTrees, except that the differences named in
// except (path and field, "/f: Content") are expected: each must be there,
// and is not reported.
func compareTreesExcept(t testing.TB, want, got string, except []string) {
	t.Helper()
	ws, gs := takeSnapshot(t, want), takeSnapshot(t, got)
	if !isPassthroughMount(got) {
		// By default composefs-fuse lets the kernel open files by
		// itself and checks an object at the file's first read, where
		// overlayfs checks it at the open: the same failure, a syscall
		// later. With --passthrough, it must come at the open.
		failAtOpen(ws)
		failAtOpen(gs)
	}
	diffs := snapshotDiffs(ws, gs)
	diffs = append(diffs, statfsDiffs(want, got)...)
	for _, e := range except {
		n := len(diffs)
		diffs = slices.DeleteFunc(diffs, func(d string) bool { return strings.HasPrefix(d, e+" ") })
		if len(diffs) == n {
			t.Errorf("the expected difference %q from the kernel's view is not there", e)
		}
	}
	reportDiffs(t, diffs, len(ws.Entries))
}

// unionKeys is every key of a or b, sorted.
func unionKeys[V any](a, b map[string]V) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// snapshotDiffs lists the differences of got from want.
func snapshotDiffs(ws, gs *snapshot) []string {
	var diffs []string
	sorted := unionKeys(ws.Entries, gs.Entries)
	for _, p := range sorted {
		w, g := ws.Entries[p], gs.Entries[p]
		switch {
		case w == nil:
			diffs = append(diffs, fmt.Sprintf("%s: only in ours", p))
		case g == nil:
			diffs = append(diffs, fmt.Sprintf("%s: missing from ours", p))
		default:
			diffs = append(diffs, fieldDiffs(p, w, g)...)
		}
	}
	for dir, wl := range ws.Listings {
		if gl := gs.Listings[dir]; !slices.Equal(wl, gl) {
			diffs = append(diffs, fmt.Sprintf("%s: listing %q, kernel %q", dir, gl, wl))
		}
	}
	return diffs
}

func reportDiffs(t testing.TB, diffs []string, paths int) {
	t.Helper()
	reportDiffsFrom(t, "the kernel's view", diffs, paths)
}

// reportDiffsFrom fails the test for each difference from want's tree
// (the first 40 of them), or logs that there were none.
func reportDiffsFrom(t testing.TB, want string, diffs []string, paths int) {
	t.Helper()
	for i, d := range diffs {
		if i == 40 {
			t.Errorf("... and %d more differences", len(diffs)-i)
			break
		}
		t.Errorf("differs from %s: %s", want, d)
	}
	if len(diffs) == 0 {
		t.Logf("%d paths identical to %s", paths, want)
	}
}

func fieldDiffs(path string, w, g *entryRecord) []string {
	var out []string
	wv, gv := reflect.ValueOf(*w), reflect.ValueOf(*g)
	for i := 0; i < wv.NumField(); i++ {
		f := wv.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		if !reflect.DeepEqual(wv.Field(i).Interface(), gv.Field(i).Interface()) {
			out = append(out, fmt.Sprintf("%s: %s is %v, kernel %v", path, f.Name, gv.Field(i).Interface(), wv.Field(i).Interface()))
		}
	}
	return out
}

func statfsDiffs(want, got string) []string {
	var w, g unix.Statfs_t
	if err := unix.Statfs(want, &w); err != nil {
		return []string{"statfs kernel: " + err.Error()}
	}
	if err := unix.Statfs(got, &g); err != nil {
		return []string{"statfs ours: " + err.Error()}
	}
	type fields struct {
		Bsize, Frsize, Namelen              int64
		Blocks, Bfree, Bavail, Files, Ffree uint64
	}
	wf := fields{w.Bsize, w.Frsize, w.Namelen, w.Blocks, w.Bfree, w.Bavail, w.Files, w.Ffree}
	gf := fields{g.Bsize, g.Frsize, g.Namelen, g.Blocks, g.Bfree, g.Bavail, g.Files, g.Ffree}
	if wf != gf {
		return []string{fmt.Sprintf("statfs %+v, kernel %+v", gf, wf)}
	}
	return nil
}

// passthroughMounts are the mountpoints of composefs-fuse --passthrough.
var passthroughMounts sync.Map

func isPassthroughMount(mnt string) bool {
	_, ok := passthroughMounts.Load(mnt)
	return ok
}

// failAtOpen records a file whose first read failed as if its open had.
func failAtOpen(s *snapshot) {
	for _, e := range s.Entries {
		if rest, ok := strings.CutPrefix(e.Content, "error after 0 bytes: "); ok {
			e.Content = "error: " + rest
		}
	}
}
