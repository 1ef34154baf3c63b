package dumpfile

import (
	"bytes"
	"testing"
)

func TestEscapeModes(t *testing.T) {
	cases := []struct {
		in   string
		mode escapeMode
		want string
	}{
		{"plain", escapeStandard, "plain"},
		{"a b", escapeStandard, `a\x20b`},
		{"a\\b", escapeStandard, `a\\b`},
		{"\n\r\t", escapeStandard, `\n\r\t`},
		{"\x00\x01\x1f\x7f\x80\xff", escapeStandard, `\x00\x01\x1f\x7f\x80\xff`},
		{"~!\"#$%&'()*+,-./:;<>?@[]^_`{|}", escapeStandard, "~!\"#$%&'()*+,-./:;<>?@[]^_`{|}"},
		// '=' only in xattr fields.
		{"a=b", escapeStandard, "a=b"},
		{"a=b", escapeEqual, `a\x3db`},
		// A lone dash only where "-" means absent.
		{"-", escapeStandard, "-"},
		{"-", escapeEqual, "-"},
		{"-", escapeLoneDash, `\x2d`},
		{"--", escapeLoneDash, "--"},
		{"-x", escapeLoneDash, "-x"},
		{"", escapeLoneDash, ""},
		{"é", escapeStandard, `\xc3\xa9`},
	}
	for _, c := range cases {
		got := string(appendEscaped(nil, []byte(c.in), c.mode))
		if got != c.want {
			t.Errorf("escape(%q, %d) = %q, want %q", c.in, c.mode, got, c.want)
		}
		back, err := Unescape(got)
		if err != nil || !bytes.Equal(back, []byte(c.in)) {
			t.Errorf("Unescape(%q) = %q, %v; want %q", got, back, err, c.in)
		}
	}
}

func TestEscapeAllBytesRoundTrip(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, mode := range []escapeMode{escapeStandard, escapeEqual, escapeLoneDash} {
		esc := appendEscaped(nil, all, mode)
		if bytes.ContainsAny(esc, " \n\r\t\x00") {
			t.Errorf("mode %d: escaped text has a separator: %q", mode, esc)
		}
		back, err := unescape(nil, esc)
		if err != nil || !bytes.Equal(back, all) {
			t.Errorf("mode %d: round trip failed: %v", mode, err)
		}
	}
}

func TestUnescape(t *testing.T) {
	good := map[string]string{
		``:           "",
		`\x41\x4a`:   "AJ",
		`\x4A\xfF`:   "J\xff",
		`\\n`:        `\n`,
		`a\tb`:       "a\tb",
		`x\x00y`:     "x\x00y",
		`100%\x3d=`:  "100%==",
		`\r\n\\\x2d`: "\r\n\\-",
	}
	for in, want := range good {
		got, err := Unescape(in)
		if err != nil || string(got) != want {
			t.Errorf("Unescape(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{`\`, `a\`, `\x`, `\x4`, `\xg0`, `\x0g`, `\a`, `\0`, `\"`, `\X41`}
	for _, in := range bad {
		if got, err := Unescape(in); err == nil {
			t.Errorf("Unescape(%q) = %q, want an error", in, got)
		}
	}
}

func TestAppendEscapedKeepSpace(t *testing.T) {
	for _, c := range []struct {
		in        string
		keepSpace bool
		want      string
	}{
		{"a b", true, "a b"},
		{"a b", false, `a\x20b`},
		{"t\tn\nx=\x7f", true, `t\tn\nx=\x7f`},
		{"-", false, "-"},
	} {
		if got := string(AppendEscaped(nil, c.in, c.keepSpace)); got != c.want {
			t.Errorf("AppendEscaped(%q, %v) = %q, want %q", c.in, c.keepSpace, got, c.want)
		}
	}
}
