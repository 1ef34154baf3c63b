// Package source gets an OCI image's manifest, config and layers onto the
// machine, checked, from any of the places skopeo names an image by:
// a registry (docker://HOST/REPO[:TAG|@DIGEST]), an OCI image layout
// directory (oci:DIR[:REF]) or a tar of one (oci-archive:FILE[:REF]), and
// a docker save archive (docker-archive:FILE[:NAME:TAG]).
//
// Parse reads a SOURCE; Open resolves it to one image for this machine's
// platform (an index or manifest list picks linux/GOARCH) and reads its
// manifest and config; Image.Fetch downloads the layer blobs not yet in a
// directory, several at a time, each kept under its digest's name only
// once its sha256 and size are checked; Image.OpenLayer gives a layer's
// uncompressed tar stream, its diff_id checked at the end.
//
// Registries are reached with go-containerregistry's remote package, with
// credentials from the auth files containers tools and docker use and the
// insecure registries of registries.conf; layouts and archives are read
// here, as files.
package source

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Transport is the kind of place a SOURCE names.
type Transport int

const (
	// Docker is a registry: docker://HOST/REPO[:TAG|@DIGEST].
	Docker Transport = iota + 1
	// OCI is an OCI image layout directory: oci:DIR[:REF].
	OCI
	// OCIArchive is a tar of an OCI image layout: oci-archive:FILE[:REF].
	OCIArchive
	// DockerArchive is what docker save and skopeo write:
	// docker-archive:FILE[:NAME:TAG].
	DockerArchive
)

// String returns the transport's name as skopeo spells it.
func (t Transport) String() string {
	switch t {
	case Docker:
		return "docker"
	case OCI:
		return "oci"
	case OCIArchive:
		return "oci-archive"
	case DockerArchive:
		return "docker-archive"
	}
	return fmt.Sprintf("transport(%d)", int(t))
}

// Reference is a parsed SOURCE.
type Reference struct {
	Transport Transport
	// Path is, for Docker, the image reference (HOST/REPO[:TAG|@DIGEST]);
	// for the others, the directory or file.
	Path string
	// Ref is, for OCI and OCIArchive, the org.opencontainers.image.ref.name
	// of the image in the layout's index; for DockerArchive, the NAME:TAG
	// among the archive's RepoTags; empty for the only image there.
	Ref string
}

// String returns the SOURCE the reference was parsed from, in its
// canonical form.
func (r Reference) String() string {
	switch r.Transport {
	case Docker:
		return "docker://" + r.Path
	case OCI, OCIArchive, DockerArchive:
		if r.Ref != "" {
			return r.Transport.String() + ":" + r.Path + ":" + r.Ref
		}
		return r.Transport.String() + ":" + r.Path
	}
	return r.Path
}

// ErrSyntax is wrapped by Parse's errors.
var ErrSyntax = errors.New("invalid image source")

// refName is what skopeo accepts as an OCI layout's reference name: the
// characters of org.opencontainers.image.ref.name.
var refName = regexp.MustCompile(`^[A-Za-z0-9._:@/+-]+$`)

// Parse reads a SOURCE in skopeo's transport syntax. An OCI layout's or an
// archive's path ends at its first colon, as in skopeo; what follows is
// the REF.
func Parse(s string) (Reference, error) {
	transport, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Reference{}, fmt.Errorf("%w %q: no transport; want docker://, oci:, oci-archive: or docker-archive:", ErrSyntax, s)
	}
	var r Reference
	switch transport {
	case "docker":
		after, ok := strings.CutPrefix(rest, "//")
		if !ok {
			return Reference{}, fmt.Errorf("%w %q: docker: must be followed by //", ErrSyntax, s)
		}
		if _, err := name.ParseReference(after); err != nil {
			return Reference{}, fmt.Errorf("%w %q: %v", ErrSyntax, s, err)
		}
		return Reference{Transport: Docker, Path: after}, nil
	case "oci":
		r.Transport = OCI
	case "oci-archive":
		r.Transport = OCIArchive
	case "docker-archive":
		r.Transport = DockerArchive
	case "containers-storage", "dir", "docker-daemon", "ostree", "sif", "tarball":
		return Reference{}, fmt.Errorf("%w %q: transport %s is not supported; want docker://, oci:, oci-archive: or docker-archive:", ErrSyntax, s, transport)
	default:
		return Reference{}, fmt.Errorf("%w %q: unknown transport %q; want docker://, oci:, oci-archive: or docker-archive:", ErrSyntax, s, transport)
	}
	path, ref, hasRef := strings.Cut(rest, ":")
	if path == "" {
		return Reference{}, fmt.Errorf("%w %q: no path after %s:", ErrSyntax, s, transport)
	}
	if strings.ContainsRune(path, 0) {
		return Reference{}, fmt.Errorf("%w %q: NUL in the path", ErrSyntax, s)
	}
	r.Path = path
	if hasRef {
		switch {
		case ref == "":
			return Reference{}, fmt.Errorf("%w %q: empty reference after the path's colon", ErrSyntax, s)
		case r.Transport == DockerArchive:
			if _, err := name.NewTag(ref); err != nil {
				return Reference{}, fmt.Errorf("%w %q: %v", ErrSyntax, s, err)
			}
		case !refName.MatchString(ref):
			return Reference{}, fmt.Errorf("%w %q: reference %q has characters other than A-Z a-z 0-9 . _ : @ / + -", ErrSyntax, s, ref)
		}
		r.Ref = ref
	}
	return r, nil
}
