package verity

import (
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestAgreesWithFsverityTool hashes random files of random sizes with
// fsverity-utils' `fsverity digest` and with DigestPath.
func TestAgreesWithFsverityTool(t *testing.T) {
	tool, err := exec.LookPath("fsverity")
	if err != nil {
		t.Skip("fsverity tool not installed (Debian package fsverity: apt-get install -y fsverity)")
	}
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
		args := append([]string{"digest", "--hash-alg=" + alg.String(), "--block-size=4096"}, paths...)
		out, err := exec.Command(tool, args...).Output()
		if err != nil {
			t.Fatalf("fsverity digest: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != len(paths) {
			t.Fatalf("fsverity printed %d lines for %d files", len(lines), len(paths))
		}
		for i, line := range lines {
			// "sha256:HEX PATH"
			digest, path, ok := strings.Cut(line, " ")
			hexd, found := strings.CutPrefix(digest, alg.String()+":")
			if !ok || !found || path != paths[i] {
				t.Fatalf("unexpected fsverity output %q", line)
			}
			want, err := hex.DecodeString(hexd)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DigestPath(alg, path)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != hexd {
				fi, _ := os.Stat(path)
				t.Errorf("%s size %d: got %x, fsverity says %x", alg, fi.Size(), got, want)
				continue
			}
			agreed++
		}
	}
	t.Logf("%d of %d digests agree with fsverity digest", agreed, 2*files)
}
