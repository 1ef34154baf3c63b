package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/composefs/composefs-go/internal/registry"
)

// The OCI rows: an image of the Debian root, one layer, served by a
// registry on 127.0.0.1, pulled and mounted by cfsctl, against the same
// image copied by skopeo and unpacked by umoci, the way a container
// runtime without composefs gets a root filesystem. umoci is the
// reference, as the kernel is in the main table; the mounts of the main
// table are not involved, so these rows are a table of their own.

// ociRef is the image's repository and tag in the registry.
const ociRef = "debian:bench"

// ociTools are the programs the OCI rows run besides the bench's own,
// with the Debian packages that install them.
var ociTools = []struct{ path, pkg string }{
	{"umoci", "umoci"},
	{"skopeo", "skopeo"},
	{registry.Path, "docker-registry"},
}

// missingOCITool names the first program of ociTools not installed, and
// its package; nil when all are.
func missingOCITool() error {
	for _, t := range ociTools {
		if _, err := exec.LookPath(t.path); err != nil {
			return fmt.Errorf("no %s (apt-get install %s)", t.path, t.pkg)
		}
	}
	return nil
}

// cfsctlMount is "cfsctl oci mount" of the image pulled as image into
// repo: a mounter so that a signal's cleanup takes it down too.
type cfsctlMount struct{ bin, repo, image, log string }

func (cfsctlMount) name() string { return "cfsctl" }

func (m cfsctlMount) mount(_ *corpus, at string) error {
	// Block hashes beside the repository, not in the machine's cache.
	trees := filepath.Join(filepath.Dir(m.repo), "trees")
	return runCmd(filepath.Join(m.bin, "cfsctl"), "--repo", m.repo, "oci", "mount", "--log", m.log, "--tree-cache", trees, m.image, at)
}

func (m cfsctlMount) unmount(at string) error { return unmountDaemon(at, m.daemonPID(at)) }

func (cfsctlMount) daemonPID(at string) int { return daemonOf("cfsctl", at) }

// ociEnv keeps skopeo and cfsctl from the caller's credentials and
// registries.conf: the registry is local and open.
var ociEnv = []string{"REGISTRY_AUTH_FILE=", "CONTAINERS_REGISTRIES_CONF="}

// runOCI runs a program of the OCI rows with ociEnv and returns how long
// it took.
func runOCI(name string, args ...string) (float64, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), ociEnv...)
	return timed(func() error {
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %v: %v: %s", name, args, err, lastLines(out, 5))
		}
		return nil
	})
}

// ociGroup measures the OCI rows on the Debian root, or says in one line
// why they are skipped.
func (b *bench) ociGroup() error {
	c := b.cfg
	root, err := debianRoot(c)
	if errors.Is(err, errNoDebootstrap) {
		fmt.Fprintf(os.Stderr, "skipping the oci rows: %v\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	if err := missingOCITool(); err != nil {
		fmt.Fprintf(os.Stderr, "skipping the oci rows: %v\n", err)
		return nil
	}
	if _, err := os.Stat(filepath.Join(c.bin, "cfsctl")); err != nil {
		return fmt.Errorf("the oci rows need cfsctl in --bin: %w", err)
	}
	dir := filepath.Join(c.work, "oci")
	layout := filepath.Join(dir, "layout")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	start := time.Now()
	if err := makeLayout(layout, root); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "OCI layout of %s (one layer, umoci insert) made in %.1fs\n", root, time.Since(start).Seconds())

	host, stop, err := registry.Start(filepath.Join(dir, "registry"))
	if err != nil {
		return err
	}
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintf(os.Stderr, "composefs-bench: %v\n", err)
		}
	}()
	src := "docker://" + host + "/" + ociRef
	if _, err := runOCI("skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", "oci:"+layout+":debian", src); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "pushed to %s\n", src)

	rows, err := b.measureOCI(dir, src)
	if err != nil {
		return err
	}
	b.addTable(ociTable(rows))
	return nil
}

// makeLayout writes an OCI layout at layout whose image "debian" has root
// as its one layer: umoci keeps owners, modes, xattrs and hardlinks.
func makeLayout(layout, root string) error {
	for _, args := range [][]string{
		{"init", "--layout", layout},
		{"new", "--image", layout + ":debian"},
		{"insert", "--image", layout + ":debian", root, "/"},
	} {
		if _, err := runOCI("umoci", args...); err != nil {
			return err
		}
	}
	return nil
}

