package oci

import (
	"archive/tar"
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestApplyLayerTypes(t *testing.T) {
	big := strings.Repeat("0123456789", 10) // 100 bytes: an object
	small := strings.Repeat("x", InlineMax) // 64 bytes: inline
	long := strings.Repeat("long-name/", 15) + "file"
	longTarget := "/" + strings.Repeat("target/", 20) + "end"
	store := memStore{}
	b := build(t, store, layer(t,
		with(dir("./", 0o700), func(h *tar.Header) { h.Uid = 5 }),
		dir("bin/", 0o755),
		with(file("bin/su", big), func(h *tar.Header) {
			h.Mode = 0o4755
			h.Uid, h.Gid = 1000, 2000
			h.ModTime = time.Unix(1600000000, 123456789)
			h.PAXRecords = map[string]string{
				"SCHILY.xattr.security.capability": "\x01\x00\x00\x02caps",
				"SCHILY.xattr.user.note":           "hello",
				"SCHILY.xattr.trusted.other":       "t",
			}
		}),
		file("bin/small", small),
		file("bin/empty", ""),
		with(dir("tmp", 0o1777), func(h *tar.Header) {}),
		symlink("bin/sh", "busybox"),
		with(ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: epoch}}, func(*tar.Header) {}),
		ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8, Devminor: 1, ModTime: epoch}},
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o600, ModTime: epoch}},
		file(long, "long"),
		symlink("longlink", longTarget),
	))
	got := showAll(entriesOf(t, b, TransformNone))
	want := []string{
		"/ 40700 6 5:0 1700000000.0", // four subdirectories
		"/bin 40755 2 0:0 1700000000.0",
		`/bin/empty 100644 1 0:0 1700000000.0 ""`,
		`/bin/sh 120777 1 0:0 1700000000.0 -> busybox`,
		`/bin/small 100644 1 0:0 1700000000.0 "` + small + `"`,
		`/bin/su 104755 1 1000:2000 1600000000.123456789 size=100 digest=` + digest8(big) +
			` security.capability="\x01\x00\x00\x02caps" trusted.other="t" user.note="hello"`,
		// dev/ had no entry of its own: made as a runtime would.
		"/dev 40755 2 0:0 0.0",
		"/dev/fifo 10600 1 0:0 1700000000.0",
		"/dev/null 20666 1 0:0 1700000000.0 rdev=259",
		"/dev/sda 60660 1 0:0 1700000000.0 rdev=2049",
	}
	// The long name's directories, each made implicitly.
	p := ""
	for range 15 {
		p += "/long-name"
		want = append(want, p+" 40755 3 0:0 0.0")
	}
	want[len(want)-1] = p + " 40755 2 0:0 0.0"
	want = append(want, p+`/file 100644 1 0:0 1700000000.0 "long"`,
		"/longlink 120777 1 0:0 1700000000.0 -> "+longTarget,
		"/tmp 41777 2 0:0 1700000000.0")
	assert.Equal(t, want, got)
	assert.Equal(t, []byte(big), store[strings.Repeat("", 0)+hexDigest(big)], "the large file's object")
	assert.Len(t, store, 1, "only files over InlineMax bytes become objects")
}

func TestWhiteouts(t *testing.T) {
	b := build(t, memStore{},
		layer(t,
			dir("a/", 0o755), file("a/x", "x"), file("a/y", "y"),
			file("b", "b"),
			dir("c/", 0o755), file("c/d", "d"), dir("c/sub/", 0o755), file("c/sub/s", "s"),
			dir("e/", 0o755), file("e/f", "f"),
			file("g", "g"),
		),
		layer(t,
			file("a/.wh.x", ""),
			file(".wh.b", ""),
			file("c/.wh..wh..opq", ""),
			file("c/new", "new"),
			file("e", "e is a file now"),
			file(".wh.nothing", ""),
			file("missing/.wh.x", ""), // nothing below to hide
		),
		layer(t,
			dir("e/", 0o700), file("e/g", "g"), // and a directory again
			dir("g/", 0o755), // a directory over a file
		),
	)
	assert.Equal(t, []string{"/", "/a", "/a/y", "/c", "/c/new", "/e", "/e/g", "/g"}, paths(entriesOf(t, b, TransformNone)))
}

