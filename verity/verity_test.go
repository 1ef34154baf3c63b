package verity

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"github.com/composefs/composefs-go/internal/golden"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type vector struct {
	name   string
	size   int64
	sha256 []byte
	sha512 []byte
}

func (v vector) want(alg Algorithm) []byte {
	if alg == SHA512 {
		return v.sha512
	}
	return v.sha256
}

func (v vector) content() []byte {
	if v.name == "hello-world" {
		return []byte("hello world")
	}
	return mod251(v.size)
}

func mod251(n int64) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func readVectors(t testing.TB) []vector {
	t.Helper()
	path := filepath.Join(golden.Dir(t), "verity", "vectors.tsv")
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("fs-verity vectors not found: %v", err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) != 4 {
			t.Fatalf("%s: bad row %q", path, line)
		}
		size, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			t.Fatalf("%s: bad size in %q", path, line)
		}
		s256, err1 := hex.DecodeString(fields[2])
		s512, err2 := hex.DecodeString(fields[3])
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: bad digest in %q", path, line)
		}
		vs = append(vs, vector{fields[0], size, s256, s512})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatalf("%s: no vectors", path)
	}
	return vs
}

var algorithms = []Algorithm{SHA256, SHA512}

// TestVectors reproduces every golden digest through every entry point:
// DigestBytes, the streaming Hasher in odd-sized writes, DigestReader, and
// the file path with 1, 2 and 7 workers.
func TestVectors(t *testing.T) {
	vs := readVectors(t)
	dir := t.TempDir()
	reproduced := 0
	for _, v := range vs {
		data := v.content()
		path := filepath.Join(dir, v.name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, alg := range algorithms {
			want := v.want(alg)
			check := func(how string, got []byte) {
				t.Helper()
				if !bytes.Equal(got, want) {
					t.Errorf("%s %s via %s: got %x, want %x", v.name, alg, how, got, want)
				}
			}
			check("DigestBytes", DigestBytes(alg, data))

			// Odd-sized writes; the largest rows skip this to keep the test quick.
			if len(data) <= 16<<20 {
				h := NewHasher(alg)
				for rest, step := data, 1; len(rest) > 0; step = step*3 + 1 {
					n := min(step, len(rest))
					h.Write(rest[:n])
					rest = rest[n:]
				}
				check("Hasher", h.Sum())
			}

			got, err := DigestReader(alg, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			check("DigestReader", got)

			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []int{1, 2, 7} {
				got, _, err := computeSized(context.Background(), alg, f, int64(len(data)), w, false)
				if err != nil {
					t.Fatal(err)
				}
				check("computeSized/"+strconv.Itoa(w), got)
			}
			got, err = DigestFile(alg, f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			check("DigestFile", got)
			if len(data) <= 16<<20 {
				got, err = DigestPath(alg, path)
				if err != nil {
					t.Fatal(err)
				}
				check("DigestPath", got)
			}
			if !t.Failed() {
				reproduced++
			}
		}
	}
	t.Logf("reproduced %d of %d vector digests (%d rows × 2 algorithms)", reproduced, 2*len(vs), len(vs))
}
