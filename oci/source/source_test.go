package source

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Reference
	}{
		{"docker://127.0.0.1:5000/a/b:v1", Reference{Docker, "127.0.0.1:5000/a/b:v1", ""}},
		{"docker://quay.io/x/y@sha256:" + strings.Repeat("ab", 32), Reference{Docker, "quay.io/x/y@sha256:" + strings.Repeat("ab", 32), ""}},
		{"docker://alpine", Reference{Docker, "alpine", ""}},
		{"oci:/tmp/layout", Reference{OCI, "/tmp/layout", ""}},
		{"oci:layout:v1.0", Reference{OCI, "layout", "v1.0"}},
		{"oci:layout:reg.io/x:tag", Reference{OCI, "layout", "reg.io/x:tag"}},
		{"oci-archive:/a/b.tar:latest", Reference{OCIArchive, "/a/b.tar", "latest"}},
		{"docker-archive:img.tar", Reference{DockerArchive, "img.tar", ""}},
		{"docker-archive:img.tar:busybox:1", Reference{DockerArchive, "img.tar", "busybox:1"}},
	} {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if s := got.String(); s != c.in {
			t.Errorf("Parse(%q).String() = %q", c.in, s)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, says string }{
		{"/tmp/layout", "no transport"},
		{"docker:alpine", "must be followed by //"},
		{"docker://", "docker://"},
		{"docker://UPPER/x", "UPPER"},
		{"http://x/y", `unknown transport "http"`},
		{"containers-storage:alpine", "not supported"},
		{"oci:", "no path"},
		{"oci::ref", "no path"},
		{"oci:dir:", "empty reference"},
		{"oci:dir:a b", "characters other than"},
		{"docker-archive:f.tar:Bad Name", "docker-archive"},
	} {
		_, err := Parse(c.in)
		if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q): error %v, want one line saying %q", c.in, err, c.says)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts it prints back as a
// SOURCE that parses to the same reference.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"docker://a.io/b/c:d", "docker://x@sha256:" + strings.Repeat("0", 64),
		"oci:d:r", "oci-archive:f", "docker-archive:f:n:t", "x:", ":", "oci:a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q): error %v is not ErrSyntax", s, err)
			}
			return
		}
		again, err := Parse(r.String())
		if err != nil || again != r {
			t.Fatalf("Parse(%q) = %+v; its String %q parses to %+v, %v", s, r, r.String(), again, err)
		}
	})
}
