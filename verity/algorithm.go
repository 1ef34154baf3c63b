// Package verity computes fs-verity digests, in userspace or through the
// kernel, and encodes the overlay metacopy xattr that carries them.
package verity

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
)

// Algorithm is an fs-verity hash algorithm, numbered as the kernel numbers
// them (FS_VERITY_HASH_ALG_*), which is also the number a metacopy xattr
// stores.
type Algorithm uint8

const (
	SHA256 Algorithm = 1
	SHA512 Algorithm = 2
)

// Valid tells whether a is an algorithm we support.
func (a Algorithm) Valid() bool { return a == SHA256 || a == SHA512 }

// Size is the digest size in bytes.
func (a Algorithm) Size() int {
	switch a {
	case SHA256:
		return sha256.Size
	case SHA512:
		return sha512.Size
	}
	return 0
}

// New returns a fresh hash of the algorithm.
func (a Algorithm) New() hash.Hash {
	if a == SHA512 {
		return sha512.New()
	}
	return sha256.New()
}

func (a Algorithm) String() string {
	switch a {
	case SHA256:
		return "sha256"
	case SHA512:
		return "sha512"
	}
	return fmt.Sprintf("algorithm(%d)", uint8(a))
}

// ParseAlgorithm maps "sha256" and "sha512" to their Algorithm.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch s {
	case "sha256":
		return SHA256, nil
	case "sha512":
		return SHA512, nil
	}
	return 0, fmt.Errorf("unknown fs-verity hash algorithm %q (want sha256 or sha512)", s)
}

// AlgorithmForDigestSize maps a digest length in bytes to its algorithm.
func AlgorithmForDigestSize(n int) (Algorithm, bool) {
	switch n {
	case sha256.Size:
		return SHA256, true
	case sha512.Size:
		return SHA512, true
	}
	return 0, false
}
