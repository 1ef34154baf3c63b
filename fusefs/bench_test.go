package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// BenchmarkWalk is the server's own cost (no FUSE round trips) of a cold
// walk of the largest golden image: every lookup, listing, getattr and
// xattr listing, on a fresh server each time.
func BenchmarkWalk(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(goldenDir(b), "c", "images", "config.v1.cfs"))
	if err != nil {
		b.Skip(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		fsys, ok := serveBytes(data)
		if !ok {
			b.Fatal("refused")
		}
		walk(fsys)
	}
}

// BenchmarkReadDirPlus is the server's cost of one READDIRPLUS listing a
// directory of 14 external files whole, as a cold walk sends for each
// directory (then one more that finds the end).
func BenchmarkReadDirPlus(b *testing.B) {
	var dump strings.Builder
	dump.WriteString("/ 0 40755 3 0 0 0 0.0 - - -\n/d 0 40755 2 0 0 0 0.0 - - -\n")
	for i := range 14 {
		o := newObject([]byte(fmt.Sprintf("content of file %d, long enough to be external", i)))
		fmt.Fprintf(&dump, "/d/f%05d 100 100644 1 0 0 0 1700000000.123456789 %s - %s\n", i, o.Payload, o.Digest)
	}
	s := newServer(b, imageFromDump(b, dump.String(), 1), testConfig{})
	d := s.mustLookup("d")
	buf := make([]byte, 4096)
	for b.Loop() {
		out := fuse.NewDirEntryList(buf, 0)
		in := fuse.ReadIn{InHeader: header(d.NodeId, rootCaller), Size: 4096}
		if st := s.fsys.ReadDirPlus(nil, &in, out); !st.Ok() {
			b.Fatal(st)
		}
	}
}
