package verity

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestIoctlNumbers(t *testing.T) {
	switch runtime.GOARCH {
	case "mips", "mipsle", "mips64", "mips64le", "ppc64", "ppc64le":
		t.Skip("this architecture encodes _IOC directions differently")
	}
	if fsIocEnableVerity != unix.FS_IOC_ENABLE_VERITY {
		t.Errorf("FS_IOC_ENABLE_VERITY = %#x, want %#x", fsIocEnableVerity, unix.FS_IOC_ENABLE_VERITY)
	}
	if fsIocMeasureVerity != unix.FS_IOC_MEASURE_VERITY {
		t.Errorf("FS_IOC_MEASURE_VERITY = %#x, want %#x", fsIocMeasureVerity, unix.FS_IOC_MEASURE_VERITY)
	}
	// The values from the kernel headers, as documented in fsverity.rst.
	if fsIocEnableVerity != 0x40806685 || fsIocMeasureVerity != 0xc0046686 {
		t.Errorf("ioctl numbers %#x %#x", fsIocEnableVerity, fsIocMeasureVerity)
	}
}

func TestEnableArgLayout(t *testing.T) {
	if n := unsafe.Sizeof(unix.FsverityEnableArg{}); n != sizeofEnableArg {
		t.Fatalf("sizeof(struct fsverity_enable_arg) = %d, want %d", n, sizeofEnableArg)
	}
	if n := unsafe.Sizeof(unix.FsverityDigest{}); n != sizeofDigestHeader {
		t.Fatalf("sizeof(struct fsverity_digest) = %d, want %d", n, sizeofDigestHeader)
	}
	for _, alg := range algorithms {
		got := encodeEnableArg(alg)
		// The same structure filled by x/sys' Go definition.
		want := unix.FsverityEnableArg{Version: 1, Hash_algorithm: uint32(alg), Block_size: 4096}
		wantBytes := unsafe.Slice((*byte)(unsafe.Pointer(&want)), unsafe.Sizeof(want))
		if !bytes.Equal(got[:], wantBytes) {
			t.Errorf("%s: enable arg\n% x\nwant\n% x", alg, got, wantBytes)
		}
	}
}

func TestDigestArgLayout(t *testing.T) {
	b := newDigestArg(64)
	if len(b) != 68 {
		t.Fatalf("len %d", len(b))
	}
	hdr := (*unix.FsverityDigest)(unsafe.Pointer(&b[0]))
	if hdr.Size != 64 || hdr.Algorithm != 0 {
		t.Fatalf("header %+v", *hdr)
	}
	// What the kernel writes back for a sha256 file.
	hdr.Algorithm, hdr.Size = uint16(SHA256), 32
	copy(b[4:], bytes.Repeat([]byte{0xab}, 32))
	alg, d, ok := decodeDigestArg(b)
	if !ok || alg != SHA256 || !bytes.Equal(d, bytes.Repeat([]byte{0xab}, 32)) {
		t.Fatalf("decode: %v %s %x", ok, alg, d)
	}
	hdr.Size = 65
	if _, _, ok := decodeDigestArg(b); ok {
		t.Fatal("accepted a digest_size larger than the buffer")
	}
	if _, _, ok := decodeDigestArg(b[:3]); ok {
		t.Fatal("accepted a short buffer")
	}
}

// logRecorder keeps the messages logged through slog.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// TestKernelPathOrFallback takes whichever path this kernel offers: with
// fs-verity enabled the kernel's measurement must equal ours; without it
// (this machine) the fallback must hash and say so at debug level.
func TestKernelPathOrFallback(t *testing.T) {
	rec := &logRecorder{}
	old := slog.Default()
	slog.SetDefault(slog.New(rec))
	defer slog.SetDefault(old)

	path := filepath.Join(t.TempDir(), "obj")
	data := mod251(100000)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	enableErr := EnableVerity(f, SHA256)
	_, measureErr := MeasureVerity(f, SHA256)
	got, err := DigestFile(SHA256, f)
	if err != nil {
		t.Fatal(err)
	}
	if want := DigestBytes(SHA256, data); !bytes.Equal(got, want) {
		t.Fatalf("DigestFile %x, want %x", got, want)
	}
	wantMsg := "fs-verity digest computed in userspace"
	if enableErr == nil && measureErr == nil {
		wantMsg = "fs-verity digest measured by kernel"
		// Enabled with sha256: asking for sha512 must fall back and still be right.
		d512, err := DigestFile(SHA512, f)
		if err != nil || !bytes.Equal(d512, DigestBytes(SHA512, data)) {
			t.Fatalf("sha512 on a sha256 verity file: %x %v", d512, err)
		}
	} else {
		if !errors.Is(measureErr, ErrNoKernelVerity) {
			t.Fatalf("MeasureVerity error %v does not wrap ErrNoKernelVerity", measureErr)
		}
		t.Logf("no kernel fs-verity here: enable: %v; measure: %v", enableErr, measureErr)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	found := false
	for _, m := range rec.msgs {
		found = found || m == wantMsg
	}
	if !found {
		t.Fatalf("debug log %q not written; got %q", wantMsg, rec.msgs)
	}
}

func TestInvalidAlgorithm(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := DigestFile(Algorithm(9), f); err == nil {
		t.Error("DigestFile accepted algorithm 9")
	}
	if _, err := DigestReader(Algorithm(0), bytes.NewReader(nil)); err == nil {
		t.Error("DigestReader accepted algorithm 0")
	}
	if err := EnableVerity(f, Algorithm(3)); err == nil {
		t.Error("EnableVerity accepted algorithm 3")
	}
	if err := NewCache().Verify(f, Algorithm(3), nil); err == nil {
		t.Error("Verify accepted algorithm 3")
	}
}
