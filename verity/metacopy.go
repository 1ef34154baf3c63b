package verity

import (
	"errors"
	"fmt"
)

// The trusted.overlay.metacopy xattr of a composefs external file: a 4-byte
// header {version 0, length, flags 0, digest algorithm} followed by the
// fs-verity digest of the object. An empty value means "metacopy, no digest".

const metacopyHeaderSize = 4

// ErrMetacopy is wrapped by every error decoding a metacopy value.
var ErrMetacopy = errors.New("invalid overlay metacopy xattr")

// EncodeMetacopy returns the xattr value carrying digest for alg; a nil
// digest gives the empty value.
func EncodeMetacopy(alg Algorithm, digest []byte) ([]byte, error) {
	if len(digest) == 0 {
		return []byte{}, nil
	}
	if len(digest) != alg.Size() {
		return nil, fmt.Errorf("%w: %d-byte digest for %s", ErrMetacopy, len(digest), alg)
	}
	v := make([]byte, metacopyHeaderSize+len(digest))
	v[1] = byte(len(v))
	v[3] = byte(alg)
	copy(v[metacopyHeaderSize:], digest)
	return v, nil
}

// DecodeMetacopy returns the digest and algorithm a metacopy value carries;
// a nil digest (and no error) when the value is empty.
func DecodeMetacopy(v []byte) (Algorithm, []byte, error) {
	if len(v) == 0 {
		return 0, nil, nil
	}
	if len(v) < metacopyHeaderSize {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrMetacopy, len(v))
	}
	if v[0] != 0 {
		return 0, nil, fmt.Errorf("%w: version %d", ErrMetacopy, v[0])
	}
	if int(v[1]) != len(v) {
		return 0, nil, fmt.Errorf("%w: length field %d, value is %d bytes", ErrMetacopy, v[1], len(v))
	}
	alg := Algorithm(v[3])
	if !alg.Valid() {
		return 0, nil, fmt.Errorf("%w: digest algorithm %d", ErrMetacopy, v[3])
	}
	d := v[metacopyHeaderSize:]
	if len(d) != alg.Size() {
		return 0, nil, fmt.Errorf("%w: %d-byte digest for %s", ErrMetacopy, len(d), alg)
	}
	return alg, d, nil
}
