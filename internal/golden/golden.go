// Package golden finds the reference data the tests compare against: the
// outputs of the C composefs tools and of composefs-rs in ../shared/golden,
// beside the repository. The data is never copied into the repository;
// tests that need it skip, with a message, where it is absent.
package golden

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Dir is ../shared/golden seen from the module root, found by walking up
// from the test's working directory (its package directory) to go.mod.
func Dir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, ok := moduleRoot(wd)
	if !ok {
		t.Skipf("golden data: no go.mod above %s", wd)
	}
	dir := filepath.Join(root, "..", "shared", "golden")
	if _, err := os.Stat(dir); err != nil {
		Skip(t, fmt.Sprintf("golden data not found at %s: %v", dir, err))
	}
	return dir
}

// moduleRoot is the nearest directory at or above dir holding go.mod.
func moduleRoot(dir string) (string, bool) {
	for root := dir; ; {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			return root, true
		}
		parent := filepath.Dir(root)
		if parent == root {
			return "", false
		}
		root = parent
	}
}

// Images lists every golden image, C's and composefs-rs', without skipping
// where there are none: for fuzz seeds, which are added to seeds of the
// test's own.
func Images() []string {
	wd, err := os.Getwd()
	if err != nil {
		return nil
	}
	root, ok := moduleRoot(wd)
	if !ok {
		return nil
	}
	dir := filepath.Join(root, "..", "shared", "golden")
	c, _ := filepath.Glob(filepath.Join(dir, "c", "images", "*.cfs"))
	rs, _ := filepath.Glob(filepath.Join(dir, "rs", "*.cfs"))
	return append(c, rs...)
}

// SkippedEnv names a file to which each test that skips for want of golden
// data appends a line "PACKAGE-DIR TEST-NAME": tests/run sets it, because
// go test prints skips only with -v, and a run without the data should say
// what it did not test.
const SkippedEnv = "COMPOSEFS_GOLDEN_SKIPPED"

// Skip skips t for want of golden data, recording it in $COMPOSEFS_GOLDEN_SKIPPED.
func Skip(t testing.TB, msg string) {
	t.Helper()
	if log := os.Getenv(SkippedEnv); log != "" {
		pkg := "?"
		if wd, err := os.Getwd(); err == nil {
			pkg = moduleRel(wd)
		}
		// O_APPEND: the packages' test binaries run at the same time, and
		// a line this short is written whole.
		if f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintf(f, "%s %s\n", pkg, t.Name())
			f.Close()
		}
	}
	t.Skip(msg)
}

// moduleRel is dir relative to the module root, or dir itself if there is
// none.
func moduleRel(dir string) string {
	if root, ok := moduleRoot(dir); ok {
		if rel, err := filepath.Rel(root, dir); err == nil {
			return rel
		}
	}
	return dir
}

// Path joins elems below the golden directory.
func Path(t testing.TB, elems ...string) string {
	t.Helper()
	return filepath.Join(append([]string{Dir(t)}, elems...)...)
}

// Read returns a golden file's bytes, gunzipped when its name ends in .gz.
func Read(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, ".gz") {
		return data
	}
	z, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// Dump returns the text of the input dumpfile c/dumps/NAME.dump (stored
// plain or gzipped).
func Dump(t testing.TB, name string) []byte {
	t.Helper()
	p := Path(t, "c", "dumps", name+".dump")
	if _, err := os.Stat(p); err != nil {
		p += ".gz"
	}
	return Read(t, p)
}

// CImages lists the C mkcomposefs images (c/images/NAME.VARIANT.cfs), sorted.
func CImages(t testing.TB) []string {
	t.Helper()
	return glob(t, "c", "images", "*.cfs")
}

// V2Images lists the composefs-rs V2 images (rs/*.v2.cfs), sorted.
func V2Images(t testing.TB) []string {
	t.Helper()
	return glob(t, "rs", "*.v2.cfs")
}

func glob(t testing.TB, elems ...string) []string {
	t.Helper()
	pattern := Path(t, elems...)
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		Skip(t, fmt.Sprintf("golden data: nothing matches %s", pattern))
	}
	sort.Strings(m)
	return m
}
