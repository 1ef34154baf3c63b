package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/verity"
)

// inlineMax is the largest file mkcomposefs keeps inside the image; larger
// files are objects in the store, which is what the benchmark must exercise.
const inlineMax = 64

// corpus is one generated image and what the measurements need to know of it.
type corpus struct {
	image   string
	objects string
	files   []string // paths of regular files, relative to the root
	big     string   // the large file, relative; "" if none
}

// buildTools builds the commands under test from this module's source.
func buildTools(bin string) error {
	cmd := exec.Command("go", "build", "-o", bin+"/", "./cmd/mkcomposefs", "./cmd/composefs-fuse", "./cmd/cfsctl")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building the tools (run from the module root): %w", err)
	}
	return nil
}

// dumpWriter collects entries into a dumpfile and their objects into a flat
// digest store, as mkcomposefs --digest-store would lay them out.
type dumpWriter struct {
	f       *os.File
	w       *bufio.Writer
	objects string
	err     error
}

// newDumpWriter creates the dumpfile and the store directory.
func newDumpWriter(dump, objects string) (*dumpWriter, error) {
	for _, dir := range []string{filepath.Dir(dump), objects} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	f, err := os.Create(dump)
	if err != nil {
		return nil, err
	}
	return &dumpWriter{f: f, w: bufio.NewWriterSize(f, 1<<20), objects: objects}, nil
}

// finish flushes the dumpfile and reports the first error of the writing.
func (d *dumpWriter) finish() error {
	if d.err == nil {
		d.err = d.w.Flush()
	}
	if d.err != nil {
		return fmt.Errorf("writing %s: %w", d.f.Name(), d.err)
	}
	return nil
}

func (d *dumpWriter) dir(path string, nlink uint32) {
	d.entry(&dumpfile.Entry{Path: path, Mode: 0o40755, Nlink: nlink, Mtime: dumpfile.Timespec{Sec: 1700000000}})
}

func (d *dumpWriter) file(path string, content []byte) {
	e := &dumpfile.Entry{Path: path, Mode: 0o100644, Nlink: 1, Size: uint64(len(content)),
		Mtime: dumpfile.Timespec{Sec: 1700000000, Nsec: 123456789}}
	if len(content) <= inlineMax {
		e.Content = content
	} else {
		digest := verity.DigestBytes(verity.SHA256, content)
		e.Digest = hex.EncodeToString(digest)
		e.Payload = e.Digest[:2] + "/" + e.Digest[2:]
		if d.err == nil {
			d.err = writeObject(filepath.Join(d.objects, e.Payload), content)
		}
	}
	d.entry(e)
}

func (d *dumpWriter) entry(e *dumpfile.Entry) {
	if d.err == nil {
		d.err = dumpfile.Write(d.w, e)
	}
}

func writeObject(path string, content []byte) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, content, 0o644)
}

// smallSize draws a file size shaped like a root filesystem: a third tiny
// (inline), the rest spread log-uniformly from 100 bytes to 32 KiB.
func smallSize(r *rand.Rand) int {
	if r.IntN(3) == 0 {
		return r.IntN(inlineMax + 1)
	}
	lo, hi := 100.0, 32768.0
	f := lo
	for f*2 < hi && r.IntN(2) == 0 {
		f *= 2
	}
	return int(f) + r.IntN(int(f))
}

// makeWalkCorpus writes the tree of small files (in dirs directories, two
// levels deep) and one large file, and images it with mkcomposefs.
func makeWalkCorpus(c *config, dir string) (*corpus, error) {
	return makeTreeCorpus(c, dir, "walk", func(r *rand.Rand, _ int) int { return smallSize(r) }, c.bigMiB)
}

// treeSizes are the sizes of the tree read by separate processes, each
// taken by as many files: from empty and inline to objects of many pages,
// as in a root filesystem, every file but the inline ones an object.
var treeSizes = []int{0, 40, 300, 1500, 3000, 5000, 9000, 20000, 70000}

// makeReadTree writes the tree read with find | xargs cat: the walk
// corpus' directories, its files' sizes taken in turn from treeSizes.
func makeReadTree(c *config, dir string) (*corpus, error) {
	return makeTreeCorpus(c, dir, "tree", func(_ *rand.Rand, i int) int { return treeSizes[i%len(treeSizes)] }, 0)
}

