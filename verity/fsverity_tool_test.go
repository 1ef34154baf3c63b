package verity

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fsverityTool returns the path of fsverity-utils' `fsverity`, skipping the
// test when it is not installed. It computes digests in userspace, so it
// needs no fs-verity support from the kernel or the file system.
func fsverityTool(t *testing.T) string {
	t.Helper()
	tool, err := exec.LookPath("fsverity")
	if err != nil {
		t.Skip("fsverity tool not installed (Debian package fsverity: apt-get install -y fsverity)")
	}
	return tool
}

// toolDigests returns what `fsverity digest` prints for each of paths, in
// their order, with composefs' parameters (4096-byte blocks, no salt).
func toolDigests(t *testing.T, tool string, alg Algorithm, paths []string) [][]byte {
	t.Helper()
	args := append([]string{"digest", "--hash-alg=" + alg.String(), "--block-size=4096"}, paths...)
	out, err := exec.Command(tool, args...).Output()
	if err != nil {
		t.Fatalf("fsverity digest: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(paths) {
		t.Fatalf("fsverity printed %d lines for %d files", len(lines), len(paths))
	}
	digests := make([][]byte, len(paths))
	for i, line := range lines {
		// "sha256:HEX PATH"
		digest, path, ok := strings.Cut(line, " ")
		hexd, found := strings.CutPrefix(digest, alg.String()+":")
		if !ok || !found || path != paths[i] {
			t.Fatalf("unexpected fsverity output %q", line)
		}
		d, err := hex.DecodeString(hexd)
		if err != nil || len(d) != alg.Size() {
			t.Fatalf("unexpected fsverity digest %q", line)
		}
		digests[i] = d
	}
	return digests
}

// TestAgreesWithFsverityTool hashes random files of random sizes with
// fsverity-utils' `fsverity digest` and with DigestPath.
func TestAgreesWithFsverityTool(t *testing.T) {
	tool := fsverityTool(t)
	rng := rand.New(rand.NewPCG(42, uint64(os.Getpid())))
	src := rand.NewChaCha8([32]byte{byte(rng.Uint32())})
	dir := t.TempDir()
	const files = 24
	var paths []string
	for i := range files {
		var n int
		switch i % 3 {
		case 0:
			n = rng.IntN(64 << 10)
		case 1:
			n = rng.IntN(2 << 20)
		default:
			// Near a block or tree-level boundary.
			n = []int{4096, 128 * 4096, 64 * 4096, 3 * 64 * 4096}[rng.IntN(4)] + rng.IntN(3) - 1
		}
		data := make([]byte, n)
		src.Read(data)
		p := filepath.Join(dir, "f"+strconv.Itoa(i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	agreed := 0
	for _, alg := range algorithms {
		for i, want := range toolDigests(t, tool, alg, paths) {
			got, err := DigestPath(alg, paths[i])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				fi, _ := os.Stat(paths[i])
				t.Errorf("%s size %d: got %x, fsverity says %x", alg, fi.Size(), got, want)
				continue
			}
			agreed++
		}
	}
	t.Logf("%d of %d digests agree with fsverity digest", agreed, 2*files)
}

// TestSmallSizesAgreeWithFsverityTool: the empty file (no Merkle tree
// block, an all-zero root hash in a descriptor that is still hashed), one
// byte, one block and one block and a byte, through every way this package
// digests content, against `fsverity digest`.
func TestSmallSizesAgreeWithFsverityTool(t *testing.T) {
	tool := fsverityTool(t)
	dir := t.TempDir()
	sizes := []int{0, 1, 4096, 4097}
	var paths []string
	contents := make([][]byte, len(sizes))
	for i, n := range sizes {
		contents[i] = mod251(int64(n))
		p := filepath.Join(dir, "size-"+strconv.Itoa(n))
		if err := os.WriteFile(p, contents[i], 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	cache := NewCache()
	for _, alg := range algorithms {
		for i, want := range toolDigests(t, tool, alg, paths) {
			f, err := os.Open(paths[i])
			if err != nil {
				t.Fatal(err)
			}
			h := NewHasher(alg)
			h.Write(contents[i])
			got := map[string][]byte{
				"DigestBytes": DigestBytes(alg, contents[i]),
				"Hasher.Sum":  h.Sum(),
			}
			got["DigestPath"], err = DigestPath(alg, paths[i])
			if err != nil {
				t.Fatal(err)
			}
			got["DigestFile"], err = DigestFile(alg, f)
			if err != nil {
				t.Fatal(err)
			}
			got["DigestReader"], err = DigestReader(alg, bytes.NewReader(contents[i]))
			if err != nil {
				t.Fatal(err)
			}
			got["Cache.Digest"], err = cache.Digest(f, alg)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			for how, d := range got {
				if !bytes.Equal(d, want) {
					t.Errorf("%s size %d: %s gives %x, fsverity says %x", alg, sizes[i], how, d, want)
				}
			}
		}
	}
}
