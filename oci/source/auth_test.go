package source

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestLookupAuth(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	file := []byte(`{"auths": {
		"reg.io": {"auth": "` + enc("host:h") + `"},
		"reg.io/team": {"auth": "` + enc("team:t") + `"},
		"https://legacy.io/v1/": {"auth": "` + enc("legacy:l") + `"},
		"docker.io": {"username": "hub", "password": "p"},
		"bad.io": {"auth": "!!!"}
	}}`)
	for _, c := range []struct{ repo, host, user string }{
		{"reg.io/other/x", "reg.io", "host"},
		{"reg.io/team/x", "reg.io", "team"},
		{"reg.io/team", "reg.io", "team"},
		{"reg.io/teamx/y", "reg.io", "host"},
		{"legacy.io/x", "legacy.io", "legacy"},
		{"index.docker.io/library/alpine", "index.docker.io", "hub"},
		{"none.io/x", "none.io", ""},
	} {
		cfg, ok, err := lookupAuth(file, c.repo, c.host)
		if err != nil || ok != (c.user != "") || cfg.Username != c.user {
			t.Errorf("%s: %+v, %v, %v; want user %q", c.repo, cfg, ok, err, c.user)
		}
	}
	if _, _, err := lookupAuth(file, "bad.io/x", "bad.io"); err == nil {
		t.Error("auth that is not base64 accepted")
	}
	if _, _, err := lookupAuth([]byte("{"), "a/b", "a"); err == nil {
		t.Error("a broken file accepted")
	}
}

// FuzzLookupAuth: any file and name is an answer or an error, no panic.
func FuzzLookupAuth(f *testing.F) {
	f.Add([]byte(`{"auths":{"a.io":{"auth":"dTpw"}}}`), "a.io/x/y")
	f.Fuzz(func(t *testing.T, file []byte, repo string) {
		host, _, _ := strings.Cut(repo, "/")
		lookupAuth(file, repo, host)
	})
}
