package erofs

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
)

func TestXXH32(t *testing.T) {
	for _, c := range []struct {
		in   string
		seed uint32
		want uint32
	}{
		{"", 0, 0x02CC5D05},
		{"abc", 0, 0x32D153FF},
	} {
		if got := xxh32([]byte(c.in), c.seed); got != c.want {
			t.Errorf("xxh32(%q, %#x) = %#08x, want %#08x", c.in, c.seed, got, c.want)
		}
	}
	// Every length class (the 16-byte stripes, 4-byte words, bytes) is
	// exercised by the golden images' bloom filters; here, at least, that
	// lengths around 16 differ.
	seen := map[uint32]bool{}
	for n := range 40 {
		seen[xxh32(bytes.Repeat([]byte{'x'}, n), xattrFilterSeed)] = true
	}
	if len(seen) != 40 {
		t.Errorf("collisions among 40 inputs")
	}
}

func TestChunkBitsAndCount(t *testing.T) {
	for _, c := range []struct {
		size  uint64
		bits  uint32
		count uint64
	}{
		{1, 12, 1}, {4096, 12, 1}, {4097, 13, 1}, {1 << 20, 20, 1}, {1<<20 + 1, 21, 1},
		{1 << 43, 43, 1}, {1<<43 + 1, 43, 2}, {1 << 53, 43, 1024}, {1<<53 + 1, 43, 1025},
	} {
		bits, count := chunkBitsAndCount(c.size)
		if bits != c.bits || count != c.count {
			t.Errorf("chunkBitsAndCount(%d) = %d, %d; want %d, %d", c.size, bits, count, c.bits, c.count)
		}
	}
}

