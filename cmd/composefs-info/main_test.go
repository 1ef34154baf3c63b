package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/internal/cli/clitest"
	"github.com/composefs/composefs-go/internal/fixture"
	"github.com/composefs/composefs-go/internal/golden"
	"github.com/composefs/composefs-go/verity"
)

// ownDump is a small tree with what inspect and the error tests look for
// (shared and overlay xattrs, a redirect, a hardlink, a symlink, a
// whiteout, chunk-based and inline files), imaged by the project's writer
// so that these tests run without the golden data; C's extra-features
// image, which has the same, is their golden subtest.
const ownDump = `/ 0 40755 2 0 0 0 1000.0 - - - security.selinux=system_u:object_r:root_t:s0\x00
/a 0 40755 2 0 0 0 1000.0 - - - security.selinux=system_u:object_r:usr_t:s0\x00
/a/ext1 4096 100644 2 0 0 0 1000.0 ab/cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789 - abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789 security.selinux=system_u:object_r:usr_t:s0\x00
/a/hl 4096 @100644 2 0 0 0 1000.0 /a/ext1 - -
/a/inl 5 100600 1 0 0 0 1000.0 - hello -
/a/lnk 7 120777 1 0 0 0 1000.0 /target - -
/a/nodigest 12345678901 100644 1 70000 70000 0 2000.5 12/3456 - - user.foo=bar trusted.overlay.opaque=y trusted.overlay.custom=1
/a/wh 0 20000 1 0 0 0 1000.0 - - -
/b 0 40700 2 5 6 0 999.123 - - - user.x=y
/b/cdev 0 20644 1 0 0 259 1000.0 - - -
`

// forImages runs fn over our V1 image of ownDump (as a file), then over
// C's extra-features V1 image (a subtest that skips without golden data).
func forImages(t *testing.T, fn func(t *testing.T, img string)) {
	t.Run("own", func(t *testing.T) {
		img := filepath.Join(t.TempDir(), "own.cfs")
		if err := os.WriteFile(img, fixture.Image(t, ownDump, 1), 0o644); err != nil {
			t.Fatal(err)
		}
		fn(t, img)
	})
	t.Run("golden", func(t *testing.T) {
		fn(t, filepath.Join(golden.Dir(t), "c", "images", "extra-features.v1.cfs"))
	})
}

// goldenDump is C's composefs-info dump of a golden image.
func goldenDump(t *testing.T, image string) []byte {
	name := strings.TrimSuffix(filepath.Base(image), ".cfs")
	return golden.Read(t, golden.Path(t, "c", "info", name+".dump.gz"))
}

// cfsInfo runs the command in process.
func cfsInfo(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = run(append([]string{"composefs-info"}, args...), &o, &e)
	return o.String(), e.String(), code
}

// garbled: C printed a redirect payload of this length with bytes from
// past its end (the golden README's C bug), so theirs extends ours.
func garbled(ours, theirs string) bool {
	return len(theirs) > len(ours) && strings.HasPrefix(theirs, ours) && (len(ours)+1)%4 == 0
}

// cEntries parses C's dump of the image.
func cEntries(t *testing.T, image string) []dumpfile.Entry {
	t.Helper()
	var out []dumpfile.Entry
	p := dumpfile.NewParser(bytes.NewReader(goldenDump(t, image)), dumpfile.ParseOptions{})
	for {
		e, err := p.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *e)
	}
}

func TestDumpGolden(t *testing.T) {
	garbles := 0
	imgs := golden.CImages(t)
	for _, img := range imgs {
		out, errOut, code := cfsInfo("dump", img)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", img, code, errOut)
		}
		want := string(goldenDump(t, img))
		if out == want {
			continue
		}
		gl, wl := strings.Split(out, "\n"), strings.Split(want, "\n")
		if len(gl) != len(wl) {
			t.Fatalf("%s: %d lines, C %d", img, len(gl), len(wl))
		}
		for i := range gl {
			if gl[i] == wl[i] {
				continue
			}
			g, w := strings.Split(gl[i], " "), strings.Split(wl[i], " ")
			g8, w8 := g[8], w[8]
			g[8], w[8] = "", ""
			gp, _ := dumpfile.Unescape(g8)
			wp, _ := dumpfile.Unescape(w8)
			if !slices.Equal(g, w) || !garbled(string(gp), string(wp)) {
				t.Fatalf("%s line %d:\n got %s\nwant %s", img, i+1, gl[i], wl[i])
			}
			garbles++
		}
	}
	t.Logf("%d images dumped as C does (%d garbled C redirects excepted)", len(imgs), garbles)
}

