package source

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// keychain returns where credentials for a registry come from, in the
// order containers tools look: the auth file given (Options.AuthFile,
// else $REGISTRY_AUTH_FILE), ${XDG_RUNTIME_DIR}/containers/auth.json,
// ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json, then docker's
// ~/.docker/config.json and its credential helpers
// (go-containerregistry's default keychain). The first file with an entry
// for the registry wins.
func keychain(authFile string) (authn.Keychain, error) {
	var files []string
	if authFile != "" {
		if _, err := os.Stat(authFile); err != nil {
			return nil, fmt.Errorf("auth file: %w", err)
		}
		files = append(files, authFile)
	} else if env := os.Getenv("REGISTRY_AUTH_FILE"); env != "" {
		files = append(files, env)
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		files = append(files, filepath.Join(dir, "containers", "auth.json"))
	}
	// Where podman login keeps credentials across reboots.
	if dir := os.Getenv("XDG_CONFIG_HOME"); dir != "" {
		files = append(files, filepath.Join(dir, "containers", "auth.json"))
	} else if home, err := os.UserHomeDir(); err == nil {
		files = append(files, filepath.Join(home, ".config", "containers", "auth.json"))
	}
	var chain []authn.Keychain
	for _, f := range files {
		chain = append(chain, authFileKeychain{f})
	}
	return authn.NewMultiKeychain(append(chain, authn.DefaultKeychain)...), nil
}

// authFileKeychain reads credentials from a containers auth file
// ({"auths": {"HOST[/PATH]": {"auth": base64(USER:PASSWORD)}}}); a
// missing file has none.
type authFileKeychain struct{ path string }

// authEntry is one registry's entry in an auth file.
type authEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

func (k authFileKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	b, err := os.ReadFile(k.path)
	if os.IsNotExist(err) {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	cfg, ok, err := lookupAuth(b, r.String(), r.RegistryStr())
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", k.path, err)
	}
	if !ok {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(cfg), nil
}

// lookupAuth finds the most specific entry for repository repo (HOST/PATH)
// of registry host in an auth file's contents: HOST/PATH, then its parent
// namespaces, then HOST. Keys written as URLs (https://HOST/v1/) name
// their host.
func lookupAuth(file []byte, repo, host string) (authn.AuthConfig, bool, error) {
	var doc struct {
		Auths map[string]authEntry `json:"auths"`
	}
	if err := json.Unmarshal(file, &doc); err != nil {
		return authn.AuthConfig{}, false, err
	}
	entries := make(map[string]authEntry, len(doc.Auths))
	for key, e := range doc.Auths {
		if rest, ok := cutScheme(key); ok {
			key, _, _ = strings.Cut(rest, "/")
		}
		if key == "docker.io" || strings.HasPrefix(key, "docker.io/") {
			key = "index." + key
		}
		entries[strings.TrimSuffix(key, "/")] = e
	}
	if !strings.HasPrefix(repo, host+"/") {
		repo = host
	}
	for key := repo; ; {
		if e, ok := entries[key]; ok {
			cfg, err := e.config()
			return cfg, err == nil, err
		}
		i := strings.LastIndexByte(key, '/')
		if i < 0 {
			return authn.AuthConfig{}, false, nil
		}
		key = key[:i]
	}
}

func cutScheme(key string) (string, bool) {
	for _, s := range []string{"https://", "http://"} {
		if rest, ok := strings.CutPrefix(key, s); ok {
			return rest, true
		}
	}
	return key, false
}

// config decodes an entry's auth field, the base64 of USER:PASSWORD, when
// it has one.
func (e authEntry) config() (authn.AuthConfig, error) {
	cfg := authn.AuthConfig{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken}
	if e.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return authn.AuthConfig{}, fmt.Errorf("auth is not base64: %v", err)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return authn.AuthConfig{}, fmt.Errorf("auth is not USER:PASSWORD")
		}
		cfg.Username, cfg.Password = user, pass
	}
	return cfg, nil
}
