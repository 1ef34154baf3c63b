package erofs

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
)

// TestGoldenDump: our dump of every C image equals C composefs-info's, but
// for the redirects C garbles (payload length a multiple of 4 with its "/").
func TestGoldenDump(t *testing.T) {
	imgs, _ := goldenImages(t)
	d := goldenDir(t)
	garbled := 0
	for _, path := range imgs {
		name := imageName(path)
		t.Run(name, func(t *testing.T) {
			im := openGolden(t, path)
			got := dumpImage(t, im)
			want := readGz(t, filepath.Join(d, "c", "info", name+".dump.gz"))
			if bytes.Equal(got, want) {
				return
			}
			gl := strings.Split(string(got), "\n")
			wl := strings.Split(string(want), "\n")
			if len(gl) != len(wl) {
				t.Fatalf("%d lines, C has %d\n%s", len(gl), len(wl), got)
			}
			for i := range gl {
				if gl[i] == wl[i] {
					continue
				}
				gf, wf := strings.Split(gl[i], " "), strings.Split(wl[i], " ")
				if len(gf) != len(wf) || len(gf) < 9 {
					t.Fatalf("line %d:\n got %s\nwant %s", i+1, gl[i], wl[i])
				}
				for j := range gf {
					if j != 8 && gf[j] != wf[j] {
						t.Fatalf("line %d field %d:\n got %s\nwant %s", i+1, j, gl[i], wl[i])
					}
				}
				checkGarbledRedirect(t, im, gf[0], gf[8], wf[8])
				garbled++
			}
		})
	}
	t.Logf("%d images, %d garbled C redirects checked against the image bytes", len(imgs), garbled)
}

// checkGarbledRedirect: C printed the payload plus one byte past the value;
// ours must be the stored value without its "/", of a length C garbles.
func checkGarbledRedirect(t *testing.T, im *Image, escPath, ours, theirs string) {
	t.Helper()
	p, err := dumpfile.Unescape(escPath)
	if err != nil {
		t.Fatal(err)
	}
	in := lookupPath(t, im, string(p))
	v, ok, err := im.GetXattr(&in, OverlayRedirect)
	if err != nil || !ok {
		t.Fatalf("%s: payload differs from C but no redirect xattr (%v)", escPath, err)
	}
	if len(v)%4 != 0 || v[0] != '/' {
		t.Fatalf("%s: redirect %q is not one C garbles", escPath, v)
	}
	if dumpfile.Escape(string(v[1:])) != ours {
		t.Fatalf("%s: payload %s, image holds %q", escPath, ours, v)
	}
	if !strings.HasPrefix(theirs, ours) {
		t.Fatalf("%s: C payload %s does not extend ours %s", escPath, theirs, ours)
	}
}

func lookupPath(t testing.TB, im *Image, p string) Inode {
	t.Helper()
	in, err := im.Inode(im.RootNid())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range strings.Split(strings.Trim(p, "/"), "/") {
		if c == "" {
			continue
		}
		nid, _, err := im.Lookup(&in, c)
		if err != nil {
			t.Fatalf("%s: lookup %q: %v", p, c, err)
		}
		if in, err = im.Inode(nid); err != nil {
			t.Fatal(err)
		}
	}
	return in
}