// A whiteout hides what lower layers put there, never what its own layer
// adds, wherever it comes in the layer.
func TestWhiteoutOnlyLower(t *testing.T) {
	b := build(t, memStore{},
		layer(t,
			dir("d/", 0o755), file("d/old", "o"), dir("d/sub/", 0o755), file("d/sub/a", "a"),
			dir("k/", 0o755), file("k/lower", "l"),
		),
		layer(t,
			dir("d/", 0o750), file("d/new", "n"), dir("d/sub/", 0o755), file("d/sub/b", "b"),
			file("d/.wh..wh..opq", ""),
			dir("k/", 0o755), file("k/upper", "u"),
			file(".wh.k", ""),
		),
	)
	es := entriesOf(t, b, TransformNone)
	assert.Equal(t, []string{"/", "/d", "/d/new", "/d/sub", "/d/sub/b", "/k", "/k/upper"}, paths(es))
	assert.Equal(t, uint32(0o40750), es[1].Mode, "the opaque directory's own metadata is the upper layer's")
}

func TestHardlinks(t *testing.T) {
	big := strings.Repeat("hardlinked ", 20)
	b := build(t, memStore{},
		layer(t,
			with(file("f", big), func(h *tar.Header) { h.Uid = 9 }),
			dir("z/", 0o755),
		),
		layer(t,
			hardlink("z/g", "f"),  // to a file of an earlier layer
			hardlink("a", "/z/g"), // to a hardlink, by an absolute name
			hardlink("./h", "./f"),
		),
		layer(t, file(".wh.f", "")), // the first name goes; the inode stays
	)
	got := showAll(entriesOf(t, b, TransformNone))
	assert.Equal(t, []string{
		"/ 40755 3 0:0 0.0",
		"/a 100644 3 9:0 1700000000.0 size=220 digest=" + digest8(big),
		"/h => /a",
		"/z 40755 2 0:0 1700000000.0",
		"/z/g => /a",
	}, got)

	// A hardlink names something that exists and is not a directory.
	for name, l := range map[string][]byte{
		"to nothing":        layer(t, hardlink("x", "nothing")),
		"to a directory":    layer(t, dir("d", 0o755), hardlink("x", "d")),
		"to the root":       layer(t, hardlink("x", "./")),
		"through a file":    layer(t, file("f", "f"), hardlink("x", "f/y")),
		"escaping the root": layer(t, hardlink("x", "../etc/passwd")),
	} {
		_, err := NewBuilder(memStore{}).ApplyLayer(bytes.NewReader(l))
		assert.ErrorIs(t, err, ErrInvalidLayer, name)
	}
	// To a name a lower layer had and this one whited out.
	lower := build(t, memStore{}, layer(t, file("f", "f")))
	_, err := lower.ApplyLayer(bytes.NewReader(layer(t, file(".wh.f", ""), hardlink("x", "f"))))
	assert.ErrorIs(t, err, ErrInvalidLayer, "hardlink to a whited-out name")
}

func TestTransform(t *testing.T) {
	caps := map[string]string{
		"SCHILY.xattr.security.capability": "cap",
		"SCHILY.xattr.security.selinux":    "system_u:object_r:bin_t:s0",
		"SCHILY.xattr.user.keep":           "u",
		"SCHILY.xattr.trusted.overlay.x":   "o",
	}
	usrTime := time.Unix(1650000000, 5)
	b := build(t, memStore{}, layer(t,
		with(dir("./", 0o700), func(h *tar.Header) { h.PAXRecords = caps }),
		with(dir("usr/", 0o555), func(h *tar.Header) {
			h.Uid, h.Gid, h.ModTime, h.PAXRecords = 3, 4, usrTime, caps
		}),
		with(file("usr/ping", "ping"), func(h *tar.Header) { h.PAXRecords = caps }),
		with(dir("run/", 0o710), func(h *tar.Header) { h.Uid = 6 }),
		dir("run/lock/", 0o755),
		file("run/lock/stale", "s"),
		file("run/linked", "linked"),
		hardlink("usr/linked", "run/linked"),
	))
	def := showAll(entriesOf(t, b, TransformDefault))
	assert.Equal(t, []string{
		`/ 40555 4 3:4 1650000000.5 security.capability="cap"`,
		`/run 40710 2 6:0 1650000000.5`,
		`/usr 40555 2 3:4 1650000000.5 security.capability="cap"`,
		`/usr/linked 100644 1 0:0 1700000000.0 "linked"`,
		`/usr/ping 100644 1 0:0 1700000000.0 "ping" security.capability="cap"`,
	}, def)
	keep := showAll(entriesOf(t, b, TransformKeepUserXattrs))
	assert.Equal(t, `/ 40555 4 3:4 1650000000.5 security.capability="cap" user.keep="u"`, keep[0])
	assert.Equal(t, `/usr/ping 100644 1 0:0 1700000000.0 "ping" security.capability="cap" user.keep="u"`, keep[4])
	none := entriesOf(t, b, TransformNone)
	assert.Equal(t, []string{"/", "/run", "/run/linked", "/run/lock", "/run/lock/stale", "/usr", "/usr/linked", "/usr/ping"}, paths(none))
	assert.Equal(t, uint32(0o40700), none[0].Mode)
	assert.Len(t, none[0].Xattrs, 4)

	// The Builder's tree is not changed by a transform: more layers
	// may follow.
	assert.Equal(t, showAll(none), showAll(entriesOf(t, b, TransformNone)))

	_, err := build(t, memStore{}, layer(t, dir("etc/", 0o755))).Entries(TransformDefault)
	assert.ErrorIs(t, err, ErrTransform, "no /usr")
	_, err = build(t, memStore{}, layer(t, file("usr", "file"))).Entries(TransformDefault)
	assert.ErrorIs(t, err, ErrTransform, "/usr a file")
	_, err = build(t, memStore{}, layer(t, dir("usr/", 0o755), symlink("run", "var/run"))).Entries(TransformDefault)
	assert.ErrorIs(t, err, ErrTransform, "/run a symlink")
	_, err = b.Entries(Transform(42))
	assert.Error(t, err)

	for _, tr := range []Transform{TransformDefault, TransformKeepUserXattrs, TransformNone} {
		back, err := ParseTransform(tr.String())
		require.NoError(t, err)
		assert.Equal(t, tr, back)
	}
	_, err = ParseTransform("bogus")
	assert.Error(t, err)
}

