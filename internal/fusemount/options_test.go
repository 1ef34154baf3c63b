package fusemount

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/internal/cli"
	"github.com/composefs/composefs-go/internal/cli/clitest"
)

func TestParseArgs(t *testing.T) {
	s, err := parseArgs([]string{"img", "mnt", "--basedir", "/a:/b", "--basedir=/c", "-f", "--verity=require", "--digest", "ab", "--allow-other"})
	if err != nil {
		t.Fatal(err)
	}
	if s.image != "img" || s.mountpoint != "mnt" || !s.foreground || !s.allowOther || s.digest != "ab" || s.verity != composefs.VerityRequire {
		t.Errorf("%+v", s)
	}
	if s, err := parseArgs([]string{"img", "mnt", "--check-objects"}); err != nil || !s.checkObjects {
		t.Errorf("--check-objects: %+v %v", s, err)
	}
	if !slices.Equal(s.basedirs, []string{"/a:/b", "/c"}) {
		t.Errorf("basedirs %q", s.basedirs)
	}
	if s, err := parseArgs([]string{"img", "mnt"}); err != nil || s.verity != composefs.VerityOn || s.foreground {
		t.Errorf("defaults: %+v %v", s, err)
	}
}

// mount.fuse3 calls IMAGE MNT -o OPTIONS, with whatever mount(8) and fstab
// add.
func TestMountOptions(t *testing.T) {
	s, err := parseArgs([]string{"img", "mnt", "-o", "rw,noatime,basedir=/x:/y,verity=off,allow_other,dev,suid,nofail,_netdev,digest=cd,repo=/r,x-systemd.automount,ro,nodev,defaults,subtype=composefs-fuse,fsname=myimg,noreadahead,noiouring,passthrough,check_objects,log=/l"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.basedirs, []string{"/x:/y"}) || s.verity != composefs.VerityOff || !s.allowOther || s.digest != "cd" || s.repo != "/r" || s.fsname != "myimg" || !s.noReadAhead || !s.noIOUring || !s.passthrough || !s.checkObjects || s.logFile != "/l" {
		t.Errorf("%+v", s)
	}
	if !slices.Equal(s.mountFlags, []string{"dev", "suid", "nodev"}) {
		t.Errorf("mount flags %q", s.mountFlags)
	}
	if s.debug {
		t.Errorf("debug without --debug or -o debug")
	}
	// -o debug is --debug, which sets the log's level too (cli.Log).
	for _, args := range [][]string{{"img", "mnt", "-o", "ro,debug"}, {"img", "mnt", "--debug"}} {
		cl := newCommandLine()
		if s, err := cl.parse(args); err != nil || !s.debug || !cl.Debug() {
			t.Errorf("%q: %v, debug %v, --debug %v", args, err, s != nil && s.debug, cl.Debug())
		}
	}
	// What older command lines and fstab entries asked for, the default
	// now, still parses, and wins over passthrough.
	for _, args := range [][]string{{"img", "mnt", "-o", "noopen,passthrough"}, {"img", "mnt", "--passthrough", "--no-open"}} {
		if s, err := parseArgs(args); err != nil || !s.noOpen {
			t.Errorf("%q: %v, noOpen %v", args, err, s != nil && s.noOpen)
		}
	}
	s, err = parseArgs([]string{"-o", "basedir=/a", "img", "-o", "basedir=/b", "mnt"})
	if err != nil || !slices.Equal(s.basedirs, []string{"/a", "/b"}) {
		t.Errorf("repeated -o: %+v %v", s, err)
	}
}

func TestBadArgs(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"img"},
		{"img", "mnt", "extra"},
		{"img", "mnt", "--verity=maybe"},
		{"img", "mnt", "-o", "verity=maybe"},
		{"img", "mnt", "-o", "bogus"},
		{"img", "mnt", "-o", "basedir"},
		{"img", "mnt", "-o", "allow_other=1"},
		{"img", "mnt", "--no-such-flag"},
	} {
		var ue *cli.UsageError
		if _, err := parseArgs(args); !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
		clitest.Usage(t, "composefs-fuse", fuseRun, args...)
	}
}

// fuseRun runs the command in process, for command lines that end before
// it mounts.
func fuseRun(args ...string) (int, string, string) {
	var o, e bytes.Buffer
	code := run(args, &o, &e)
	return code, o.String(), e.String()
}

// TestCommandLine: --help lists every option, --version names the
// command, an unknown option is one line and exit 2.
func TestCommandLine(t *testing.T) {
	clitest.Check(t, newCommandLine().Command, fuseRun)
}

// TestManPage: docs/man/composefs-fuse.1 renders without warnings, has an
// entry for every option --help lists, and one under MOUNT OPTIONS for
// every -o option the help names (the list in -o's description, each
// "(-o NAME)" of another option) and the kernel's flags.
func TestManPage(t *testing.T) {
	cl := newCommandLine()
	m := clitest.ManPage(t, cl.Command)
	named := regexp.MustCompile(`\(-o ([a-z_]+=?)`)
	keys := []string{"fsname="}
	for k := range kernelFlags {
		keys = append(keys, k)
	}
	for _, name := range []string{"options", "log", "debug", "no-read-ahead", "passthrough", "check-objects", "no-io-uring"} {
		usage := cl.Flags.Lookup(name).Usage
		if name == "options" {
			_, list, _ := strings.Cut(usage, "(")
			list, _, _ = strings.Cut(list, ")")
			for _, k := range strings.Split(list, ",") {
				if k = strings.TrimSpace(k); k != "..." {
					keys = append(keys, k)
				}
			}
			continue
		}
		sub := named.FindStringSubmatch(usage)
		if sub == nil {
			t.Errorf("--%s: its description names no -o option", name)
			continue
		}
		keys = append(keys, sub[1])
	}
	for _, k := range keys {
		opt := k
		if strings.HasSuffix(k, "=") {
			opt += "on" // a value every key takes, verity= included
		}
		var s settings
		if err := s.addOptions(opt); err != nil {
			t.Errorf("-o %s: %v", opt, err)
		}
		if !m.Tagged("MOUNT OPTIONS", k) {
			t.Errorf("%s: -o %s has no entry under MOUNT OPTIONS", m.Path, k)
		}
	}
}