// lsLine is what C's ls prints for an entry.
func lsLine(e *dumpfile.Entry) string {
	line := string(dumpfile.AppendEscaped(nil, e.Path, true))
	switch {
	case e.Hardlink != "":
	case e.IsDir():
		line += "/\t"
	case e.IsSymlink():
		line += "\t-> " + string(dumpfile.AppendEscaped(nil, e.Payload, false))
	case e.IsRegular() && e.Payload != "":
		line += "\t@ " + string(dumpfile.AppendEscaped(nil, e.Payload, false))
	}
	return line
}

// TestLsObjectsGolden: ls and objects say what C's dump of the same image
// says.
func TestLsObjectsGolden(t *testing.T) {
	for _, img := range golden.CImages(t) {
		entries := cEntries(t, img)
		var wantLs []string
		wantObj := map[string]bool{}
		for i := range entries {
			e := &entries[i]
			if e.Path == "/" {
				continue
			}
			wantLs = append(wantLs, lsLine(e))
			if e.Hardlink == "" && e.IsRegular() && e.Payload != "" {
				wantObj[e.Payload] = true
			}
		}
		out, errOut, code := cfsInfo("ls", img)
		if code != 0 {
			t.Fatalf("%s: ls: exit %d: %s", img, code, errOut)
		}
		got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if out == "" {
			got = nil
		}
		if len(got) != len(wantLs) {
			t.Fatalf("%s: ls: %d lines, want %d", img, len(got), len(wantLs))
		}
		for i := range got {
			if got[i] != wantLs[i] {
				g, w, _ := strings.Cut(got[i], "\t@ ")
				if !strings.HasPrefix(wantLs[i], g+"\t@ ") || !garbled(w, strings.TrimPrefix(wantLs[i], g+"\t@ ")) {
					t.Fatalf("%s: ls line %d:\n got %q\nwant %q", img, i+1, got[i], wantLs[i])
				}
			}
		}
		out, errOut, code = cfsInfo("objects", img)
		if code != 0 {
			t.Fatalf("%s: objects: exit %d: %s", img, code, errOut)
		}
		objs := strings.Fields(out)
		if !slices.IsSorted(objs) {
			t.Errorf("%s: objects not sorted", img)
		}
		if len(objs) != len(wantObj) {
			t.Fatalf("%s: objects %q, want %d", img, objs, len(wantObj))
		}
		for _, o := range objs {
			if wantObj[o] {
				continue
			}
			ok := false
			for w := range wantObj {
				ok = ok || garbled(o, w)
			}
			if !ok {
				t.Errorf("%s: object %q not in C's dump", img, o)
			}
		}
	}
}

// TestMissingObjects: objects lists the payloads an image names, sorted,
// and missing-objects those absent from --basedir.
func TestMissingObjects(t *testing.T) {
	forImages(t, missingObjects)
}

