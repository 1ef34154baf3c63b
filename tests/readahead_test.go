package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadAheadMount reads the files of a directory one after another by
// path, without listing it, as tar or a package manager does: that is what
// sets the server's object read-ahead going (fusefs/ahead.go). Every file
// must read right, a damaged object must still fail its first read with EIO
// and one log line, a missing one with ENOENT, and a large file must read
// too.
func TestReadAheadMount(t *testing.T) {
	requireRoot(t)
	rng := rand.New(rand.NewPCG(9, 9))
	objects := tempDir(t, "objects")
	var dump strings.Builder
	dump.WriteString("/ 0 40755 3 0 0 0 0.0 - - -\n/d 0 40755 2 0 0 0 0.0 - - -\n")
	const n = 80
	want := make([][]byte, n)
	for i := range n {
		size := 100 + rng.IntN(64<<10)
		if i == 50 {
			size = 3 << 20 // over the read-ahead's size limit
		}
		content := make([]byte, size)
		for j := range content {
			content[j] = byte(rng.Uint32())
		}
		want[i] = content
		o := newObject(content)
		switch i {
		case 30:
			flipped := bytes.Clone(content)
			flipped[size/2] ^= 1
			o.Put(t, objects, flipped)
		case 40:
			// missing from the store
		default:
			o.Put(t, objects, content)
		}
		fmt.Fprintf(&dump, "/d/f%03d %d 100644 1 0 0 0 0.0 %s - %s\n", i, size, o.Payload, o.Digest)
	}
	image := writeImage(t, dump.String(), 1)
	fg := fuseForeground(t, image, "--basedir", objects)

	for pass := range 2 {
		if pass == 1 {
			// A read within a second of a refused one is refused
			// without a new log line (fusefs's failAgainFor); the
			// second pass must be refused, and logged, anew.
			time.Sleep(1100 * time.Millisecond)
		}
		for i := range n {
			name := fmt.Sprintf("f%03d", i)
			got, err := readErrno(filepath.Join(fg.mnt, "d", name))
			switch i {
			case 30:
				if err != syscall.EIO {
					t.Errorf("pass %d, %s (damaged object): %v, want EIO", pass, name, err)
				}
			case 40:
				if err != syscall.ENOENT {
					t.Errorf("pass %d, %s (missing object): %v, want ENOENT", pass, name, err)
				}
			default:
				if err != nil || !bytes.Equal(got, want[i]) {
					t.Errorf("pass %d, %s: %d bytes, %v; want %d bytes", pass, name, len(got), err, len(want[i]))
				}
			}
		}
	}
	log := fg.waitStderr("/d/f030", "/d/f040")
	// One line per refused read (two passes), none from the read-ahead.
	if c := strings.Count(log, "/d/f030"); c != 2 {
		t.Errorf("%d log lines name /d/f030, want 2 (one per refused read):\n%s", c, log)
	}
}