func TestWriteVersions(t *testing.T) {
	for _, c := range []struct {
		opts      WriteOptions
		whiteout  bool
		want      uint32
		wantError bool
	}{
		{WriteOptions{0, 0}, true, 0, false},
		{WriteOptions{0, 1}, true, 1, false},
		{WriteOptions{0, 1}, false, 0, false},
		{WriteOptions{1, 0}, false, 1, false},
		{WriteOptions{1, 1}, false, 1, false},
		{WriteOptions{0, 2}, true, 1, false},
		{WriteOptions{2, 2}, true, 2, false},
		{WriteOptions{2, 0}, false, 2, false},
		{WriteOptions{3, 3}, false, 0, true},
		{WriteOptions{-1, 0}, false, 0, true},
	} {
		entries := []dumpfile.Entry{{Path: "/", Mode: ModeDir | 0o755}}
		if c.whiteout {
			entries = append(entries, dumpfile.Entry{Path: "/w", Mode: ModeChr})
		}
		var buf bytes.Buffer
		err := Write(&buf, entries, c.opts)
		if c.wantError {
			if err == nil {
				t.Errorf("%+v: no error", c.opts)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", c.opts, err)
			continue
		}
		if got := littleEndian.Uint32(buf.Bytes()[12:]); got != c.want {
			t.Errorf("%+v whiteout=%v: composefs_version %d, want %d", c.opts, c.whiteout, got, c.want)
		}
	}
}

// TestWriteInvalidTrees: inputs that cannot make an image are errors
// wrapping ErrInvalidTree, in every version, and nothing is written.
func TestWriteInvalidTrees(t *testing.T) {
	root := dumpfile.Entry{Path: "/", Mode: ModeDir | 0o755}
	file := func(p string) dumpfile.Entry { return dumpfile.Entry{Path: p, Mode: ModeReg | 0o644} }
	link := func(p, target string) dumpfile.Entry {
		return dumpfile.Entry{Path: p, Mode: ModeReg | 0o644, Hardlink: target}
	}
	dir := func(p string) dumpfile.Entry { return dumpfile.Entry{Path: p, Mode: ModeDir | 0o755} }
	many := root
	for i := range 3000 {
		many.Xattrs = append(many.Xattrs, dumpfile.Xattr{Name: "user.x" + strings.Repeat("y", i%5) + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676)), Value: []byte("v")})
	}
	cases := map[string][]dumpfile.Entry{
		"empty":             nil,
		"no root":           {file("/a")},
		"root not dir":      {file("/")},
		"two roots":         {root, root},
		"root not first":    {file("/a"), root},
		"missing parent":    {root, file("/a/b")},
		"parent not dir":    {root, file("/a"), file("/a/b")},
		"duplicate":         {root, file("/a"), file("/a")},
		"dot":               {root, file("/.")},
		"dotdot":            {root, dir("/a"), file("/a/..")},
		"trailing slash":    {root, file("/a/")},
		"empty path":        {root, file("")},
		"long name":         {root, file("/" + strings.Repeat("n", 256))},
		"nul in name":       {root, file("/a\x00b")},
		"bad mode":          {root, {Path: "/a", Mode: 0o644}},
		"link missing":      {root, link("/a", "/nope")},
		"link self":         {root, link("/a", "/a")},
		"link loop":         {root, link("/a", "/b"), link("/b", "/a")},
		"link to dir":       {root, dir("/d"), link("/a", "/d")},
		"link to root":      {root, link("/a", "/")},
		"dir hardlink":      {root, file("/f"), {Path: "/a", Mode: ModeDir | 0o755, Hardlink: "/f"}},
		"content size":      {root, {Path: "/a", Mode: ModeReg, Size: 3, Content: []byte("ab")}},
		"content too big":   {root, {Path: "/a", Mode: ModeReg, Size: 5001, Content: make([]byte, 5001)}},
		"symlink no target": {root, {Path: "/a", Mode: ModeLnk | 0o777}},
		"long payload":      {root, {Path: "/a", Mode: ModeReg, Size: 1, Payload: strings.Repeat("p", 4096)}},
		"bad digest":        {root, {Path: "/a", Mode: ModeReg, Size: 1, Digest: "abc"}},
		"file too big":      {root, {Path: "/a", Mode: ModeReg, Size: 1<<53 + 1}},
		"empty xattr name":  {root, {Path: "/a", Mode: ModeReg, Xattrs: []dumpfile.Xattr{{Name: ""}}}},
		"long xattr name":   {root, {Path: "/a", Mode: ModeReg, Xattrs: []dumpfile.Xattr{{Name: "user." + strings.Repeat("k", 251)}}}},
		"long xattr value":  {root, {Path: "/a", Mode: ModeReg, Xattrs: []dumpfile.Xattr{{Name: "user.k", Value: make([]byte, 65536)}}}},
		"xattr budget":      {many},
	}
	for name, entries := range cases {
		for _, v := range []int{0, 1, 2} {
			var buf bytes.Buffer
			err := Write(&buf, entries, WriteOptions{MinVersion: v, MaxVersion: v})
			if !errors.Is(err, ErrInvalidTree) {
				t.Errorf("%s v%d: error %v, want ErrInvalidTree", name, v, err)
			}
			if buf.Len() != 0 {
				t.Errorf("%s v%d: %d bytes written", name, v, buf.Len())
			}
		}
	}
}

// TestWriteV2Limits: what composefs-rs' layout cannot hold.
func TestWriteV2Limits(t *testing.T) {
	root := dumpfile.Entry{Path: "/", Mode: ModeDir | 0o755}
	for name, e := range map[string]dumpfile.Entry{
		"rdev over 32 bits":  {Path: "/c", Mode: ModeChr | 0o600, Rdev: 1 << 32},
		"content over block": {Path: "/f", Mode: ModeReg, Size: 4500, Content: make([]byte, 4500)},
	} {
		var buf bytes.Buffer
		tree := []dumpfile.Entry{root, e}
		err := Write(&buf, tree, WriteOptions{MinVersion: 2, MaxVersion: 2})
		if !errors.Is(err, ErrInvalidTree) {
			t.Errorf("%s: error %v, want ErrInvalidTree", name, err)
		}
		// C's layout takes both.
		if err := Write(&buf, tree, WriteOptions{}); err != nil {
			t.Errorf("%s in V0: %v", name, err)
		}
	}
}

