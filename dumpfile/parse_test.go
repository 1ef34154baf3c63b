package dumpfile

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

const rootLine = "/ 4096 40755 2 0 0 0 0.0 - - -\n"

func parseOne(t *testing.T, line string, opts ParseOptions) *Entry {
	t.Helper()
	entries, err := ParseAll(strings.NewReader(rootLine+line), opts)
	if err != nil {
		t.Fatalf("ParseAll(%q): %v", line, err)
	}
	if len(entries) != 2 {
		t.Fatalf("got %d entries, want 2", len(entries))
	}
	return &entries[1]
}

func TestParseFields(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	e := parseOne(t, "/a\\x20b 259 100644 3 1000 1001 0 1695368732.385062094 35/d02f - "+strings.ToUpper(digest)+" security.selinux=x\\x00 user.k\\x3dy=v=w user.e=\n", ParseOptions{})
	want := &Entry{
		Path:    "/a b",
		Size:    259,
		Mode:    0o100644,
		Nlink:   3,
		UID:     1000,
		GID:     1001,
		Mtime:   Timespec{Sec: 1695368732, Nsec: 385062094},
		Payload: "35/d02f",
		Digest:  digest,
		Xattrs: []Xattr{
			{Name: "security.selinux", Value: []byte("x\x00")},
			{Name: "user.k=y", Value: []byte("v=w")},
			{Name: "user.e", Value: []byte{}},
		},
	}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("got  %+v\nwant %+v", e, want)
	}
}

