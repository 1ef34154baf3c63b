package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/internal/cli/clitest"
	"github.com/composefs/composefs-go/internal/golden"
	"github.com/composefs/composefs-go/verity"
)

// dumpPath returns a golden input dump as a plain file, written into dir.
func dumpPath(t testing.TB, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name+".dump")
	if err := os.WriteFile(out, golden.Dump(t, name), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// mk runs the command in-process.
func mk(t testing.TB, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	code = run(args, stdin, &o, &e)
	return code, o.String(), e.String()
}

// mkRun is mk for package clitest.
func mkRun(t testing.TB) clitest.Run {
	return func(args ...string) (int, string, string) { return mk(t, nil, args...) }
}

// TestCommandLine: --help lists every option, --version names the
// command, an unknown option is one line and exit 2.
func TestCommandLine(t *testing.T) {
	clitest.Check(t, command(&settings{}), mkRun(t))
}

func fileSHA(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestManifest: `mkcomposefs ARGS --from-file DUMP IMAGE` for every row of
// the C manifest writes C's image and prints its digest.
func TestManifest(t *testing.T) {
	g := golden.Dir(t)
	f, err := os.Open(filepath.Join(g, "c", "manifest.tsv"))
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	tmp := t.TempDir()
	rows, ok := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if strings.HasPrefix(sc.Text(), "#") || len(c) < 6 {
			continue
		}
		rows++
		name, variant, args, strict, wantSHA, wantDigest := c[0], c[1], c[2], c[3] == "1", c[4], c[5]
		t.Run(name+"/"+variant, func(t *testing.T) {
			if strict {
				t.Setenv("CFS_PARSE_STRICT", "1")
			}
			argv := []string{"--from-file", "--print-digest"}
			if args != "-" {
				argv = append(argv, strings.Fields(args)...)
			}
			img := filepath.Join(tmp, name+"."+variant+".cfs")
			code, out, errs := mk(t, nil, append(argv, dumpPath(t, tmp, name), img)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if got := fileSHA(t, img); got != wantSHA {
				t.Errorf("image sha256 %s, want %s", got, wantSHA)
				return
			}
			if strings.TrimSpace(out) != wantDigest {
				t.Errorf("printed %q, want %s", out, wantDigest)
				return
			}
			ok++
		})
	}
	t.Logf("%d of %d manifest rows reproduced by the command", ok, rows)
}

// ownDumpText is a small tree of our own for the tests that need an input
// but not C's output for it.
const ownDumpText = `/ 0 40755 2 0 0 0 1000.0 - - - user.a=1
/d 0 40700 2 5 6 0 999.123 - - -
/d/ext 4096 100644 1 0 0 0 1000.0 ab/cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789 - abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789
/d/inl 5 100600 1 0 0 0 1000.0 - hello -
/d/lnk 7 120777 1 0 0 0 1000.0 /target - -
`

// ownDumpPath writes ownDumpText into dir and returns its path.
func ownDumpPath(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "own.dump")
	if err := os.WriteFile(p, []byte(ownDumpText), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPrintDigestOnlyAndStreams: --print-digest-only prints the image's
// fs-verity digest (C's, pinned, for a golden input), and "-" stands for
// stdin and stdout.
func TestPrintDigestOnlyAndStreams(t *testing.T) {
	t.Run("golden/derived-simple", func(t *testing.T) {
		dump := dumpPath(t, t.TempDir(), "derived-simple")
		const want = "9f3f5620ee0c54708516467d0d58741e7963047c7106b245d94c298259d0fa01"
		code, out, errs := mk(t, nil, "--from-file", "--print-digest-only", dump)
		if code != 0 || out != want+"\n" || errs != "" {
			t.Fatalf("--print-digest-only: exit %d, out %q, err %q", code, out, errs)
		}
	})
	tmp := t.TempDir()
	dump := ownDumpPath(t, tmp)
	code, digest, errs := mk(t, nil, "--from-file", "--print-digest-only", dump)
	if code != 0 || errs != "" {
		t.Fatalf("--print-digest-only: exit %d, err %q", code, errs)
	}
	// SOURCE "-" reads stdin, IMAGE "-" writes stdout.
	text, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := mk(t, bytes.NewReader(text), "--from-file", "-", "-")
	if code != 0 {
		t.Fatalf("stdin to stdout: exit %d: %s", code, errs)
	}
	ref := filepath.Join(tmp, "ref.cfs")
	if code, _, errs := mk(t, nil, "--from-file", dump, ref); code != 0 {
		t.Fatal(errs)
	}
	refBytes, _ := os.ReadFile(ref)
	if !bytes.Equal([]byte(out), refBytes) {
		t.Errorf("stdout image differs from the file image")
	}
	if want := hex.EncodeToString(verity.DigestBytes(verity.SHA256, refBytes)); digest != want+"\n" {
		t.Errorf("--print-digest-only printed %q; the image's digest is %s", digest, want)
	}
	st, err := os.Stat(ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o444 == 0 {
		t.Errorf("image mode %v", st.Mode())
	}
}

// TestErrors: a bad input or command line exits 1 with one line naming
// the problem, and leaves IMAGE exactly as it was, with no stray files.
func TestErrors(t *testing.T) {
	tmp := t.TempDir()
	img := filepath.Join(tmp, "keep.cfs")
	t.Run("golden/should-fail", func(t *testing.T) { shouldFail(t, img) })
	// Tree-level errors the writer finds.
	if err := os.WriteFile(img, []byte("previous"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"hardlink loop":       "/ 0 40755 2 0 0 0 0.0 - - -\n/a 0 @100644 - - - - 0.0 /b - -\n/b 0 @100644 - - - - 0.0 /a - -\n",
		"hardlinked whiteout": "/ 0 40755 2 0 0 0 0.0 - - -\n/w 0 20000 1 0 0 0 0.0 - - -\n/l 0 @20000 - - - - 0.0 /w - -\n",
		"whiteout nlink 2":    "/ 0 40755 2 0 0 0 0.0 - - -\n/w 0 20000 2 0 0 0 0.0 - - -\n",
		"missing file":        "",
	} {
		src := filepath.Join(tmp, "in.dump")
		if name != "missing file" {
			os.WriteFile(src, []byte(text), 0o644)
		} else {
			src = filepath.Join(tmp, "nope.dump")
		}
		code, _, errs := mk(t, nil, "--from-file", src, img)
		if code != 1 || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q", name, code, errs)
		}
		if b, _ := os.ReadFile(img); string(b) != "previous" {
			t.Errorf("%s: image changed", name)
		}
	}
	// A source or store that cannot be read: one line naming it once,
	// then the cause.
	dump := ownDumpPath(t, tmp)
	aDir := filepath.Join(tmp, "a-directory")
	if err := os.Mkdir(aDir, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(tmp, "missing")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--from-file", missing, img}, missing + ": no such file or directory"},
		{[]string{"--from-file", aDir, img}, aDir + ": is a directory"},
		{[]string{missing, img}, "scan " + missing + ": no such file or directory"},
		{[]string{dump, img}, "scan " + dump + ": not a directory"},
		{[]string{"--digest-store", dump, aDir, img}, "digest store " + dump + ": not a directory"},
	} {
		code, _, errs := mk(t, nil, c.args...)
		if want := "mkcomposefs: " + c.want + "\n"; code != 1 || errs != want {
			t.Errorf("%q: exit %d, stderr %q, want %q", c.args, code, errs, want)
		}
		if b, _ := os.ReadFile(img); string(b) != "previous" {
			t.Errorf("%q: image changed", c.args)
		}
	}
	// A missing output directory is an error too.
	if code, _, _ := mk(t, nil, "--from-file", dump, filepath.Join(tmp, "no", "such", "dir.cfs")); code != 1 {
		t.Errorf("missing output directory: exit %d", code)
	}
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("stray temporary file %s", e.Name())
		}
	}
	// Command lines that cannot be run: one line and exit 2.
	for name, args := range map[string][]string{
		"no source":              {},
		"no image":               {"--from-file", dump},
		"too many":               {"--from-file", dump, img, img},
		"image with digest-only": {"--from-file", "--print-digest-only", dump, img},
		"threads":                {"--threads=0", "--from-file", dump, img},
		"version":                {"--min-version=x", "--from-file", dump, img},
		"unknown flag":           {"--nope", dump, img},
		"conflict":               {"--skip-xattrs", "--user-xattrs", dump, img},
		"empty source":           {"--from-file", "", img},
	} {
		t.Run(name, func(t *testing.T) { clitest.Usage(t, "mkcomposefs", mkRun(t), args...) })
	}
	if code, _, errs := mk(t, nil, "--min-version=3", "--from-file", dump, img); code != 1 || strings.Count(errs, "\n") != 1 {
		t.Errorf("version range: exit %d, stderr %q", code, errs)
	}
	if b, _ := os.ReadFile(img); string(b) != "previous" {
		t.Errorf("image changed by a usage error")
	}
}

// shouldFail: each dumpfile C mkcomposefs rejects is rejected, and img
// left as it was.
func shouldFail(t *testing.T, img string) {
	fails, _ := filepath.Glob(filepath.Join(golden.Dir(t), "c", "should-fail", "*.dump"))
	if len(fails) == 0 {
		golden.Skip(t, "no should-fail dumps")
	}
	for _, f := range fails {
		if err := os.WriteFile(img, []byte("previous"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errs := mk(t, nil, "--from-file", f, img)
		if code != 1 {
			t.Errorf("%s: exit %d", filepath.Base(f), code)
		}
		if out != "" || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "mkcomposefs: "+f) {
			t.Errorf("%s: stdout %q, stderr %q", filepath.Base(f), out, errs)
		}
		if b, _ := os.ReadFile(img); string(b) != "previous" {
			t.Errorf("%s: image changed", filepath.Base(f))
		}
	}
}

func TestStrictEnv(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "in.dump")
	// No trailing newline: accepted, unless CFS_PARSE_STRICT is set.
	os.WriteFile(src, []byte("/ 0 40755 2 0 0 0 0.0 - - -"), 0o644)
	if code, _, errs := mk(t, nil, "--from-file", "--print-digest-only", src); code != 0 {
		t.Fatalf("lenient: %s", errs)
	}
	t.Setenv("CFS_PARSE_STRICT", "1")
	if code, _, errs := mk(t, nil, "--from-file", "--print-digest-only", src); code != 1 || !strings.Contains(errs, "line 1") {
		t.Errorf("strict: exit %d, %q", code, errs)
	}
}

// TestVersions: the C tool's version flags.
func TestVersions(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "in.dump")
	os.WriteFile(src, []byte("/ 0 40755 2 0 0 0 0.0 - - -\n/w 0 20000 1 0 0 0 0.0 - - -\n"), 0o644)
	for _, c := range []struct {
		args []string
		want byte
	}{
		{nil, 1},                         // 0..1, whiteout steps up
		{[]string{"--max-version=0"}, 0}, // 0..0
		{[]string{"--min-version=1"}, 1}, // 1..0 means 1..1
		{[]string{"--min-version=2"}, 2}, // composefs-rs layout
		{[]string{"--max-version=2"}, 1}, // 0..2: C's versions only step to 1
		{[]string{"--min-version=0", "--max-version=1"}, 1},
	} {
		img := filepath.Join(tmp, "out.cfs")
		args := append(append([]string{"--from-file"}, c.args...), src, img)
		if code, _, errs := mk(t, nil, args...); code != 0 {
			t.Errorf("%v: %s", c.args, errs)
			continue
		}
		b, _ := os.ReadFile(img)
		if len(b) < 16 || b[12] != c.want {
			t.Errorf("%v: composefs_version %v, want %d", c.args, b[12:16], c.want)
		}
	}
}

// TestDirectorySource: the golden tree, extracted, gives C's image under
// each option of trees.tsv, and --digest-store fills a store.
func TestDirectorySource(t *testing.T) {
	g := golden.Dir(t)
	if os.Geteuid() != 0 {
		t.Skip("extracting the golden tree needs root (owners, devices, trusted xattrs)")
	}
	tarPath := filepath.Join(g, "c", "trees", "tree-501.tar")
	tmp := t.TempDir()
	cmd := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--same-owner", "-xpf", tarPath, "-C", tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("tar: %v: %s", err, out)
	}
	root := filepath.Join(tmp, "tree-501")
	f, err := os.Open(filepath.Join(g, "c", "trees", "trees.tsv"))
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if strings.HasPrefix(sc.Text(), "#") || len(c) < 4 || c[0] != "tree-501" {
			continue
		}
		args := []string{"--print-digest-only"}
		if c[1] != "-" {
			args = append(args, strings.Fields(c[1])...)
		}
		code, out, errs := mk(t, nil, append(args, root)...)
		if code != 0 || strings.TrimSpace(out) != c[2] {
			t.Errorf("%s: exit %d, digest %q, want %s (%s)", c[1], code, out, c[2], errs)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no rows for tree-501")
	}
	store := filepath.Join(tmp, "store", "objects")
	img := filepath.Join(tmp, "img.cfs")
	if code, _, errs := mk(t, nil, "--digest-store="+store, root, img); code != 0 {
		t.Fatalf("--digest-store: %s", errs)
	}
	objs, _ := filepath.Glob(filepath.Join(store, "??", "*"))
	if len(objs) == 0 {
		t.Errorf("no objects in the digest store")
	}
}

// TestManPage: docs/man/mkcomposefs.1 renders without warnings and has an
// entry for every option --help lists.
func TestManPage(t *testing.T) {
	clitest.ManPage(t, command(&settings{}))
}