// TestWriteHardlinkedWhiteout: a whiteout with a second name, by its nlink
// or through a hardlink (direct or by a chain), is refused in every
// version, with an error that wraps dumpfile.ErrHardlinkedWhiteout and
// ErrInvalidTree and names the path; the output is left as it was. The
// trees are built here, not parsed: the dumpfile parser refuses them first.
func TestWriteHardlinkedWhiteout(t *testing.T) {
	root := dumpfile.Entry{Path: "/", Mode: ModeDir | 0o755, Nlink: 3}
	dir := dumpfile.Entry{Path: "/d", Mode: ModeDir | 0o755, Nlink: 2}
	wh := dumpfile.Entry{Path: "/d/wh", Mode: ModeChr, Nlink: 1}
	link := func(p, target string) dumpfile.Entry {
		return dumpfile.Entry{Path: p, Mode: ModeChr, Hardlink: target}
	}
	wide := wh
	wide.Rdev = 1 << 32 // stored as 0/0 by C's layout
	for _, c := range []struct {
		name     string
		entries  []dumpfile.Entry
		versions []int
		path     string
	}{
		{"link", []dumpfile.Entry{root, dir, wh, link("/l", "/d/wh")}, []int{0, 1, 2}, "/l"},
		{"link first", []dumpfile.Entry{root, link("/l", "/d/wh"), dir, wh}, []int{0, 1, 2}, "/l"},
		{"chain", []dumpfile.Entry{root, dir, wh, link("/l2", "/l1"), link("/l1", "/d/wh")}, []int{0, 1, 2}, "/l2"},
		{"nlink", []dumpfile.Entry{root, dir, {Path: "/d/wh", Mode: ModeChr, Nlink: 2}}, []int{0, 1, 2}, "/d/wh"},
		{"wide rdev", []dumpfile.Entry{root, dir, wide, link("/l", "/d/wh")}, []int{0, 1}, "/l"},
	} {
		for _, v := range c.versions {
			buf := bytes.NewBufferString("old")
			err := Write(buf, c.entries, WriteOptions{MinVersion: v, MaxVersion: v})
			if !errors.Is(err, dumpfile.ErrHardlinkedWhiteout) || !errors.Is(err, ErrInvalidTree) {
				t.Errorf("%s v%d: error %v, want ErrHardlinkedWhiteout and ErrInvalidTree", c.name, v, err)
				continue
			}
			if !strings.HasPrefix(err.Error(), c.path+": ") {
				t.Errorf("%s v%d: error %q does not start with %s", c.name, v, err, c.path)
			}
			if buf.String() != "old" {
				t.Errorf("%s v%d: output changed to %d bytes", c.name, v, buf.Len())
			}
		}
	}
	// A whiteout of one name, and a device that is not 0/0 under two,
	// are fine.
	dev := dumpfile.Entry{Path: "/d/c", Mode: ModeChr, Rdev: 1, Nlink: 2}
	for _, v := range []int{0, 1, 2} {
		var buf bytes.Buffer
		if err := Write(&buf, []dumpfile.Entry{root, dir, wh, dev, link("/l", "/d/c")}, WriteOptions{MinVersion: v, MaxVersion: v}); err != nil {
			t.Errorf("v%d: %v", v, err)
		}
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

var errFull = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errFull
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriteOutputError(t *testing.T) {
	entries := []dumpfile.Entry{{Path: "/", Mode: ModeDir | 0o755}, {Path: "/f", Mode: ModeReg, Size: 3, Content: []byte("abc")}}
	for _, v := range []int{0, 2} {
		for _, n := range []int{0, 100, 3000} {
			err := Write(&failWriter{n: n}, entries, WriteOptions{MinVersion: v, MaxVersion: v})
			if !errors.Is(err, errFull) {
				t.Errorf("v%d fail at %d: %v", v, n, err)
			}
		}
	}
}

// TestFileTypeMode: dirent file types and mode bits map both ways.
func TestFileTypeMode(t *testing.T) {
	for ft := uint8(FTReg); ft <= ftSymlink; ft++ {
		m := FileTypeMode(ft)
		if m == 0 || direntType(m|0o644) != ft {
			t.Errorf("file type %d: mode %#o, back to %d", ft, m, direntType(m|0o644))
		}
	}
	for _, ft := range []uint8{ftUnknown, 8, 255} {
		if m := FileTypeMode(ft); m != 0 {
			t.Errorf("file type %d: mode %#o, want 0", ft, m)
		}
	}
	if ft := direntType(0o644); ft != ftUnknown {
		t.Errorf("mode without type: file type %d", ft)
	}
}