// measureOCI runs both ways runsFor("oci") times, interleaved, each run
// from an empty repository or directory with every cache dropped, and
// returns the table's rows, medians of the runs.
func (b *bench) measureOCI(dir, src string) ([]refRow, error) {
	c := b.cfg
	var (
		cfsPull, cfsMount, cfsBoth, again []float64
		skoCopy, unpack, umociBoth        []float64
		repoMiB, bundleMiB                float64
	)
	repo := filepath.Join(dir, "repo")
	mnt := filepath.Join(dir, "mnt")
	ociDir := filepath.Join(dir, "skopeo")
	bundle := filepath.Join(dir, "bundle")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	cfsctl := filepath.Join(c.bin, "cfsctl")
	m := cfsctlMount{bin: c.bin, repo: repo, image: "debian", log: filepath.Join(dir, "mount.log")}
	for run := range b.runsFor("oci") {
		// cfsctl: pull into an empty repository, mount, check, unmount;
		// then the same pull again.
		err := func() error {
			if err := os.RemoveAll(repo); err != nil {
				return err
			}
			if err := dropCaches(); err != nil {
				return err
			}
			pull, err := runOCI(cfsctl, "--repo", repo, "oci", "pull", "--tls-verify=false", src, m.image)
			if err != nil {
				return err
			}
			mount, err := b.onMount(m, nil, mnt, func() error { return checkDebian(mnt) })
			if err != nil {
				return err
			}
			if err := dropCaches(); err != nil {
				return err
			}
			a, err := runOCI(cfsctl, "--repo", repo, "oci", "pull", "--tls-verify=false", src, m.image)
			if err != nil {
				return fmt.Errorf("second pull: %w", err)
			}
			if repoMiB, err = diskMiB(repo); err != nil {
				return err
			}
			cfsPull, cfsMount, cfsBoth = append(cfsPull, pull), append(cfsMount, mount), append(cfsBoth, pull+mount)
			again = append(again, a)
			return nil
		}()
		if err != nil {
			if !isMounted(mnt) {
				b.failed("cfsctl", run, err)
			} else {
				return nil, err
			}
		} else if c.verbose {
			fmt.Fprintf(os.Stderr, "  run %d %-15s %10.4f\n", run+1, "cfsctl", cfsBoth[len(cfsBoth)-1])
		}

		// umoci: skopeo copy into an empty layout, unpack into an empty
		// bundle, check.
		err = func() error {
			for _, d := range []string{ociDir, bundle} {
				if err := os.RemoveAll(d); err != nil {
					return err
				}
			}
			if err := dropCaches(); err != nil {
				return err
			}
			cp, err := runOCI("skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", src, "oci:"+ociDir+":bench")
			if err != nil {
				return err
			}
			up, err := runOCI("umoci", "unpack", "--image", ociDir+":bench", bundle)
			if err != nil {
				return err
			}
			if err := checkDebian(filepath.Join(bundle, "rootfs")); err != nil {
				return err
			}
			if bundleMiB, err = diskMiB(bundle); err != nil {
				return err
			}
			skoCopy, unpack, umociBoth = append(skoCopy, cp), append(unpack, up), append(umociBoth, cp+up)
			return nil
		}()
		if err != nil {
			b.failed("umoci", run, err)
		} else if c.verbose {
			fmt.Fprintf(os.Stderr, "  run %d %-15s %10.4f\n", run+1, "umoci", umociBoth[len(umociBoth)-1])
		}
	}
	return []refRow{
		{"OCI pull + mount, Debian minbase, local registry", "s", median(umociBoth), median(cfsBoth), ""},
		{"  pull: skopeo copy / cfsctl oci pull", "s", median(skoCopy), median(cfsPull), ""},
		{"  mount: umoci unpack / cfsctl oci mount", "s", median(unpack), median(cfsMount), ""},
		{"OCI pull of the same image again (layers present)", "s", 0, median(again), ""},
		{"on disk: umoci's bundle / cfsctl's repository", "MiB", bundleMiB, repoMiB, ""},
	}, nil
}

// checkDebian checks that root is a Debian root, through the mount or
// in the bundle: what is measured must have made the files there.
func checkDebian(root string) error {
	b, err := os.ReadFile(filepath.Join(root, "etc", "debian_version"))
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return fmt.Errorf("%s: empty /etc/debian_version", root)
	}
	return nil
}

// isMounted reports whether something is mounted at dir: its device
// differs from its parent's.
func isMounted(dir string) bool {
	var st, pst syscall.Stat_t
	if syscall.Stat(dir, &st) != nil || syscall.Stat(filepath.Dir(dir), &pst) != nil {
		return false
	}
	return st.Dev != pst.Dev
}

// diskMiB is the space the files under root take on disk, in MiB, each
// inode counted once, as du counts it.
func diskMiB(root string) (float64, error) {
	seen := map[[2]uint64]bool{}
	var blocks int64
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if !seen[key] {
			seen[key] = true
			blocks += st.Blocks
		}
		return nil
	})
	return float64(blocks*512) / (1 << 20), err
}

// ociTable is the OCI table: umoci's figures, the reference, and
// cfsctl's.
func ociTable(rows []refRow) refTable {
	return refTable{
		title: "OCI image of the Debian root from a registry on 127.0.0.1; reference: skopeo copy + umoci unpack",
		ref:   "umoci", ours: "cfsctl", rows: rows,
	}
}