// makeTreeCorpus writes c.files files of the sizes size gives (in c.dirs
// directories, two levels deep) and, when bigMiB > 0, one large file, and
// images them with mkcomposefs.
func makeTreeCorpus(c *config, dir, name string, size func(r *rand.Rand, i int) int, bigMiB int) (*corpus, error) {
	cp := &corpus{image: filepath.Join(dir, name+".cfs"), objects: filepath.Join(dir, "objects")}
	dump := filepath.Join(dir, name+".dump")
	d, err := newDumpWriter(dump, cp.objects)
	if err != nil {
		return nil, err
	}
	defer d.f.Close()
	r := rand.New(rand.NewPCG(1, 2))

	top := 1
	for top*top < c.dirs {
		top++
	}
	perTop := (c.dirs - top + top - 1) / top
	var leaves []string
	d.dir("/", uint32(2+top))
	made := top
	for i := 0; i < top; i++ {
		n := min(perTop, c.dirs-made)
		if n < 0 {
			n = 0
		}
		made += n
		tp := fmt.Sprintf("/d%03d", i)
		d.dir(tp, uint32(2+n))
		leaves = append(leaves, tp)
		for j := 0; j < n; j++ {
			leaves = append(leaves, fmt.Sprintf("%s/s%03d", tp, j))
		}
	}
	// Files go into the directories in path order so the dumpfile lists
	// every parent before its children.
	perDir := make([]int, len(leaves))
	for i := 0; i < c.files; i++ {
		perDir[i%len(leaves)]++
	}
	buf := make([]byte, 0, 65536)
	nfile := 0
	for i, leaf := range leaves {
		if len(leaf) != len("/d000") { // top-level ones were written above

			d.dir(leaf, 2)
		}
		for k := 0; k < perDir[i]; k++ {
			n := size(r, nfile)
			nfile++
			if n > cap(buf) {
				buf = make([]byte, 0, n)
			}
			content := buf[:n]
			fillRandom(r, content)
			name := fmt.Sprintf("%s/f%05d", leaf, k)
			d.file(name, content)
			cp.files = append(cp.files, name[1:])
		}
	}
	if bigMiB > 0 {
		if err := d.bigFile(bigMiB, r); err != nil {
			return nil, err
		}
		cp.big = "big.bin"
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return cp, mkcomposefs(c, dump, cp.image)
}

func fillRandom(r *rand.Rand, p []byte) {
	for i := 0; i+8 <= len(p); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(p) &^ 7; i < len(p); i++ {
		p[i] = byte(r.Uint32())
	}
}

// bigFile streams the large file into the store under its digest.
func (d *dumpWriter) bigFile(mib int, r *rand.Rand) error {
	tmp, err := os.CreateTemp(d.objects, "big.")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := verity.NewHasher(verity.SHA256)
	chunk := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		fillRandom(r, chunk)
		h.Write(chunk)
		if _, err := tmp.Write(chunk); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	digest := hex.EncodeToString(h.Sum())
	payload := digest[:2] + "/" + digest[2:]
	if err := os.MkdirAll(filepath.Join(d.objects, digest[:2]), 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(d.objects, payload)); err != nil {
		return err
	}
	d.entry(&dumpfile.Entry{Path: "/big.bin", Mode: 0o100644, Nlink: 1, Size: uint64(mib) << 20,
		Mtime: dumpfile.Timespec{Sec: 1700000000}, Payload: payload, Digest: digest})
	return nil
}

// makeLargeImage writes an image of n entries: directories of 100 entries
// each, mostly empty and tiny inline files, so that it measures metadata.
func makeLargeImage(c *config, dir string) (*corpus, error) {
	cp := &corpus{image: filepath.Join(dir, "large.cfs"), objects: filepath.Join(dir, "objects")}
	dump := filepath.Join(dir, "large.dump")
	d, err := newDumpWriter(dump, cp.objects)
	if err != nil {
		return nil, err
	}
	defer d.f.Close()
	const perDir = 100
	ndirs := (c.entries + perDir) / (perDir + 1)
	d.dir("/", uint32(2+ndirs))
	left := c.entries - ndirs
	for i := 0; i < ndirs; i++ {
		dp := fmt.Sprintf("/dir%06d", i)
		d.dir(dp, 2)
		n := min(perDir, left)
		left -= n
		for k := 0; k < n; k++ {
			var content []byte
			if k%4 == 0 {
				content = []byte(dp)
			}
			d.file(fmt.Sprintf("%s/e%03d", dp, k), content)
		}
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return cp, mkcomposefs(c, dump, cp.image)
}

func mkcomposefs(c *config, dump, image string) error {
	cmd := exec.Command(filepath.Join(c.bin, "mkcomposefs"), "--from-file", dump, image)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkcomposefs %s: %v: %s", dump, err, out)
	}
	return nil
}
