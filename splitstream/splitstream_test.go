package splitstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/composefs/composefs-go/verity"
)

// memStore keeps objects in memory by fs-verity digest.
type memStore map[string][]byte

func (m memStore) WriteObject(src io.Reader, size int64) ([]byte, error) {
	data, err := io.ReadAll(src)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != size {
		return nil, fmt.Errorf("got %d bytes, want %d", len(data), size)
	}
	d, err := verity.DigestReader(verity.SHA256, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	m[string(d)] = data
	return d, nil
}

// testData is composefs-rs' generate_test_data.
func testData(size int, seed byte) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = (byte(i) + seed) * 17
	}
	return b
}

// cat puts the stream back together from its chunks and the store.
func cat(t *testing.T, data []byte, store memStore) ([]byte, *Reader) {
	t.Helper()
	r, err := OpenBytes(data, verity.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	secs, err := ReadAll(r, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, s := range secs {
		if s.Object == nil {
			out = append(out, s.Inline...)
			continue
		}
		obj, ok := store[string(s.Object)]
		if !ok {
			t.Fatalf("object %x not in the store", s.Object)
		}
		out = append(out, obj...)
	}
	return out, r
}

func TestRoundTrip(t *testing.T) {
	store := memStore{}
	w, err := NewWriter(store, verity.SHA256, ContentTypeLayer)
	if err != nil {
		t.Fatal(err)
	}
	header := testData(512, 1)
	file1 := testData(64*1024, 2)
	file2 := testData(32*1024, 3)
	var want []byte
	write := func(p []byte) {
		w.Write(p)
		want = append(want, p...)
	}
	external := func(p []byte) []byte {
		d, err := w.WriteExternal(bytes.NewReader(p), int64(len(p)))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, p...)
		return d
	}
	write(header)
	write(testData(100, 9)) // joins the previous inline bytes
	d1 := external(file1)
	d2 := external(file2)
	write(header)
	if d := external(file1); !bytes.Equal(d, d1) {
		t.Fatalf("same content, digests %x and %x", d, d1)
	}
	write(testData(1024, 4))
	refA, refB := bytes.Repeat([]byte{0xaa}, 32), bytes.Repeat([]byte{0xbb}, 32)
	w.AddStreamRef("second", refB)
	w.AddStreamRef("first", refA)
	w.AddStreamRef("again", refB)
	data, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	got, r := cat(t, data, store)
	if !bytes.Equal(got, want) {
		t.Fatalf("round trip: %d bytes back, want %d", len(got), len(want))
	}
	if r.StreamSize != uint64(len(want)) || r.ContentType != ContentType("ocilayer") {
		t.Errorf("stream size %d, content type %#x", r.StreamSize, r.ContentType)
	}
	if len(r.ObjectRefs) != 2 || !bytes.Equal(r.ObjectRefs[0], d1) || !bytes.Equal(r.ObjectRefs[1], d2) {
		t.Errorf("object refs %x, want [%x %x] (first use order, once each)", r.ObjectRefs, d1, d2)
	}
	if len(r.StreamRefs) != 2 || !bytes.Equal(r.StreamRefs[0], refB) || !bytes.Equal(r.NamedRefs["first"], refA) ||
		!bytes.Equal(r.NamedRefs["again"], refB) || !bytes.Equal(r.NamedRefs["second"], refB) {
		t.Errorf("stream refs %x named %x", r.StreamRefs, r.NamedRefs)
	}

	// The layout: sections in composefs-rs' order, right after the info.
	in := parseInfo(data[headerSize:])
	if in.streamRefs != (fileRange{112, 112 + 64}) || in.objectRefs != (fileRange{176, 176 + 64}) ||
		in.namedRefs.start != 240 || in.stream.start != in.namedRefs.end || in.stream.end != uint64(len(data)) {
		t.Errorf("layout %+v", in)
	}
	// Named refs: sorted by name, indexes into the stream refs.
	dec, _ := zstd.NewReader(bytes.NewReader(data[in.namedRefs.start:in.namedRefs.end]))
	named, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	if string(named) != "0:again\x001:first\x000:second\x00" {
		t.Errorf("named refs section %q", named)
	}
	// The stream: inline chunks as negative lengths, objects as indexes.
	dec.Reset(bytes.NewReader(data[in.stream.start:in.stream.end]))
	raw, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	var ops []int64
	for len(raw) >= 8 {
		v := int64(binary.LittleEndian.Uint64(raw))
		ops = append(ops, v)
		raw = raw[8:]
		if v < 0 {
			raw = raw[-v:]
		}
	}
	if fmt.Sprint(ops) != "[-612 0 1 -512 0 -1024]" || len(raw) != 0 {
		t.Errorf("chunks %v, %d bytes left", ops, len(raw))
	}
}

func TestEmptyAndHeader(t *testing.T) {
	w, err := NewWriter(nil, verity.SHA512, 0xdeadbeef)
	if err != nil {
		t.Fatal(err)
	}
	data, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := append([]byte("SplitStream\x00\x00\x00\x02\x0c"), 32, 0, 0, 0, 0, 0, 0, 0, 112, 0, 0, 0, 0, 0, 0, 0)
	if !bytes.Equal(data[:32], wantHeader) {
		t.Errorf("header % x\nwant   % x", data[:32], wantHeader)
	}
	in := parseInfo(data[32:])
	if in.streamRefs != (fileRange{112, 112}) || in.objectRefs != (fileRange{112, 112}) || in.namedRefs.start != 112 ||
		in.namedRefs.len() == 0 || in.stream.len() == 0 || in.contentType != 0xdeadbeef || in.streamSize != 0 {
		t.Errorf("info %+v (empty sections are still zstd frames)", in)
	}
	r, err := OpenBytes(data, verity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("Next of an empty stream: %v", err)
	}
	if _, err := OpenBytes(data, verity.SHA256); !errors.Is(err, ErrFormat) {
		t.Errorf("opened a sha512 stream as sha256: %v", err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("wrote after Finish")
	}
}

// oldFormat moves the header's fields where bootc 1.15 put them.
func oldFormat(data []byte) []byte {
	out := bytes.Clone(data)
	h := make([]byte, 32)
	copy(h[0:16], data[16:32])  // info
	copy(h[16:18], data[12:14]) // flags
	copy(h[18:29], data[0:11])  // magic
	h[29], h[30], h[31] = data[11], data[14], data[15]
	copy(out, h)
	return out
}

func TestOldHeaderLayout(t *testing.T) {
	store := memStore{}
	w, _ := NewWriter(store, verity.SHA256, ContentTypeConfig)
	content := testData(300, 7)
	w.Write([]byte("head"))
	w.WriteExternal(bytes.NewReader(content), int64(len(content)))
	data, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	old := oldFormat(data)
	if bytes.Equal(old[:32], data[:32]) || string(old[18:29]) != Magic {
		t.Fatal("old layout not made")
	}
	got, r := cat(t, old, store)
	if string(got) != "head"+string(content) || r.ContentType != ContentTypeConfig {
		t.Errorf("old layout read back %d bytes, type %#x", len(got), r.ContentType)
	}
}

func TestDamaged(t *testing.T) {
	store := memStore{}
	w, _ := NewWriter(store, verity.SHA256, ContentTypeLayer)
	w.Write(testData(200, 1))
	w.WriteExternal(bytes.NewReader(testData(5000, 2)), 5000)
	w.AddStreamRef("x", bytes.Repeat([]byte{1}, 32))
	data, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	in := parseInfo(data[headerSize:])
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(data)) }
	cases := map[string][]byte{
		"short":        data[:20],
		"magic":        edit(func(b []byte) []byte { b[0] = 's'; return b }),
		"version":      edit(func(b []byte) []byte { b[11] = 1; return b }),
		"algorithm":    edit(func(b []byte) []byte { b[14] = 2; return b }),
		"block size":   edit(func(b []byte) []byte { b[15] = 16; return b }),
		"info range":   edit(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[24:], 1<<40); return b }),
		"info short":   edit(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[24:], 100); return b }),
		"backwards":    edit(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[32:], 200); return b }),
		"refs partial": edit(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[40:], in.streamRefs.end-1); return b }),
		"truncated":    data[:len(data)-5],
		"stream size":  edit(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[32+72:], 100); return b }),
		"named junk":   edit(func(b []byte) []byte { b[in.namedRefs.start+5] ^= 0xff; return b }),
		"stream junk":  edit(func(b []byte) []byte { b[in.stream.start+6] ^= 0xff; return b }),
		"no objects":   edit(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[32+24:], in.objectRefs.start); return b }),
	}
	for name, bad := range cases {
		r, err := OpenBytes(bad, verity.SHA256)
		if err == nil {
			_, err = ReadAll(r, 1<<20)
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if !errors.Is(err, ErrFormat) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %v does not wrap ErrFormat", name, err)
		}
	}
}