func missingObjects(t *testing.T, img string) {
	all, _, code := cfsInfo("objects", img)
	if code != 0 || all != "12/3456\nab/cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n" {
		t.Fatalf("objects: %d %q", code, all)
	}
	if out, _, _ := cfsInfo("missing-objects", img); out != all {
		t.Errorf("missing-objects without --basedir: %q, want all", out)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "ab"), 0o755)
	os.WriteFile(filepath.Join(dir, "ab", "cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"), nil, 0o644)
	out, errOut, code := cfsInfo("--basedir="+dir, "missing-objects", img)
	if code != 0 || out != "12/3456\n" {
		t.Errorf("missing-objects: %d %q %q", code, out, errOut)
	}
	// Two images: one sorted list of their union.
	img2 := filepath.Join(t.TempDir(), "second.cfs")
	second := "/ 0 40755 2 0 0 0 1000.0 - - -\n/x 10 100644 1 0 0 0 1000.0 00/11 - -\n/y 4096 100644 2 0 0 0 1000.0 " +
		"ab/cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789 - -\n"
	if err := os.WriteFile(img2, fixture.Image(t, second, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	out2, _, _ := cfsInfo("objects", img2)
	both, _, _ := cfsInfo("objects", img2, img)
	want := strings.Fields(all + out2)
	slices.Sort(want)
	want = slices.Compact(want)
	if strings.Join(want, "\n")+"\n" != both || len(want) != 3 {
		t.Errorf("objects of two images: %q", both)
	}
}

func TestFilter(t *testing.T) {
	img := filepath.Join(golden.Dir(t), "c", "images", "special.v1.cfs")
	out, _, code := cfsInfo("--filter=chardev", "--filter=inline", "--filter=whiteout", "dump", img)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "/ 4096 40555") ||
		!strings.HasPrefix(lines[1], "/chardev 0 20777") || !strings.HasPrefix(lines[2], "/inline 15 100777") ||
		!strings.HasPrefix(lines[3], "/whiteout 0 20777") {
		t.Errorf("filtered dump (%d):\n%s", code, out)
	}
	if _, errOut, code := cfsInfo("--filter=a/b", "dump", img); code != 2 || !strings.Contains(errOut, "a/b") {
		t.Errorf("filter with a slash: %d %q", code, errOut)
	}
}

// TestMeasureFile: measure-file prints each file's fs-verity digest: as
// the verity package computes it, and as the reference vectors pin it.
func TestMeasureFile(t *testing.T) {
	t.Run("own", func(t *testing.T) {
		dir := t.TempDir()
		var files, want256, want512 []string
		for _, size := range []int{0, 1, 4096, 4097, 100_000} {
			b := bytes.Repeat([]byte{byte(size)}, size)
			p := filepath.Join(dir, strconv.Itoa(size))
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, p)
			want256 = append(want256, hex.EncodeToString(verity.DigestBytes(verity.SHA256, b)))
			want512 = append(want512, hex.EncodeToString(verity.DigestBytes(verity.SHA512, b)))
		}
		measure(t, files, want256, want512)
	})
	t.Run("golden", measureVectors)
}

func measureVectors(t *testing.T) {
	f, err := os.Open(filepath.Join(golden.Dir(t), "verity", "vectors.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	var files, want256, want512 []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if strings.HasPrefix(fields[0], "#") || len(fields) != 4 || !strings.HasPrefix(fields[0], "mod251") {
			continue
		}
		size, _ := strconv.Atoi(fields[1])
		if size > 1<<20 {
			continue
		}
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(i % 251)
		}
		p := filepath.Join(dir, fields[0])
		os.WriteFile(p, b, 0o644)
		files = append(files, p)
		want256 = append(want256, fields[2])
		want512 = append(want512, fields[3])
	}
	if len(files) == 0 {
		t.Skip("no vectors")
	}
	measure(t, files, want256, want512)
}

// measure runs measure-file over files, with each hash.
func measure(t *testing.T, files, want256, want512 []string) {
	t.Helper()
	out, errOut, code := cfsInfo(append([]string{"measure-file"}, files...)...)
	if code != 0 || out != strings.Join(want256, "\n")+"\n" {
		t.Errorf("measure-file: %d %q\n%s", code, errOut, out)
	}
	out, _, code = cfsInfo(append([]string{"--hash=sha512", "measure-file"}, files...)...)
	if code != 0 || out != strings.Join(want512, "\n")+"\n" {
		t.Errorf("measure-file --hash=sha512: %d\n%s", code, out)
	}
	t.Logf("%d files measured", len(files))
}

