package dirscan

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/verity"
)

// TestGoldenTreeImages: Scan then erofs.Write give C mkcomposefs' image,
// byte for byte (same fs-verity digest), under each option trees.tsv lists.
func TestGoldenTreeImages(t *testing.T) {
	root := extractGoldenTree(t)
	f, err := os.Open(filepath.Join("..", "..", "shared", "golden", "c", "trees", "trees.tsv"))
	if err != nil {
		t.Skipf("trees.tsv: %v", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 3 || strings.HasPrefix(cols[0], "#") || cols[0] != "tree-501" {
			continue
		}
		flag, want := cols[1], cols[2]
		// mkcomposefs always computes digests for a directory source.
		opts := Options{ComputeDigest: true}
		wo := erofs.WriteOptions{MinVersion: 0, MaxVersion: 1}
		switch flag {
		case "-":
		case "--use-epoch":
			opts.UseEpoch = true
		case "--skip-xattrs":
			opts.SkipXattrs = true
		case "--user-xattrs":
			opts.UserXattrs = true
		case "--skip-devices":
			opts.SkipDevices = true
		case "--min-version=1":
			wo.MinVersion = 1
		case "--max-version=0":
			wo.MaxVersion = 0
		default:
			t.Errorf("unknown option %q in trees.tsv", flag)
			continue
		}
		entries, err := Scan(root, opts)
		if err != nil {
			t.Fatalf("%s: %v", flag, err)
		}
		var img bytes.Buffer
		if err := erofs.Write(&img, entries, wo); err != nil {
			t.Fatalf("%s: %v", flag, err)
		}
		if got := hex.EncodeToString(verity.DigestBytes(verity.SHA256, img.Bytes())); got != want {
			t.Errorf("%s: image digest %s, C's %s", flag, got, want)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no tree-501 rows in trees.tsv")
	}
}
