package tests

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/composefs/composefs-go/verity"
)

// verityTree is an image with external files whose objects are good, bad
// (one byte flipped, same size), missing, or without a digest.
type verityTree struct {
	image, objects               string
	good, bad, missing, nodigest object
	flipped                      []byte
}

func newVerityTree(t *testing.T) *verityTree {
	rng := rand.New(rand.NewPCG(3, 4))
	content := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	v := &verityTree{
		good:     newObject(content(300_000)),
		bad:      newObject(content(70_000)),
		missing:  newObject(content(1000)),
		nodigest: newObject(content(5000)),
		objects:  tempDir(t, "objects"),
	}
	v.good.Put(t, v.objects, v.good.Content)
	v.flipped = bytes.Clone(v.bad.Content)
	v.flipped[12345] ^= 1
	v.bad.Put(t, v.objects, v.flipped)
	v.nodigest.Put(t, v.objects, v.nodigest.Content)
	var b strings.Builder
	b.WriteString("/ 0 40755 2 0 0 0 0.0 - - -\n")
	b.WriteString("/inline 5 100644 1 0 0 0 0.0 - hello -\n")
	for name, o := range map[string]object{"good": v.good, "bad": v.bad, "missing": v.missing} {
		fmt.Fprintf(&b, "/%s %d 100644 1 0 0 0 0.0 %s - %s\n", name, len(o.Content), o.Payload, o.Digest)
	}
	fmt.Fprintf(&b, "/nodigest %d 100644 1 0 0 0 0.0 %s - -\n", len(v.nodigest.Content), v.nodigest.Payload)
	v.image = writeImage(t, b.String(), 1)
	return v
}

func readErrno(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return b, errno
	}
	return b, err
}

func TestVerity(t *testing.T) {
	requireRoot(t)
	v := newVerityTree(t)

	check := func(t *testing.T, mnt, name string, want []byte, wantErr error) {
		t.Helper()
		got, err := readErrno(filepath.Join(mnt, name))
		if wantErr != nil {
			if err != wantErr {
				t.Errorf("%s: %v, want %v", name, err, wantErr)
			}
			return
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", name, len(got), err, len(want))
		}
	}

	// On, the default, where the kernel opens files itself and the
	// object is checked at the first read, which fails as the open does
	// with --passthrough.
	for _, args := range [][]string{nil, {"--passthrough"}} {
		t.Run(strings.Join(append([]string{"on"}, args...), ""), func(t *testing.T) {
			mnt := fuseMount(t, v.image, append([]string{"--basedir", v.objects}, args...)...)
			check(t, mnt, "good", v.good.Content, nil)
			check(t, mnt, "bad", nil, syscall.EIO)
			check(t, mnt, "missing", nil, syscall.ENOENT)
			check(t, mnt, "nodigest", v.nodigest.Content, nil)
			check(t, mnt, "inline", []byte("hello"), nil)
			// Still up, still refusing, still serving.
			check(t, mnt, "bad", nil, syscall.EIO)
			check(t, mnt, "good", v.good.Content, nil)
		})
	}
	t.Run("off", func(t *testing.T) {
		mnt := fuseMount(t, v.image, "--basedir", v.objects, "--verity=off")
		check(t, mnt, "bad", v.flipped, nil)
		check(t, mnt, "missing", nil, syscall.ENOENT)
	})
	t.Run("require", func(t *testing.T) {
		mnt := fuseMount(t, v.image, "-o", "basedir="+v.objects+",verity=require")
		check(t, mnt, "nodigest", nil, syscall.EIO)
		check(t, mnt, "good", v.good.Content, nil)
		check(t, mnt, "bad", nil, syscall.EIO)
		check(t, mnt, "inline", []byte("hello"), nil)
	})
	t.Run("kernel", func(t *testing.T) {
		// The kernel without verity: serves the flipped object, and a
		// missing object is ENOENT, as ours answers.
		mnt := kernelMount(t, v.image, v.objects)
		check(t, mnt, "bad", v.flipped, nil)
		check(t, mnt, "missing", nil, syscall.ENOENT)
	})
	t.Run("log", func(t *testing.T) {
		fg := fuseForeground(t, v.image, "--basedir", v.objects)
		check(t, fg.mnt, "bad", nil, syscall.EIO)
		check(t, fg.mnt, "missing", nil, syscall.ENOENT)
		wants := []string{"/bad", v.bad.Payload, "/missing", v.missing.Payload}
		log := fg.waitStderr(wants...)
		for _, want := range wants {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
		if n := strings.Count(log, "/bad"); n != 1 {
			t.Errorf("%d log lines for one refused open:\n%s", n, log)
		}
	})
	t.Run("digest-holds", func(t *testing.T) {
		// Mounted with its digest, then the file rewritten in place with
		// another image of the same size: the mount still shows what was
		// checked. Without --digest it follows the file (the control).
		imgA, err := os.ReadFile(writeImage(t, "/ 0 40755 2 0 0 0 0.0 - - -\n/aaaa 5 100644 1 0 0 0 0.0 - hello -\n", 1))
		if err != nil {
			t.Fatal(err)
		}
		imgB, err := os.ReadFile(writeImage(t, "/ 0 40755 2 0 0 0 0.0 - - -\n/bbbb 5 100644 1 0 0 0 0.0 - hello -\n", 1))
		if err != nil || len(imgA) != len(imgB) {
			t.Fatalf("images of %d and %d bytes: %v", len(imgA), len(imgB), err)
		}
		d := verity.DigestBytes(verity.SHA256, imgA)
		for _, tc := range []struct {
			args []string
			want string
		}{{[]string{"--digest", hex.EncodeToString(d)}, "aaaa"}, {nil, "bbbb"}} {
			path := filepath.Join(tempDir(t, "image"), "image.cfs")
			if err := os.WriteFile(path, imgA, 0o644); err != nil {
				t.Fatal(err)
			}
			mnt := fuseMount(t, path, tc.args...)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(imgB, 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
			ents, err := os.ReadDir(mnt)
			if err != nil || len(ents) != 1 || ents[0].Name() != tc.want {
				t.Errorf("mounted with %q, image rewritten: %v %v, want only %s", tc.args, ents, err, tc.want)
			}
		}
	})
	t.Run("digest", func(t *testing.T) {
		d, err := verity.DigestPath(verity.SHA256, v.image)
		if err != nil {
			t.Fatal(err)
		}
		mnt := fuseMount(t, v.image, "--basedir", v.objects, "--digest", hex.EncodeToString(d))
		check(t, mnt, "good", v.good.Content, nil)

		wrong := bytes.Clone(d)
		wrong[0] ^= 1
		bad := tempDir(t, "fuse")
		out, err := tryFuseMount(t, v.image, bad, "--basedir", v.objects, "--digest", hex.EncodeToString(wrong))
		if err == nil || !strings.Contains(out, "digest") {
			t.Errorf("wrong --digest: %v\n%s", err, out)
		}
		if typ := mountedType(bad); typ != "" {
			t.Errorf("wrong --digest left a %s mount", typ)
		}
		out, err = tryFuseMount(t, v.image, bad, "-o", "digest="+hex.EncodeToString(wrong)[:10])
		if err == nil {
			t.Errorf("short -o digest= accepted:\n%s", out)
		}
	})
}