// TestErrors: every failure is exit 1 with one line on stderr naming what
// failed, once: not again for the open below it.
func TestErrors(t *testing.T) {
	forImages(t, checkErrors)
}

func checkErrors(t *testing.T, img string) {
	dir := t.TempDir()
	good, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	flip := func(off int, v byte) []byte {
		b := bytes.Clone(good)
		b[off] = v
		return b
	}
	notImage := write("not-an-image", []byte("hello world, this is not an image at all"))
	aDir := filepath.Join(dir, "a-directory")
	if err := os.Mkdir(aDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string // in the message
	}{
		{[]string{"dump", filepath.Join(dir, "missing.cfs")}, "missing.cfs"},
		{[]string{"dump", notImage}, "not-an-image"},
		{[]string{"ls", write("truncated.cfs", good[:5000])}, "truncated.cfs"},
		{[]string{"dump", write("bad-magic.cfs", flip(1024, 0))}, "bad-magic.cfs"},
		{[]string{"objects", write("root-nid.cfs", flip(1024+14, 0xff))}, "root-nid.cfs"},
		{[]string{"dump", write("bad-dir.cfs", flip(len(good)-4096+8, 0xff))}, "bad-dir.cfs"},
		{[]string{"measure-file", filepath.Join(dir, "nope")}, "nope"},
		{[]string{"inspect", write("inspect-bad.cfs", flip(1024, 0))}, "inspect-bad.cfs"},
		{[]string{"inspect", filepath.Join(dir, "inspect-missing.cfs")}, "inspect-missing.cfs"},
		{[]string{"ls", aDir}, "a-directory"},
		{[]string{"measure-file", aDir}, "a-directory"},
		{[]string{"missing-objects", "--basedir", filepath.Join(dir, "no-store"), img}, "no-store"},
	}
	for _, c := range cases {
		out, errOut, code := cfsInfo(c.args...)
		if code != 1 {
			t.Errorf("%q: exit %d, want 1 (stdout %q)", c.args, code, out)
		}
		if !strings.HasPrefix(errOut, "composefs-info: ") || strings.Count(errOut, "\n") != 1 || strings.Count(errOut, c.want) != 1 {
			t.Errorf("%q: stderr %q is not one line naming %q once", c.args, errOut, c.want)
		}
	}
	// The image, store or file is named once, then the cause, as C
	// words it.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dump", filepath.Join(dir, "missing.cfs")}, filepath.Join(dir, "missing.cfs") + ": no such file or directory"},
		{[]string{"measure-file", filepath.Join(dir, "nope")}, "failed to measure '" + filepath.Join(dir, "nope") + "': no such file or directory"},
		{[]string{"measure-file", aDir}, "failed to measure '" + aDir + "': is a directory"},
		{[]string{"missing-objects", "--basedir", filepath.Join(dir, "no-store"), img}, "Can't open basedir `" + filepath.Join(dir, "no-store") + "`: no such file or directory"},
	} {
		if _, errOut, _ := cfsInfo(c.args...); errOut != "composefs-info: "+c.want+"\n" {
			t.Errorf("%q: stderr %q, want %q", c.args, errOut, c.want)
		}
	}
	// Command lines that cannot be run: one line, exit 2.
	usage := []struct {
		args []string
		want string // in the message
	}{
		{[]string{"frobnicate", notImage}, "frobnicate"},
		{[]string{}, "No command"},
		{[]string{"dump"}, "No image"},
		{[]string{"measure-file"}, "No files"},
		{[]string{"--hash=md5", "measure-file", notImage}, "md5"},
		{[]string{"inspect", notImage, "/", "/"}, "optional path"},
		{[]string{"--frob", "dump", notImage}, "frob"},
		{[]string{"ls", "--basedir"}, "basedir"},
	}
	for _, c := range usage {
		if msg := clitest.Usage(t, "composefs-info", infoRun, c.args...); !strings.Contains(msg, c.want) {
			t.Errorf("%q: stderr %q does not name %q", c.args, msg, c.want)
		}
	}
}