func FuzzMountOptions(f *testing.F) {
	f.Add("rw,noatime,basedir=/x:/y,verity=off,allow_other,dev,suid")
	f.Add("ro,nodev,nosuid,digest=00,repo=/r,x-systemd.requires=a,comment=b")
	f.Add(",,=,basedir=,verity=")
	f.Fuzz(func(t *testing.T, opts string) {
		var s settings
		if err := s.addOptions(opts); err != nil {
			return
		}
		for _, fl := range s.mountFlags {
			if !kernelFlags[fl] {
				t.Errorf("%q passed to the kernel", fl)
			}
		}
	})
}

func TestRemoteOptions(t *testing.T) {
	s, err := parseArgs([]string{"img", "mnt", "--basedir=/local", "--basedir=https://h/a:b/store", "--cache=/c", "--cache-size=2G", "--ca-file=/ca", "--token-file=/t",
		"-o", "basedir=http://h/x%2Cy/,cache_size=512KiB,header_file=/h"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.basedirs, []string{"/local", "https://h/a:b/store", "http://h/x%2Cy/"}) || s.cacheDir != "/c" || s.caFile != "/ca" || s.tokenFile != "/t" || s.headerFile != "/h" {
		t.Errorf("%+v", s)
	}
	if s.cacheSize != 512<<10 {
		t.Errorf("cache size %d: -o after the flag wins", s.cacheSize)
	}
	if _, err := parseArgs([]string{"img", "mnt", "--cache-size=12X"}); err == nil {
		t.Error("--cache-size=12X accepted")
	}
	if s, err := parseArgs([]string{"img", "mnt", "--fetch-timeout=5", "-o", "fetch_timeout=0.5"}); err != nil || s.fetchTimeout != 500*time.Millisecond {
		t.Errorf("fetch timeout: %v %v, want -o's 500ms", s, err)
	}
	if s, err := parseArgs([]string{"img", "mnt", "--fetch-timeout=2.5"}); err != nil || s.fetchTimeout != 2500*time.Millisecond {
		t.Errorf("--fetch-timeout=2.5: %v %v", s, err)
	}
	for _, bad := range []string{"0", "-1", "x", "1e3", "NaN", "inf", "0x10", "3601", "1s", "0.009", "0.000000001"} {
		if _, err := parseArgs([]string{"img", "mnt", "--fetch-timeout=" + bad}); err == nil {
			t.Errorf("--fetch-timeout=%s accepted", bad)
		}
	}
}

func FuzzParseSeconds(f *testing.F) {
	for _, s := range []string{"20", "0.5", "3600", "-1", "1e9", "NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseSeconds(s)
		if err == nil && (d < minFetchTimeout || d > maxFetchTimeout) {
			t.Fatalf("%q: %v accepted", s, d)
		}
	})
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "10": 10, "10B": 10, "1k": 1 << 10, "3M": 3 << 20, "2GiB": 2 << 30, "1tb": 1 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "G", "-1", "1.5G", "1X", "1KiBB", "9223372036854775807K", "1 G"} {
		if n, err := parseSize(bad); err == nil {
			t.Errorf("%q: %d accepted", bad, n)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"10", "1K", "2GiB", "7tb", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("%q: %d", s, n)
		}
	})
}

func TestTreeCacheOption(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"img", "mnt"}, ""},
		{[]string{"img", "mnt", "--tree-cache=/trees"}, "/trees"},
		{[]string{"img", "mnt", "--tree-cache=/a", "-o", "tree_cache=none"}, "none"},
	} {
		s, err := parseArgs(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if s.treeCache != tc.want {
			t.Errorf("%q: tree cache %q, want %q", tc.args, s.treeCache, tc.want)
		}
	}
}

// openTrees keeps trees where asked, where the environment says without
// the flag, and none where nothing would use them.
func TestOpenTrees(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := filepath.Join(t.TempDir(), "t")
	env := filepath.Join(t.TempDir(), "env")
	t.Setenv(treeCacheEnv, env)
	for _, tc := range []struct {
		s    settings
		want string
	}{
		{settings{}, env},
		{settings{treeCache: dir}, dir},
		{settings{treeCache: "none"}, ""},
		{settings{treeCache: dir, verity: composefs.VerityOff}, ""},
		{settings{treeCache: dir, passthrough: true}, ""},
		{settings{treeCache: dir, passthrough: true, noOpen: true}, dir},
	} {
		got := ""
		if tr := openTrees(&tc.s, logger); tr != nil {
			got = tr.Dir()
			tr.Close()
		}
		if got != tc.want {
			t.Errorf("%+v: trees in %q, want %q", tc.s, got, tc.want)
		}
	}
	t.Setenv(treeCacheEnv, "none")
	if tr := openTrees(&settings{}, logger); tr != nil {
		t.Errorf("%s=none: trees in %s", treeCacheEnv, tr.Dir())
	}
	// A directory others may read is not used.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if tr := openTrees(&settings{treeCache: open}, logger); tr != nil {
		t.Errorf("mode 0755: trees in %s", tr.Dir())
	}
}
