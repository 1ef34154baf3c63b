package dumpfile

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestWriteLines(t *testing.T) {
	digest := strings.Repeat("0f", 32)
	cases := []struct {
		e    Entry
		want string
	}{
		{Entry{Path: "/", Size: 4096, Mode: 0o40755, Nlink: 2, Mtime: Timespec{1695372970, 944925700}},
			"/ 4096 40755 2 0 0 0 1695372970.944925700 - - -\n"},
		{Entry{Path: "/a dir\t=\\", Mode: 0o40700, Nlink: 2, UID: 5, GID: 6, Mtime: Timespec{999, 123}},
			`/a\x20dir\t=\\ 0 40700 2 5 6 0 999.123 - - -` + "\n"},
		{Entry{Path: "/-", Size: 1, Mode: 0o100644, Nlink: 1, Payload: "-", Content: []byte("-"), Digest: digest},
			"/- 1 100644 1 0 0 0 0.0 \\x2d \\x2d " + digest + "\n"},
		{Entry{Path: "/x", Mode: 0o100644, Nlink: 1, Mtime: Timespec{-1, 0}, Xattrs: []Xattr{
			{"user.a=b", []byte("=-")}, {"user.e", nil}, {"user.dash", []byte("-")}, {"security.selinux", []byte("s0\x00")}}},
			`/x 0 100644 1 0 0 0 -1.0 - - - user.a\x3db=\x3d- user.e= user.dash=- security.selinux=s0\x00` + "\n"},
		{Entry{Path: "/hl", Size: 4096, Mode: 0o100644, Nlink: 2, Hardlink: "/a b", Payload: "ignored", Digest: digest},
			`/hl 4096 @100644 2 0 0 0 0.0 /a\x20b - ` + digest + "\n"},
		{Entry{Path: "/lnk", Size: 7, Mode: 0o120777, Nlink: 1, Payload: "/target"},
			"/lnk 7 120777 1 0 0 0 0.0 /target - -\n"},
		{Entry{Path: "/dev", Mode: 0o20644, Nlink: 1, Rdev: 1<<40 | 259},
			"/dev 0 20644 1 0 0 1099511628035 0.0 - - -\n"},
		{Entry{Path: "/empty", Mode: 0o100644, Nlink: 1, Content: []byte{}},
			"/empty 0 100644 1 0 0 0 0.0 - - -\n"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		if err := Write(&buf, &c.e); err != nil {
			t.Fatal(err)
		}
		if buf.String() != c.want {
			t.Errorf("Write(%+v):\n got  %q\n want %q", c.e, buf.String(), c.want)
		}
	}
}

func TestWriteRefusesBadDigest(t *testing.T) {
	for _, d := range []string{"abc", strings.Repeat("A", 64), strings.Repeat("g", 64), strings.Repeat("a", 63)} {
		if err := Write(&bytes.Buffer{}, &Entry{Path: "/f", Mode: 0o100644, Digest: d}); err == nil {
			t.Errorf("digest %q accepted", d)
		}
	}
	if err := Write(&bytes.Buffer{}, &Entry{Mode: 0o100644}); err == nil {
		t.Error("entry without path accepted")
	}
}

// TestRoundTripEntries: entries in the parser's normal form survive
// Write then ParseAll unchanged, whatever bytes they hold.
func TestRoundTripEntries(t *testing.T) {
	var all []byte
	for i := 1; i < 256; i++ {
		if i != '/' {
			all = append(all, byte(i))
		}
	}
	entries := []Entry{
		{Path: "/", Size: 4096, Mode: 0o40755, Nlink: 3, Mtime: Timespec{1, 2}, Xattrs: []Xattr{{Name: "user.all" + string(all[:100]), Value: append([]byte{0}, all...)}}},
		{Path: "/" + string(all[:200]), Mode: 0o40700, Nlink: 2},
		{Path: "/" + string(all[:200]) + "/" + string(all[200:]), Size: 253, Mode: 0o100644, Nlink: 2, Content: all[1:]},
		{Path: "/ext", Size: 1 << 40, Mode: 0o100600, Nlink: 1, UID: 1 << 31, GID: 65536, Payload: "ab/" + string(all[:60]), Digest: strings.Repeat("e", 128)},
		{Path: "/hl", Size: 1 << 40, Mode: 0o100600, Nlink: 1, Hardlink: "/ext", Digest: strings.Repeat("e", 128)},
		{Path: "/sym", Size: 4, Mode: 0o120777, Nlink: 1, Payload: "-x -"},
		{Path: "/wh", Mode: 0o20000, Nlink: 1, Mtime: Timespec{-5, 999999999}},
	}
	var buf bytes.Buffer
	if err := WriteAll(&buf, entries); err != nil {
		t.Fatal(err)
	}
	got, err := ParseAll(bytes.NewReader(buf.Bytes()), ParseOptions{Strict: true})
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.Bytes())
	}
	if !reflect.DeepEqual(got, entries) {
		t.Fatalf("round trip differs:\n got  %+v\n want %+v", got, entries)
	}
}
