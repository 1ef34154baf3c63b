package tests

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDamagedImages mounts golden images with bytes flipped in their
// metadata. Each must be refused at mount with a message, or served with
// errors on the damaged parts: never a crash or a hang, and the mount stays
// up after a full walk.
func TestDamagedImages(t *testing.T) {
	requireRoot(t)
	images := goldenImages(t, "*.v1.cfs")
	bin := buildCmd(t, "composefs-fuse")
	rng := rand.New(rand.NewPCG(11, 13))
	dir := tempDir(t, "damaged")
	refused, served := 0, 0
	for i, image := range images {
		orig, err := os.ReadFile(image)
		if err != nil {
			t.Fatal(err)
		}
		if len(orig) > 64<<10 {
			continue // big trees make slow walks and add little here
		}
		for j := range 3 {
			data := append([]byte(nil), orig...)
			limit := min(len(data), 32<<10)
			for range 1 + rng.IntN(6) {
				// Mostly metadata; now and then the superblock.
				lo := 1152
				if rng.IntN(8) == 0 {
					lo = 1024
				}
				data[lo+rng.IntN(limit-lo)] ^= byte(1 + rng.IntN(255))
			}
			p := filepath.Join(dir, strings.TrimSuffix(filepath.Base(image), ".cfs")+"-"+string(rune('a'+j))+".cfs")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			mnt := filepath.Join(dir, "mnt", filepath.Base(p))
			if err := os.MkdirAll(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { lazyUnmount(mnt) })
			out, err := run(t, 30*time.Second, bin, p, mnt, "--verity=off")
			if err != nil {
				if _, ok := err.(*exec.ExitError); !ok || strings.TrimSpace(out) == "" {
					t.Errorf("%s: refused without a message, or not cleanly: %v\n%s", p, err, out)
				}
				refused++
				continue
			}
			served++
			withWatchdog(t, mnt, 30*time.Second, func() { takeSnapshot(t, mnt) })
			var st unix.Stat_t
			if err := unix.Stat(mnt, &st); err != nil || mountedType(mnt) != "fuse.composefs-fuse" {
				t.Errorf("%s (image %d): the mount died serving damage: %v", p, i, err)
			}
			lazyUnmount(mnt)
		}
	}
	t.Logf("%d damaged images refused at mount, %d served", refused, served)

	// Images that cannot be served at all are refused with a message.
	orig, err := os.ReadFile(images[0])
	if err != nil {
		t.Fatal(err)
	}
	badMagic := append([]byte(nil), orig...)
	badMagic[1024] ^= 0xff
	for name, data := range map[string][]byte{
		"empty":        nil,
		"truncated":    orig[:1100],
		"bad-magic":    badMagic,
		"not-an-image": []byte(strings.Repeat("composefs ", 500)),
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		mnt := tempDir(t, "mnt-"+name)
		out, err := tryFuseMount(t, p, mnt)
		if _, ok := err.(*exec.ExitError); !ok || !strings.Contains(out, "composefs-fuse:") {
			t.Errorf("%s image: want exit status 1 with a message, got %v\n%s", name, err, out)
		}
		if typ := mountedType(mnt); typ != "" {
			t.Errorf("%s image left a %s mount", name, typ)
		}
	}
}