// infoRun is cfsInfo for package clitest.
func infoRun(args ...string) (int, string, string) {
	out, errOut, code := cfsInfo(args...)
	return code, out, errOut
}

// TestCommandLine: --help lists every option, for the command and each
// subcommand; --version names the command; an unknown option is one line
// and exit 2, pointing at the subcommand's help when there is one.
func TestCommandLine(t *testing.T) {
	var opts options
	top := command(&opts)
	clitest.Check(t, top, infoRun)
	// Every command line has these (package cli), subcommands too.
	listed := map[string]bool{"help": true, "version": true, "debug": true}
	for _, sc := range subcommands {
		if out, _, _ := cfsInfo("--help"); !strings.Contains(out, "\n  "+sc.name+" "+sc.args+" ") {
			t.Errorf("composefs-info --help does not list %s %s", sc.name, sc.args)
		}
		c := sc.command(top)
		clitest.Help(t, c, infoRun, sc.name)
		if msg := clitest.Usage(t, c.Name, infoRun, sc.name, "--frob"); !strings.Contains(msg, c.Name+" --help") {
			t.Errorf("%s: usage error %q does not point at its help", sc.name, msg)
		}
		for _, f := range sc.flags {
			listed[f] = true
		}
	}
	// Every option is some subcommand's.
	top.Flags.VisitAll(func(f *pflag.Flag) {
		if !listed[f.Name] {
			t.Errorf("--%s is in no subcommand's help", f.Name)
		}
	})
}

// TestDamagedImagesExit1: damaged copies of an image either dump or fail
// with exit 1 and a one-line message naming the image; never crash.
func TestDamagedImagesExit1(t *testing.T) {
	forImages(t, damagedImagesExit1)
}

func damagedImagesExit1(t *testing.T, img string) {
	good, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "damaged.cfs")
	failed := 0
	for off := 0; off < len(good); off += 97 {
		b := bytes.Clone(good)
		b[off] ^= 0xff
		os.WriteFile(p, b, 0o644)
		for _, cmd := range []string{"dump", "ls", "inspect"} {
			_, errOut, code := cfsInfo(cmd, p)
			switch code {
			case 0:
			case 1:
				failed++
				if !strings.HasPrefix(errOut, "composefs-info: "+p+": ") || strings.Count(errOut, "\n") != 1 {
					t.Fatalf("%s at byte %d: %q", cmd, off, errOut)
				}
			default:
				t.Fatalf("%s at byte %d: exit %d", cmd, off, code)
			}
		}
	}
	t.Logf("%d damaged runs exited 1", failed)
}

// TestInspect: inspect names each structure of an image.
func TestInspect(t *testing.T) {
	forImages(t, checkInspect)
}

func checkInspect(t *testing.T, img string) {
	out, errOut, code := cfsInfo("inspect", img)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"header: magic 0xd078629a version 1 flags 0x0 composefs_version 1",
		"root_nid 36",
		"nid 36 /: extended",
		"whiteout stub",
		"# /: 256 whiteout stubs",
		"xattr shared ",
		"mount shows trusted.overlay.custom",
		"trusted.overlay.redirect = \"/12/3456\"",
		"hidden by the mount",
		"escaped whiteout",
		"/a/hl: hardlink to /a/ext1",
		"symlink -> \"/target\"",
		"chunk-based",
		"flat-inline",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q", want)
		}
	}
	sub, _, code := cfsInfo("inspect", img, "/a")
	if code != 0 || strings.Contains(sub, "nid 36 /:") || !strings.Contains(sub, "/a/ext1") {
		t.Errorf("inspect of /a:\n%s", sub)
	}
}

// TestManPage: docs/man/composefs-info.1 renders without warnings and has
// an entry for every option and every subcommand --help lists.
func TestManPage(t *testing.T) {
	var opts options
	m := clitest.ManPage(t, command(&opts))
	for _, sc := range subcommands {
		if !m.Tagged("COMMANDS", sc.name) {
			t.Errorf("%s: the command %s has no entry under COMMANDS", m.Path, sc.name)
		}
	}
}
