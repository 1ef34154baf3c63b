package verity

import (
	"bytes"
	"errors"
	"testing"
)

func TestMetacopyRoundTrip(t *testing.T) {
	for _, alg := range algorithms {
		d := bytes.Repeat([]byte{0x5a}, alg.Size())
		v, err := EncodeMetacopy(alg, d)
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != 4+alg.Size() || v[1] != byte(len(v)) || v[3] != byte(alg) {
			t.Fatalf("%s: header % x", alg, v[:4])
		}
		got, gd, err := DecodeMetacopy(v)
		if err != nil || got != alg || !bytes.Equal(gd, d) {
			t.Fatalf("%s: decode %s %x %v", alg, got, gd, err)
		}
	}
	if v, err := EncodeMetacopy(SHA256, nil); err != nil || len(v) != 0 {
		t.Fatalf("empty: %q %v", v, err)
	}
	if _, err := EncodeMetacopy(SHA512, make([]byte, 32)); !errors.Is(err, ErrMetacopy) {
		t.Fatalf("wrong size accepted: %v", err)
	}
	bad := [][]byte{
		{0, 4, 0}, // short
		append([]byte{1, 36, 0, 1}, make([]byte, 32)...), // version
		append([]byte{0, 35, 0, 1}, make([]byte, 32)...), // length field
		append([]byte{0, 36, 0, 3}, make([]byte, 32)...), // algorithm
		append([]byte{0, 36, 0, 2}, make([]byte, 32)...), // size for sha512
	}
	for _, v := range bad {
		if _, _, err := DecodeMetacopy(v); !errors.Is(err, ErrMetacopy) {
			t.Errorf("% x accepted: %v", v, err)
		}
	}
}

func FuzzDecodeMetacopy(f *testing.F) {
	for _, alg := range algorithms {
		v, _ := EncodeMetacopy(alg, DigestBytes(alg, []byte("hello world")))
		f.Add(v)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 4, 0, 1})
	f.Fuzz(func(t *testing.T, v []byte) {
		alg, d, err := DecodeMetacopy(v)
		if err != nil || len(v) == 0 {
			return
		}
		again, err := EncodeMetacopy(alg, d)
		// The flags byte (2) is not interpreted, so it does not survive.
		w := bytes.Clone(v)
		w[2] = 0
		if err != nil || !bytes.Equal(again, w) {
			t.Fatalf("% x decoded to %s %x, re-encodes to % x (%v)", v, alg, d, again, err)
		}
	})
}
