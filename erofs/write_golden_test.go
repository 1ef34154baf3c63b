package erofs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/internal/golden"
	"github.com/composefs/composefs-go/verity"
)

// optionsFromArgs maps mkcomposefs' version flags as the tool does: with
// no flag min 0 and max 1; a flag given alone leaves the other at 0.
func optionsFromArgs(t testing.TB, args string) WriteOptions {
	t.Helper()
	if args == "-" || args == "" {
		return WriteOptions{MinVersion: 0, MaxVersion: 1}
	}
	var o WriteOptions
	for _, a := range strings.Fields(args) {
		k, v, ok := strings.Cut(a, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			t.Fatalf("unexpected argument %q", a)
		}
		switch k {
		case "--min-version":
			o.MinVersion = n
		case "--max-version":
			o.MaxVersion = n
		default:
			t.Fatalf("unexpected argument %q", a)
		}
	}
	return o
}

func writeImage(t testing.TB, entries []dumpfile.Entry, opts WriteOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, entries, opts); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

type manifestRow struct {
	name, variant, args string
	strict              bool
	imageSHA, verity    string
}

func readManifest(t testing.TB) []manifestRow {
	t.Helper()
	f, err := os.Open(filepath.Join(golden.Dir(t), "c", "manifest.tsv"))
	if err != nil {
		t.Skipf("manifest: %v", err)
	}
	defer f.Close()
	var rows []manifestRow
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "#") || s.Text() == "" {
			continue
		}
		c := strings.Split(s.Text(), "\t")
		if len(c) < 6 {
			t.Fatalf("manifest row %q", s.Text())
		}
		rows = append(rows, manifestRow{c[0], c[1], c[2], c[3] == "1", c[4], c[5]})
	}
	return rows
}

// TestWriteGoldenManifest: every C image of the manifest, byte for byte, and
// fsck.erofs accepts each.
func TestWriteGoldenManifest(t *testing.T) {
	rows := readManifest(t)
	fsck := fsckPath(t)
	parsed := map[string][]dumpfile.Entry{}
	ok := 0
	for _, r := range rows {
		t.Run(r.name+"/"+r.variant, func(t *testing.T) {
			key := r.name + strconv.FormatBool(r.strict)
			entries, have := parsed[key]
			if !have {
				var err error
				entries, err = dumpfile.ParseAll(bytes.NewReader(golden.Dump(t, r.name)), dumpfile.ParseOptions{Strict: r.strict})
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				parsed[key] = entries
			}
			img := writeImage(t, entries, optionsFromArgs(t, r.args))
			sum := sha256.Sum256(img)
			if got := hex.EncodeToString(sum[:]); got != r.imageSHA {
				t.Errorf("image sha256 %s, want %s", got, r.imageSHA)
				return
			}
			if got := hex.EncodeToString(verity.DigestBytes(verity.SHA256, img)); got != r.verity {
				t.Errorf("fs-verity digest %s, want %s", got, r.verity)
				return
			}
			fsckImage(t, fsck, img)
			ok++
		})
	}
	t.Logf("%d of %d manifest rows reproduced", ok, len(rows))
	if ok != len(rows) {
		t.Errorf("%d of %d manifest rows reproduced", ok, len(rows))
	}
}

// TestWritePinnedDigests: the image digests composefs-rs pins in its tests,
// for versions 0 and 1 (C's layout) and 2 (its own); fsck.erofs accepts
// each image.
func TestWritePinnedDigests(t *testing.T) {
	fsck := fsckPath(t)
	f, err := os.Open(filepath.Join(golden.Dir(t), "rs", "pinned.tsv"))
	if err != nil {
		t.Skipf("pinned.tsv: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	rows, ok := 0, 0
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "#") || s.Text() == "" {
			continue
		}
		c := strings.Split(s.Text(), "\t")
		if len(c) != 3 {
			t.Fatalf("pinned row %q", s.Text())
		}
		v, err := strconv.Atoi(c[1])
		if err != nil {
			t.Fatal(err)
		}
		rows++
		t.Run(c[0]+"/v"+c[1], func(t *testing.T) {
			entries, err := dumpfile.ParseAll(bytes.NewReader(golden.Dump(t, c[0])), dumpfile.ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			img := writeImage(t, entries, WriteOptions{MinVersion: v, MaxVersion: v})
			if got := hex.EncodeToString(verity.DigestBytes(verity.SHA256, img)); got != c[2] {
				t.Errorf("digest %s, want %s", got, c[2])
				return
			}
			if v == 2 {
				want, err := os.ReadFile(filepath.Join(golden.Dir(t), "rs", c[0]+".v2.cfs"))
				if err == nil && !bytes.Equal(img, want) {
					t.Errorf("bytes differ from %s.v2.cfs", c[0])
					return
				}
			}
			fsckImage(t, fsck, img)
			ok++
		})
	}
	t.Logf("%d of %d pinned digests reproduced", ok, rows)
	if ok != rows {
		t.Errorf("%d of %d pinned digests reproduced", ok, rows)
	}
}
