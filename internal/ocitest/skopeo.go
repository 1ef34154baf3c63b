package ocitest

import (
	"os"
	"os/exec"
	"testing"
)

// SkopeoPath is skopeo as Debian installs it.
const SkopeoPath = "/usr/bin/skopeo"

// Skopeo runs skopeo with args (after --insecure-policy, so no
// policy.json is needed) and fails the test if it fails; the test is
// skipped when skopeo is not installed.
func Skopeo(t testing.TB, args ...string) {
	t.Helper()
	if _, err := os.Stat(SkopeoPath); err != nil {
		t.Skipf("%s not found (Debian package skopeo)", SkopeoPath)
	}
	cmd := exec.Command(SkopeoPath, append([]string{"--insecure-policy"}, args...)...)
	// skopeo's own registries.conf and auth files are the machine's;
	// keep it from a test's REGISTRY_AUTH_FILE or registries.conf.
	cmd.Env = append(os.Environ(), "REGISTRY_AUTH_FILE=", "CONTAINERS_REGISTRIES_CONF=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, out)
	}
}

// Push copies the OCI layout in layoutDir (its only image, or the one
// named by a ":REF" suffix) to dest ("HOST/REPO:TAG") over plain HTTP,
// every platform of an index; extra flags (--dest-creds USER:PASS) go
// before the source.
func Push(t testing.TB, layoutDir, dest string, flags ...string) {
	t.Helper()
	args := append([]string{"copy", "--all", "--dest-tls-verify=false"}, flags...)
	Skopeo(t, append(args, "oci:"+layoutDir, "docker://"+dest)...)
}
