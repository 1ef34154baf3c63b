package objects

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/verity"
)

// ErrRepositoryMeta is wrapped when a repository's meta.json is invalid
// or asks for something this implementation does not support.
var ErrRepositoryMeta = errors.New("unusable repository meta.json")

// repoFormatVersion is the highest composefs-rs repository version known.
const repoFormatVersion = 1

// Feature flags this implementation understands, by compatibility class.
// Only reading is done here, so unknown compatible and read-only
// compatible flags are fine; unknown incompatible ones are refused.
var knownIncompatible = []string{}

// Meta is a composefs-rs repository's meta.json:
//
//	{"version": 1, "algorithm": "fsverity-sha512-12",
//	 "features": {"compatible": [], "read-only-compatible": ["v1_erofs"], "incompatible": []},
//	 "erofs_formats": {"default": 1, "extra": [2]}}
type Meta struct {
	Version   uint32
	Algorithm verity.Algorithm
	// Feature flags by class.
	Compatible, ReadOnlyCompatible, Incompatible []string
	// ErofsVersion is the composefs image format (0, 1 or 2) the
	// repository writes by default: erofs_formats.default, or for older
	// repositories 1 with the v1_erofs flag and 2 without it.
	ErofsVersion int
}

type metaJSON struct {
	Version   *uint32 `json:"version"`
	Algorithm *string `json:"algorithm"`
	Features  struct {
		Compatible         []string `json:"compatible"`
		ReadOnlyCompatible []string `json:"read-only-compatible"`
		Incompatible       []string `json:"incompatible"`
	} `json:"features"`
	ErofsFormats *struct {
		Default *int  `json:"default"`
		Extra   []int `json:"extra"`
	} `json:"erofs_formats"`
}

// ParseMeta decodes and checks meta.json.
func ParseMeta(data []byte) (*Meta, error) {
	var j metaJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRepositoryMeta, err)
	}
	if j.Version == nil {
		return nil, fmt.Errorf("%w: no version", ErrRepositoryMeta)
	}
	if *j.Version > repoFormatVersion {
		return nil, fmt.Errorf("%w: repository format version %d (supported: up to %d)", ErrRepositoryMeta, *j.Version, repoFormatVersion)
	}
	if j.Algorithm == nil {
		return nil, fmt.Errorf("%w: no algorithm", ErrRepositoryMeta)
	}
	alg, err := parseRepoAlgorithm(*j.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRepositoryMeta, err)
	}
	var unknown []string
	for _, f := range j.Features.Incompatible {
		if !slices.Contains(knownIncompatible, f) {
			unknown = append(unknown, f)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%w: requires unknown incompatible features %q", ErrRepositoryMeta, unknown)
	}
	m := &Meta{
		Version:            *j.Version,
		Algorithm:          alg,
		Compatible:         j.Features.Compatible,
		ReadOnlyCompatible: j.Features.ReadOnlyCompatible,
		Incompatible:       j.Features.Incompatible,
		ErofsVersion:       2,
	}
	if slices.Contains(m.ReadOnlyCompatible, "v1_erofs") {
		m.ErofsVersion = 1
	}
	if f := j.ErofsFormats; f != nil {
		if f.Default == nil {
			return nil, fmt.Errorf("%w: erofs_formats without default", ErrRepositoryMeta)
		}
		for _, v := range append([]int{*f.Default}, f.Extra...) {
			if v < 0 || v > 2 {
				return nil, fmt.Errorf("%w: unknown EROFS format version %d", ErrRepositoryMeta, v)
			}
		}
		m.ErofsVersion = *f.Default
	}
	return m, nil
}

// parseRepoAlgorithm reads "fsverity-<hash>-<log2 block size>".
func parseRepoAlgorithm(s string) (verity.Algorithm, error) {
	rest, ok := strings.CutPrefix(s, "fsverity-")
	i := strings.LastIndexByte(rest, '-')
	if !ok || i < 0 {
		return 0, fmt.Errorf("algorithm %q is not fsverity-<hash>-<lg_blocksize>", s)
	}
	if lg := rest[i+1:]; lg != "12" {
		return 0, fmt.Errorf("algorithm %q: block size 2^%s unsupported (only 4096)", s, lg)
	}
	return verity.ParseAlgorithm(rest[:i])
}

// NewMeta is the meta.json composefs-rs' cfsctl init writes for a new
// repository: version 1, the algorithm, and EROFS format 1 as the default
// (erofs_formats, and the v1_erofs read-only-compatible flag that older
// tools understand).
func NewMeta(alg verity.Algorithm) *Meta {
	return &Meta{
		Version:            repoFormatVersion,
		Algorithm:          alg,
		Compatible:         []string{},
		ReadOnlyCompatible: []string{"v1_erofs"},
		Incompatible:       []string{},
		ErofsVersion:       1,
	}
}

// Encode gives meta.json's bytes as composefs-rs writes them: JSON
// indented by two spaces, a newline at the end. The v1_erofs flag is kept
// in step with ErofsVersion.
func (m *Meta) Encode() ([]byte, error) {
	type features struct {
		Compatible         []string `json:"compatible"`
		ReadOnlyCompatible []string `json:"read-only-compatible"`
		Incompatible       []string `json:"incompatible"`
	}
	type formats struct {
		Default int `json:"default"`
	}
	var j struct {
		Version      uint32   `json:"version"`
		Algorithm    string   `json:"algorithm"`
		Features     features `json:"features"`
		ErofsFormats formats  `json:"erofs_formats"`
	}
	if !m.Algorithm.Valid() {
		return nil, fmt.Errorf("%w: unsupported algorithm %s", ErrRepositoryMeta, m.Algorithm)
	}
	if m.ErofsVersion < 0 || m.ErofsVersion > 2 {
		return nil, fmt.Errorf("%w: unknown EROFS format version %d", ErrRepositoryMeta, m.ErofsVersion)
	}
	nonNil := func(s []string) []string { return append([]string{}, s...) }
	ro := slices.DeleteFunc(nonNil(m.ReadOnlyCompatible), func(f string) bool { return f == "v1_erofs" })
	if m.ErofsVersion == 1 {
		ro = append([]string{"v1_erofs"}, ro...)
	}
	j.Version = m.Version
	j.Algorithm = "fsverity-" + m.Algorithm.String() + "-12"
	j.Features = features{nonNil(m.Compatible), ro, nonNil(m.Incompatible)}
	j.ErofsFormats.Default = m.ErofsVersion
	data, err := json.MarshalIndent(&j, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// ReadMeta reads and parses a meta.json, bounded: a repository's, local
// or over HTTP.
func ReadMeta(r io.Reader) (*Meta, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxMetaSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxMetaSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrRepositoryMeta, maxMetaSize)
	}
	return ParseMeta(data)
}
