// Package store keeps OCI images in a composefs-rs repository the way
// composefs-rs' `cfsctl oci pull` does, so that either tool reads what the
// other wrote:
//
//	streams/oci-layer-<diff_id>        a layer's tar as a split stream:
//	                                   regular files over 64 bytes are
//	                                   objects, all else is inline
//	streams/oci-config-<digest>        the config JSON as one object, with
//	                                   a named ref per diff_id to its layer
//	                                   stream, and composefs.image(.v1) to
//	                                   the image built from it
//	streams/oci-manifest-<digest>      the manifest JSON as one object, with
//	                                   "config:<digest>" and the diff_ids
//	streams/refs/oci/<name>            a tag: -> ../../oci-manifest-<digest>,
//	                                   '%' and '/' of the name escaped
//
// A layer already stored is not stored again, which is what makes a
// second pull of a shared layer fetch and write nothing (HasLayer before
// fetching it). LayerTar gives a stored layer's tar back bit for bit.
package store

import (
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/composefs/composefs-go/dumpfile"
)

// Content identifier prefixes, composefs-rs'.
const (
	layerPrefix    = "oci-layer-"
	configPrefix   = "oci-config-"
	manifestPrefix = "oci-manifest-"
	// tagPrefix is where tags live under streams/refs/.
	tagPrefix = "oci/"
)

// InlineMax is composefs-rs' threshold (INLINE_CONTENT_MAX_V0): a regular
// file of more bytes is stored as an object, not inline in the stream. It
// is the image's threshold too (package oci's), which the Merger relies
// on: a file stored as an object is external in the image.
const InlineMax = dumpfile.RecommendedInlineContentMax

// Named ref keys composefs-rs gives the EROFS image of a config.
const (
	ImageRefKey   = "composefs.image"    // format 2
	ImageRefKeyV1 = "composefs.image.v1" // format 1
)

// ErrNotFound is wrapped when a layer, image or tag is not in the
// repository.
var ErrNotFound = errors.New("not in the repository")

// ErrCorrupt is wrapped when what the repository holds is inconsistent:
// a stream of the wrong type or shape, content that does not match its
// digest.
var ErrCorrupt = errors.New("corrupt OCI storage")

// LayerID, ConfigID and ManifestID are the content identifiers of the
// streams of a layer (by diff_id), a config and a manifest (by digest).
func LayerID(diffID string) string    { return layerPrefix + diffID }
func ConfigID(digest string) string   { return configPrefix + digest }
func ManifestID(digest string) string { return manifestPrefix + digest }

// tagRef is the ref name, under streams/refs/, of a tag.
func tagRef(name string) string { return tagPrefix + encodeTag(name) }

// encodeTag escapes '%' and '/' so that a tag is one file name.
func encodeTag(name string) string {
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(name)
}

// hashes are the digest algorithms of OCI digests, by name, with the
// length of their hex.
var hashes = map[string]struct {
	new    func() hash.Hash
	hexLen int
}{"sha256": {sha256.New, 64}, "sha512": {sha512.New, 128}}

func digestOf(alg string) hash.Hash { return hashes[alg].new() }

// decodeTag undoes encodeTag; other '%' sequences stay as they are, as
// composefs-rs leaves them.
func decodeTag(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+3 <= len(s) {
			switch s[i+1 : i+3] {
			case "2F":
				b.WriteByte('/')
				i += 2
				continue
			case "25":
				b.WriteByte('%')
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// checkDigest accepts "sha256:<64 hex>" and "sha512:<128 hex>" and
// returns the algorithm.
func checkDigest(d string) (string, error) {
	alg, h, ok := strings.Cut(d, ":")
	if !ok || hashes[alg].new == nil || len(h) != hashes[alg].hexLen || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%q is not a sha256 or sha512 digest", d)
	}
	return alg, nil
}

// digestBytes gives data's digest in the algorithm of like ("sha256:...").
func digestBytes(alg string, data []byte) string {
	h := digestOf(alg)
	h.Write(data)
	return fmt.Sprintf("%s:%x", alg, h.Sum(nil))
}