func TestHostileLayers(t *testing.T) {
	deep := strings.Repeat("a/", maxDepth+1) + "f"
	hugeHeader := func() []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Size: 1 << 60, Mode: 0o644})
		return append(buf.Bytes(), make([]byte, 4096)...)
	}()
	withBig := layer(t, file("big", strings.Repeat("b", 1000)))
	cases := map[string][]byte{
		"dot-dot":           layer(t, file("../escape", "x")),
		"dot-dot inside":    layer(t, file("a/../../escape", "x")),
		"too deep":          layer(t, file(deep, "x")),
		"name too long":     layer(t, file(strings.Repeat("n", 256), "x")),
		"root not a dir":    layer(t, file(".", "x")),
		"parent is a file":  layer(t, file("f", "x"), file("f/g", "y")),
		"absurd size":       hugeHeader,
		"truncated content": withBig[:700],
		"truncated inline":  layer(t, file("s", "short"))[:515],
		"not a tar":         bytes.Repeat([]byte("garbage!"), 200),
		"negative uid":      layer(t, with(file("f", "x"), func(h *tar.Header) { h.Uid = -1 })),
		"empty xattr name": layer(t, with(file("f", "x"), func(h *tar.Header) {
			h.PAXRecords = map[string]string{"SCHILY.xattr.": "v"}
		})),
		"sparse":           retype(layer(t, file("f", "x")), tar.TypeGNUSparse),
		"socket-like type": retype(layer(t, file("f", "x")), 'V'),
	}
	for name, l := range cases {
		_, err := NewBuilder(memStore{}).ApplyLayer(bytes.NewReader(l))
		if !assert.Error(t, err, name) {
			continue
		}
		assert.True(t, errors.Is(err, ErrInvalidLayer), "%s: %v does not wrap ErrInvalidLayer", name, err)
		t.Logf("%s: %v", name, err)
	}
}

func TestDiffIDCoversPadding(t *testing.T) {
	l := layer(t, file("f", "x"))
	padded := append(append([]byte{}, l...), make([]byte, 10240)...)
	b := build(t, memStore{}, padded) // build checks the digest of all of it
	assert.Equal(t, []string{"/", "/f"}, paths(entriesOf(t, b, TransformNone)))
}

// TestLayerWithoutEnd: a layer that stops right after its last file's
// content, without the padding and the end-of-archive blocks (as umoci
// 0.4 writes layers), applies with its files whole; one cut inside a
// file's content does not.
func TestLayerWithoutEnd(t *testing.T) {
	big := strings.Repeat("z", 700)
	full := layer(t, dir("etc/", 0o755), file("etc/a", "abc"), file("etc/big", big))
	// The big file's content ends 700 bytes after its header; the
	// header is the third 512-byte block (PAX records aside, none here).
	end := bytes.LastIndex(full, []byte(big)) + len(big)
	b := build(t, memStore{}, full[:end])
	got := showAll(entriesOf(t, b, TransformNone))
	want := showAll(entriesOf(t, build(t, memStore{}, full), TransformNone))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("without the end:\n%s\nwhole:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := NewBuilder(memStore{}).ApplyLayer(bytes.NewReader(full[:end-100])); err == nil {
		t.Error("a layer cut inside a file's content applied")
	}
}