func FuzzReader(f *testing.F) {
	store := memStore{}
	w, _ := NewWriter(store, verity.SHA256, ContentTypeLayer)
	w.Write([]byte("inline"))
	w.WriteExternal(bytes.NewReader(testData(100, 1)), 100)
	w.AddStreamRef("a", bytes.Repeat([]byte{2}, 32))
	seed, _ := w.Finish()
	f.Add(seed)
	f.Add(oldFormat(seed))
	f.Add(seed[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := OpenBytes(data, verity.SHA256)
		if err != nil {
			return
		}
		defer r.Close()
		var inline uint64
		for range 1 << 16 {
			c, err := r.Next()
			if err != nil {
				break
			}
			if c.External {
				if c.Index >= len(r.ObjectRefs) || !bytes.Equal(c.Object, r.ObjectRefs[c.Index]) {
					t.Fatalf("chunk index %d of %d", c.Index, len(r.ObjectRefs))
				}
				continue
			}
			n, _ := io.Copy(io.Discard, io.LimitReader(r, 1<<20))
			inline += uint64(n)
		}
		if inline > r.StreamSize {
			t.Fatalf("%d inline bytes, stream size %d", inline, r.StreamSize)
		}
		for name, d := range r.NamedRefs {
			if len(d) != 32 {
				t.Fatalf("named ref %q of %d bytes", name, len(d))
			}
		}
	})
}
