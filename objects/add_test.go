package objects

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/composefs/composefs-go/verity"
)

func tempSource(t *testing.T, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func noTemporaries(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

func TestAdd(t *testing.T) {
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		dir := t.TempDir()
		second := t.TempDir()
		s, err := OpenFlat(dir, second)
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("composefs "), 100000)
		payload, digest, err := s.Add(alg, tempSource(t, data))
		if err != nil {
			t.Fatal(err)
		}
		if want := verity.DigestBytes(alg, data); !bytes.Equal(digest, want) {
			t.Fatalf("%s digest %x, want %x", alg, digest, want)
		}
		if payload != PayloadForDigest(digest) || len(payload) != 2*alg.Size()+1 {
			t.Fatalf("payload %q", payload)
		}
		path := filepath.Join(dir, payload)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("object mode %v, want 0644", fi.Mode())
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
			t.Fatal("object content differs")
		}
		f, err := s.OpenDigest(digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := verity.NewCache().Verify(f, alg, digest); err != nil {
			t.Fatal(err)
		}
		f.Close()

		// Adding again keeps the same file (same inode), and an existing
		// object is never replaced, even by "better" content.
		ino := fi.Sys().(*syscall.Stat_t).Ino
		if err := os.WriteFile(path, []byte("tampered"), 0o644); err != nil {
			t.Fatal(err)
		}
		p2, d2, err := s.Add(alg, tempSource(t, data))
		if err != nil || p2 != payload || !bytes.Equal(d2, digest) {
			t.Fatalf("second Add: %q %x %v", p2, d2, err)
		}
		fi2, _ := os.Stat(path)
		if fi2.Sys().(*syscall.Stat_t).Ino != ino {
			t.Error("existing object was replaced")
		}
		if got, _ := os.ReadFile(path); string(got) != "tampered" {
			t.Error("existing object was rewritten")
		}
		noTemporaries(t, dir)
		if entries, _ := os.ReadDir(second); len(entries) != 0 {
			t.Errorf("Add wrote into the second base dir: %v", entries)
		}

		// An empty file is an object too.
		pe, de, err := s.Add(alg, tempSource(t, nil))
		if err != nil || !bytes.Equal(de, verity.DigestBytes(alg, nil)) {
			t.Fatalf("empty: %q %x %v", pe, de, err)
		}
		s.Close()
	}
}

// TestAddEmptyAgreesWithFsverityTool: the empty object is named after the
// digest fsverity-utils gives an empty file (the root hash of no data is
// all zeros), the digest the kernel would measure.
func TestAddEmptyAgreesWithFsverityTool(t *testing.T) {
	tool, err := exec.LookPath("fsverity")
	if err != nil {
		t.Skip("fsverity tool not installed (Debian package fsverity: apt-get install -y fsverity)")
	}
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		dir := t.TempDir()
		s, err := OpenFlat(dir)
		if err != nil {
			t.Fatal(err)
		}
		payload, digest, err := s.Add(alg, tempSource(t, nil))
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		object := filepath.Join(dir, payload)
		out, err := exec.Command(tool, "digest", "--hash-alg="+alg.String(), "--block-size=4096", object).Output()
		if err != nil {
			t.Fatalf("fsverity digest: %v", err)
		}
		want := alg.String() + ":" + hex.EncodeToString(digest) + " " + object
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s: fsverity says %q, Add gave %q", alg, got, want)
		}
	}
}

// TestAddKeepsObjectFromOtherBaseDir: present in any base dir means present.
func TestAddKeepsObjectFromOtherBaseDir(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	data := []byte("shared object")
	payload := PayloadForDigest(verity.DigestBytes(verity.SHA256, data))
	mustWrite(t, filepath.Join(second, payload), string(data))
	s, _ := OpenFlat(first, second)
	defer s.Close()
	if p, _, err := s.Add(verity.SHA256, tempSource(t, data)); err != nil || p != payload {
		t.Fatalf("%q %v", p, err)
	}
	if _, err := os.Stat(filepath.Join(first, payload)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("copied although the second base dir has it: %v", err)
	}
}

// TestAddConcurrent: many adders of the same content leave one complete
// object and no temporaries; a reader never sees a partial object.
func TestAddConcurrent(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenFlat(dir)
	defer s.Close()
	data := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	payload := PayloadForDigest(verity.DigestBytes(verity.SHA256, data))

	stop := make(chan struct{})
	var partial, seen int
	var rwg sync.WaitGroup
	rwg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			f, err := s.Open(payload)
			if err != nil {
				continue
			}
			fi, _ := f.Stat()
			seen++
			if fi.Size() != int64(len(data)) {
				partial++
			}
			f.Close()
		}
	})
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, _, err := s.Add(verity.SHA256, tempSource(t, data)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	if partial > 0 {
		t.Fatalf("a reader saw %d partial objects (of %d opens)", partial, seen)
	}
	got, err := os.ReadFile(filepath.Join(dir, payload))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object: %v", err)
	}
	noTemporaries(t, dir)
}

// TestAddRefusesSymlinkedSubdir: a planted XX symlink must not redirect
// the write outside the store.
func TestAddRefusesSymlinkedSubdir(t *testing.T) {
	base := t.TempDir()
	dir, elsewhere := filepath.Join(base, "store"), filepath.Join(base, "elsewhere")
	os.MkdirAll(elsewhere, 0o755)
	data := []byte("payload")
	payload := PayloadForDigest(verity.DigestBytes(verity.SHA256, data))
	mustSymlink(t, elsewhere, filepath.Join(dir, payload[:2]))
	s, _ := OpenFlat(dir)
	defer s.Close()
	_, _, err := s.Add(verity.SHA256, tempSource(t, data))
	if !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("Add through a symlinked XX: %v", err)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Fatalf("wrote outside the store: %v", entries)
	}
}

func TestAddRefusesNonRegular(t *testing.T) {
	s, _ := OpenFlat(t.TempDir())
	defer s.Close()
	d, _ := os.Open(t.TempDir())
	defer d.Close()
	if _, _, err := s.Add(verity.SHA256, d); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("Add of a directory: %v", err)
	}
	if _, _, err := s.Add(verity.Algorithm(7), tempSource(t, nil)); err == nil {
		t.Fatal("Add with algorithm 7 succeeded")
	}
}

func TestCopyContentFallbacks(t *testing.T) {
	data := make([]byte, 1<<20+123)
	rand.NewChaCha8([32]byte{2}).Read(data)
	src := tempSource(t, data)
	dst, err := os.Create(filepath.Join(t.TempDir(), "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := copyContent(dst, src, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	dst.Seek(0, io.SeekStart)
	if got, _ := io.ReadAll(dst); !bytes.Equal(got, data) {
		t.Fatal("copy differs")
	}
	// Announcing more than the source has must fail, not pad.
	dst2, _ := os.Create(filepath.Join(t.TempDir(), "dst2"))
	defer dst2.Close()
	if err := copyContent(dst2, src, int64(len(data))+10); err == nil {
		t.Fatal("short source accepted")
	}
}
