package source

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// remoteStore gives the manifests and blobs of a registry repository,
// through one Puller, so that the connection and the token it got are
// reused.
type remoteStore struct {
	repo   name.Repository
	puller *remote.Puller
}

func (s remoteStore) manifest(ctx context.Context, d v1.Hash) ([]byte, error) {
	desc, err := s.puller.Get(ctx, s.repo.Digest(d.String()))
	if err != nil {
		return nil, err
	}
	return desc.Manifest, nil
}

func (s remoteStore) blob(ctx context.Context, d v1.Hash) (io.ReadCloser, error) {
	l, err := s.puller.Layer(ctx, s.repo.Digest(d.String()))
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

func (s remoteStore) close() error { return nil }

// openRemote opens the image ref names in a registry.
func openRemote(ctx context.Context, ref string, opts Options, want v1.Platform) (*Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	conf := opts.RegistriesConf
	if conf == "" {
		conf = os.Getenv("CONTAINERS_REGISTRIES_CONF")
	}
	if conf == "" {
		conf = DefaultRegistriesConf
	}
	rc, err := loadRegistriesConf(conf)
	if err != nil {
		return nil, fmt.Errorf("registries.conf: %w", err)
	}
	insecure := opts.SkipTLSVerify || rc.insecure(r.Context().Name())
	if insecure {
		if r, err = name.ParseReference(ref, name.Insecure); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	var rt http.RoundTripper = tr
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	} else {
		rt = tlsOnly{tr}
	}
	kc, err := keychain(opts.AuthFile)
	if err != nil {
		return nil, err
	}
	puller, err := remote.NewPuller(
		remote.WithTransport(rt),
		remote.WithAuthFromKeychain(kc),
		remote.WithUserAgent("composefs-go"),
	)
	if err != nil {
		return nil, err
	}
	st := remoteStore{repo: r.Context(), puller: puller}
	desc, err := puller.Get(ctx, r)
	if err != nil {
		return nil, err
	}
	if int64(len(desc.Manifest)) > maxManifestSize {
		return nil, fmt.Errorf("manifest %s: longer than %d bytes", desc.Digest, maxManifestSize)
	}
	// go-containerregistry checks a manifest asked for by digest;
	// resolve checks those it asks for in an index.
	return resolve(ctx, st, desc.Manifest, desc.Digest, want)
}

// tlsOnly refuses plain HTTP: go-containerregistry falls back to it for
// registries on loopback and private addresses, where containers tools
// want --tls-verify=false or an insecure entry in registries.conf.
type tlsOnly struct{ next http.RoundTripper }

func (t tlsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("plain HTTP to %s refused: TLS is verified unless --tls-verify=false or registries.conf marks the registry insecure", req.URL.Host)
	}
	return t.next.RoundTrip(req)
}