func TestParseTypes(t *testing.T) {
	cases := []struct {
		line string
		want Entry
	}{
		{"/inl 5 100600 1 0 0 0 1.5 - hello -",
			Entry{Path: "/inl", Size: 5, Mode: 0o100600, Nlink: 1, Mtime: Timespec{1, 5}, Content: []byte("hello")}},
		{"/dash 1 100600 1 0 0 0 0.0 \\x2d \\x2d -",
			Entry{Path: "/dash", Size: 1, Mode: 0o100600, Nlink: 1, Payload: "-", Content: []byte("-")}},
		// An empty CONTENT field is empty content: no content at all.
		{"/empty 0 100600 1 0 0 0 0.0 -  -",
			Entry{Path: "/empty", Mode: 0o100600, Nlink: 1}},
		// C ignores a symlink's SIZE and CONTENT outside strict mode.
		{"/lnk 3 120777 1 0 0 0 0.0 /target xyz -",
			Entry{Path: "/lnk", Size: 7, Mode: 0o120777, Nlink: 1, Payload: "/target"}},
		// RDEV is kept only for devices.
		{"/fifo 0 10644 1 0 0 7 0.0 - - -",
			Entry{Path: "/fifo", Mode: 0o10644, Nlink: 1}},
		{"/cdev 0 20644 1 0 0 259 0.0 - - -",
			Entry{Path: "/cdev", Mode: 0o20644, Nlink: 1, Rdev: 259}},
		{"/bdev 0 60600 1 0 0 2049 0.0 - - -",
			Entry{Path: "/bdev", Mode: 0o60600, Nlink: 1, Rdev: 2049}},
		{"/sock 0 140755 1 0 0 0 0.0 - - -",
			Entry{Path: "/sock", Mode: 0o140755, Nlink: 1}},
		// Negative seconds and large nanoseconds as C keeps them.
		{"/old 0 100644 1 0 0 0 -1.999999999 - - -",
			Entry{Path: "/old", Mode: 0o100644, Nlink: 1, Mtime: Timespec{-1, 999999999}}},
		// Mode bits beyond 16 are kept (C keeps them until the writer).
		{"/odd 0 1020644 1 0 0 0 0.0 - - -",
			Entry{Path: "/odd", Mode: 0o1020644, Nlink: 1}},
		// C finds parents by names, skipping repeated '/'.
		{"a//x 0 100644 1 4294967295 0 18446744073709551615 0.0 - - -",
			Entry{Path: "/a/x", Mode: 0o100644, Nlink: 1, UID: 4294967295}},
		// A repeated xattr replaces the earlier one, where C puts it.
		{"/x 0 100644 1 0 0 0 0.0 - - - a=1 b=2 c=3 a=4",
			Entry{Path: "/x", Mode: 0o100644, Nlink: 1, Xattrs: []Xattr{{"c", []byte("3")}, {"b", []byte("2")}, {"a", []byte("4")}}}},
		// A trailing space ends the xattrs.
		{"/y 0 100644 1 0 0 0 0.0 - - - a=1 ",
			Entry{Path: "/y", Mode: 0o100644, Nlink: 1, Xattrs: []Xattr{{"a", []byte("1")}}}},
		// A line cut short after PAYLOAD: empty CONTENT and DIGEST.
		{"/short 0 100644 1 0 0 0 0.0 -",
			Entry{Path: "/short", Mode: 0o100644, Nlink: 1}},
	}
	for _, c := range cases {
		var e *Entry
		if strings.HasPrefix(c.line, "a//") {
			entries, err := ParseAll(strings.NewReader(rootLine+"/a 0 40755 2 0 0 0 0.0 - - -\n"+c.line+"\n"), ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			e = &entries[2]
		} else {
			e = parseOne(t, c.line+"\n", ParseOptions{})
		}
		if !reflect.DeepEqual(*e, c.want) {
			t.Errorf("%q:\n got  %+v\n want %+v", c.line, *e, c.want)
		}
	}
}

func TestParseHardlinks(t *testing.T) {
	in := rootLine +
		"/a/hl 4096 @100644 2 7 8 0 1000.5 /a//f - " + strings.Repeat("0", 64) + " user.x=1\n" + // forward reference
		"/a 0 40755 2 0 0 0 0.0 - - -\n" +
		"/a/f 4096 100644 2 0 0 0 0.0 ab/cd - -\n" +
		"/a/junk x @100644 - - - - - /a/f/ - garbage %%\n" + // C ignores all but the target
		"/a/chain 0 @100644 1 0 0 0 0.0 /a/hl - -\n"
	// The first line's parent comes later: that alone is an error.
	if _, err := ParseAll(strings.NewReader(in), ParseOptions{}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("want a missing-parent error on line 2, got %v", err)
	}
	lines := strings.SplitAfter(in, "\n")
	in = lines[0] + lines[2] + lines[1] + lines[3] + lines[4] + lines[5]
	entries, err := ParseAll(strings.NewReader(in), ParseOptions{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	hl := entries[2]
	want := Entry{Path: "/a/hl", Size: 4096, Mode: 0o100644, Nlink: 2, UID: 7, GID: 8, Mtime: Timespec{1000, 5},
		Hardlink: "/a/f", Digest: strings.Repeat("0", 64), Xattrs: []Xattr{{"user.x", []byte("1")}}}
	if !reflect.DeepEqual(hl, want) {
		t.Errorf("hardlink:\n got  %+v\n want %+v", hl, want)
	}
	junk := entries[4]
	if junk.Hardlink != "/a/f" || junk.Size != 0 || junk.Nlink != 0 || junk.Xattrs != nil || junk.Digest != "" {
		t.Errorf("hardlink with garbage fields: %+v", junk)
	}
	byPath := map[string]*Entry{}
	for i := range entries {
		byPath[entries[i].Path] = &entries[i]
	}
	target, err := Resolve(byPath, &entries[5])
	if err != nil || target.Path != "/a/f" {
		t.Errorf("Resolve(/a/chain) = %v, %v", target, err)
	}
}

// TestParseErrors: each bad line is refused with its line number and reason.
func TestParseErrors(t *testing.T) {
	digest := strings.Repeat("a", 64)
	cases := []struct {
		in     string
		strict bool
		line   int
		reason string
	}{
		{"", false, 0, "needs a root"},
		{"\n", false, 1, "invalid empty path"},
		{"/a 0 100644 1 0 0 0 0.0 - - -\n", false, 1, "root directory not present"},
		{"/ 0 100644 1 0 0 0 0.0 - - -\n", false, 1, "root must be a directory"},
		{rootLine + rootLine, false, 2, "multiple roots"},
		{rootLine + "/a/b 0 100644 1 0 0 0 0.0 - - -\n", false, 2, "parent directory /a missing"},
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - -\n/f/b 0 100644 1 0 0 0 0.0 - - -\n", false, 3, "parent /f is not a directory"},
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - -\n/f 0 100644 1 0 0 0 0.0 - - -\n", false, 3, "already exists (line 2)"},
		{rootLine + "/f\x00 0 100644 1 0 0 0 0.0 - - -\n", false, 2, "embedded NUL character at position 2"},
		{rootLine + "/f\\x00 0 100644 1 0 0 0 0.0 - - -\n", false, 2, "embedded NUL"},
		{rootLine + "/f\\q 0 100644 1 0 0 0 0.0 - - -\n", false, 2, "unsupported escape"},
		{rootLine + "/" + strings.Repeat("n", 256) + " 0 100644 1 0 0 0 0.0 - - -\n", false, 2, "exceeds maximum 255"},
		{rootLine + "/" + strings.Repeat("n", 255) + " 0 100644 1 0 0 0 0.0 - - -\n", false, 0, ""},
		{rootLine + "/a/./b 0 100644 1 0 0 0 0.0 - - -\n", false, 2, "invalid . or .."},
		{rootLine + "/a/ 0 40755 1 0 0 0 0.0 - - -\n", false, 2, "invalid empty file name"},
		{rootLine + "/f x 100644 1 0 0 0 0.0 - - -\n", false, 2, "size: invalid integer"},
		{rootLine + "/f 0 100648 1 0 0 0 0.0 - - -\n", false, 2, "mode: invalid integer"},
		{rootLine + "/f 0 170644 1 0 0 0 0.0 - - -\n", false, 2, "unknown file type"},
		{rootLine + "/f 0 100644 -1 0 0 0 0.0 - - -\n", false, 2, "nlink: invalid integer"},
		{rootLine + "/f 0 100644 1 4294967296 0 0 0.0 - - -\n", false, 2, "uid: integer \"4294967296\" out of range"},
		{rootLine + "/f 0 100644 1 0 +1 0 0.0 - - -\n", false, 2, "gid: invalid integer"},
		{rootLine + "/f 0 100644 1 0 0 18446744073709551616 0.0 - - -\n", false, 2, "rdev: integer"},
		{rootLine + "/f 0 100644 1 0 0 0 5 - - -\n", false, 2, "want SEC.NSEC"},
		{rootLine + "/f 0 100644 1 0 0 0 5.4294967296 - - -\n", false, 2, "mtime nanoseconds"},
		{rootLine + "/f 0 100644 1 0 0 0 9223372036854775808.0 - - -\n", false, 2, "mtime seconds"},
		{rootLine + "/f 3 100644 1 0 0 0 0.0 - ab -\n", false, 2, "invalid content size 2, must match size 3"},
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - abc\n", false, 2, "invalid digest"},
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - " + digest + "a\n", false, 2, "got 65 characters"},
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - " + strings.Repeat("g", 64) + "\n", false, 2, "not hexadecimal"},
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - - novalue\n", false, 2, "missing = in xattr"},
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - - a=1  b=2\n", false, 2, "missing = in xattr"},
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - - =1\n", false, 2, "empty xattr name"},
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - - a\\x00b=1\n", false, 2, "embedded NUL"},
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - - a=\\x\n", false, 2, "hex escape"},
		{rootLine + "/f 0 120777 1 0 0 0 0.0 - - -\n", false, 2, "empty target"},
		{rootLine + "/f 0 120777 1 0 0 0 0.0 a\\x00b - -\n", false, 2, "embedded NUL"},
		{rootLine + "/f 1 100644 1 0 0 0 0.0 " + strings.Repeat("p", 4096) + " - -\n", false, 2, "payload: length 4096 exceeds maximum 4095"},
		{rootLine + "/f 1 120777 1 0 0 0 0.0 " + strings.Repeat("p", 4095) + " - -\n", false, 0, ""},
		{rootLine + "/f 9007199254740993 100644 1 0 0 0 0.0 - - -\n", false, 2, "exceeds the maximum"},
		{rootLine + "/f 9007199254740992 100644 1 0 0 0 0.0 - - -\n", false, 0, ""},
		{rootLine + "/f 0 @40755 1 0 0 0 0.0 / - -\n", false, 2, "directories can't be hardlinked"},
		{rootLine + "/f 0 @100644 1 0 0 0 0.0 - - -\n", false, 2, "hardlink without a target"},
		{rootLine + "/f 0 @100644 1 0 0 0 0.0 /nope - -\n", false, 2, "no target at /nope"},
		{rootLine + "/f 0 @100644 1 0 0 0 0.0 / - -\n", false, 2, "hardlink to directory /"},
		{rootLine + "/f 0 @100644 1 0 0 0 0.0 /f - -\n", false, 2, "self-referential"},
		{rootLine + "/f 0 @100644 1 0 0 0 0.0 /g - -\n/g 0 @100644 1 0 0 0 0.0 /f - -\n", false, 2, "hardlink cycle"},
		{rootLine + "/f 0 @100644 1 0 0 0 0.0 /g - -\n/g 0 @100644 1 0 0 0 0.0 /h - -\n/h 0 @100644 1 0 0 0 0.0 /g - -\n", false, 2, "hardlink cycle"},
		// Strict mode.
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - -", false, 0, ""},
		{rootLine + "/f 0 100644 1 0 0 0 0.0 - - -", true, 2, "missing trailing newline"},
		{rootLine + "/f 0 10644 1 0 0 5 0.0 - - -\n", true, 2, "non-zero device number on a non-device"},
		{rootLine + "/f 4 120777 1 0 0 0 0.0 /ab - -\n", true, 2, "invalid symlink size 4, must match target length 3"},
		{rootLine + "/f 4 120777 1 0 0 0 0.0 /ab - -\n", false, 0, ""},
		{rootLine + "/f 4 120777 1 0 0 0 0.0 /abc abcd -\n", true, 2, "symlink cannot have content"},
	}
	for _, c := range cases {
		_, err := ParseAll(strings.NewReader(c.in), ParseOptions{Strict: c.strict})
		if c.reason == "" {
			if err != nil {
				t.Errorf("%.120q: unexpected error %v", c.in, err)
			}
			continue
		}
		var perr *ParseError
		if !errors.As(err, &perr) {
			t.Errorf("%.120q (strict=%v): got %v, want a ParseError", c.in, c.strict, err)
			continue
		}
		if perr.Line != c.line || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%.120q (strict=%v):\n got  %v\n want line %d, %q", c.in, c.strict, err, c.line, c.reason)
		}
	}
}

func TestXattrSpaceLimit(t *testing.T) {
	// One xattr: 12 header + 7 overhead + name + value must stay ≤ 32767.
	name := "user.a"
	fit := XattrSpaceMax - xattrHeaderSize - xattrEntryOverhead - len(name)
	line := func(n int) string {
		return "/f 0 100644 1 0 0 0 0.0 - - - " + name + "=" + strings.Repeat("v", n) + "\n"
	}
	parseOne(t, line(fit), ParseOptions{})
	if _, err := ParseAll(strings.NewReader(rootLine+line(fit+1)), ParseOptions{}); err == nil {
		t.Fatal("one byte over the xattr space accepted")
	}
	// Replacing a value frees its space first.
	big := strings.Repeat("v", fit-100)
	e := parseOne(t, "/f 0 100644 1 0 0 0 0.0 - - - "+name+"="+big+" "+name+"="+big+"\n", ParseOptions{})
	if len(e.Xattrs) != 1 {
		t.Fatalf("got %d xattrs", len(e.Xattrs))
	}
}

func TestParserStreaming(t *testing.T) {
	in := rootLine + "/a 0 100644 1 0 0 0 0.0 - - -\n/b 0 100644 1 0 0 0 0.0 - - -\n/c 0 1006 1 0 0 0 0.0 - - -\n"
	p := NewParser(iotest.OneByteReader(strings.NewReader(in)), ParseOptions{})
	var paths []string
	for {
		e, err := p.Next()
		if err != nil {
			var perr *ParseError
			if !errors.As(err, &perr) || perr.Line != 4 || perr.Path != "/c" {
				t.Fatalf("got %v, want an error on line 4 for /c", err)
			}
			break
		}
		paths = append(paths, e.Path)
	}
	if strings.Join(paths, ",") != "/,/a,/b" {
		t.Fatalf("paths %v", paths)
	}
	if _, err := p.Next(); err == nil {
		t.Fatal("Next after an error succeeded")
	}

	// Parse hands each entry to fn and stops at fn's error.
	stop := errors.New("stop")
	n := 0
	err := Parse(strings.NewReader(in), ParseOptions{}, func(e *Entry) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Fatalf("Parse: %v after %d entries", err, n)
	}

	// The parser reports reader errors as they are.
	bad := errors.New("disk on fire")
	p = NewParser(io.MultiReader(strings.NewReader(rootLine), iotest.ErrReader(bad)), ParseOptions{})
	if _, err := p.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Next(); err != bad {
		t.Fatalf("got %v, want the reader's error", err)
	}
}

func TestLongLines(t *testing.T) {
	// Lines longer than the reader's buffer are read whole.
	content := bytes.Repeat([]byte{0xff}, InlineContentMax)
	var line []byte
	line = append(line, "/f 5000 100644 1 0 0 0 0.0 - "...)
	line = appendEscaped(line, content, escapeLoneDash)
	line = append(line, " -\n"...)
	e := parseOne(t, string(line), ParseOptions{})
	if !bytes.Equal(e.Content, content) {
		t.Fatal("content differs")
	}
	// A line without end is refused, not buffered forever.
	huge := io.MultiReader(strings.NewReader(rootLine+"/x"), neverEnding('a'))
	_, err := ParseAll(io.LimitReader(huge, lineMax+1000), ParseOptions{})
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("got %v", err)
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func TestCheckXattrs(t *testing.T) {
	ok := []Xattr{{"user.a", []byte("1")}, {"security.selinux", nil}, {strings.Repeat("n", 255), make([]byte, 30000)}}
	if err := CheckXattrs(ok); err != nil {
		t.Fatal(err)
	}
	bad := map[string][]Xattr{
		"duplicate":    {{"user.a", nil}, {"user.a", nil}},
		"empty name":   {{"", nil}},
		"long name":    {{strings.Repeat("n", 256), nil}},
		"NUL in name":  {{"user.\x00", nil}},
		"long value":   {{"user.a", make([]byte, 65536)}},
		"over budget":  {{"user.a", make([]byte, 20000)}, {"user.b", make([]byte, 20000)}},
		"just over it": {{"user.a", make([]byte, XattrSpaceMax-xattrHeaderSize-xattrEntryOverhead-len("user.a")+1)}},
	}
	for name, xs := range bad {
		if err := CheckXattrs(xs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTreeCheckerDirHardlink(t *testing.T) {
	tc := NewTreeChecker()
	if err := tc.Add(&Entry{Path: "/", Mode: TypeDir | 0o755}, 1); err != nil {
		t.Fatal(err)
	}
	if err := tc.Add(&Entry{Path: "/d", Mode: TypeDir | 0o755, Hardlink: "/"}, 2); err == nil {
		t.Fatal("directory hardlink accepted")
	}
}

// TestHardlinkedWhiteout: a whiteout (character device 0/0) stands for a
// path that is gone, so it cannot have a second name. composefs-rs refuses
// both spellings of one in a dumpfile: a whiteout line whose NLINK is over
// 1, and a hardlink line whose target (through any chain) is a whiteout.
func TestHardlinkedWhiteout(t *testing.T) {
	for name, c := range map[string]struct {
		dump string
		path string // the path the error must name
	}{
		"nlink": {
			dump: "/wh 0 20000 2 0 0 0 0.0 - - -\n",
			path: "/wh",
		},
		"link": {
			dump: "/wh 0 20000 1 0 0 0 0.0 - - -\n" +
				"/l 0 @20000 - - - - 0.0 /wh - -\n",
			path: "/l",
		},
		"link forward": {
			dump: "/l 0 @20000 - - - - 0.0 /wh - -\n" +
				"/wh 0 20000 1 0 0 0 0.0 - - -\n",
			path: "/l",
		},
		"chain": {
			dump: "/d 4096 40755 2 0 0 0 0.0 - - -\n" +
				"/d/wh 0 20644 1 0 0 0 0.0 - - -\n" +
				"/d/l1 0 @20644 - - - - 0.0 /d/wh - -\n" +
				"/l2 0 @20644 - - - - 0.0 /d/l1 - -\n",
			path: "/d/l1",
		},
	} {
		_, err := ParseAll(strings.NewReader(rootLine+c.dump), ParseOptions{})
		if !errors.Is(err, ErrHardlinkedWhiteout) {
			t.Errorf("%s: error %v, want ErrHardlinkedWhiteout", name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.path+":") {
			t.Errorf("%s: error %q does not name %s", name, err, c.path)
		}
	}
	// Other character devices may be hardlinked, and a lone whiteout is
	// fine.
	for name, dump := range map[string]string{
		"device": "/c 0 20644 2 0 0 259 0.0 - - -\n" +
			"/l 0 @20644 - - - - 0.0 /c - -\n",
		"whiteout": "/wh 0 20000 1 0 0 0 0.0 - - -\n",
	} {
		if _, err := ParseAll(strings.NewReader(rootLine+dump), ParseOptions{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
