package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The workloads users run, each as separate processes, as opposed to the
// rows above that read from inside the bench: every file costs a LOOKUP,
// an OPEN and a RELEASE here, which in-process reads of a few files hide.

// treeRead reads every file of the tree, cat by cat.
const treeRead = `find "$1" -type f -print0 | xargs -0 cat > /dev/null`

// tarRead archives the tree into a pipe: GNU tar writing to /dev/null
// itself notices and reads no file contents, so the archive goes through
// wc, whose count shows that it was all read.
const tarRead = `tar -cf - -C "$1" . | wc -c`

// dpkgVerify checks every installed file's MD5 sum, reading its contents.
const dpkgVerify = `dpkg --root="$1" --verify`

// goProgram is built with GOROOT on the mount: it pulls in a large part
// of the standard library, whose sources the compiler then reads.
const goProgram = `package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.Sum256([]byte(r.URL.Path))
		json.NewEncoder(w).Encode(map[string]string{"sha256": fmt.Sprintf("%x", sum)})
	})
	http.ListenAndServe("localhost:8080", nil)
}
`

func (b *bench) workloads(ways []mounter, add func(label, unit, bar, cQuoted string, vals figures)) error {
	c := b.cfg
	if c.wants("tree") {
		tree, err := b.corpusOnce("tree", makeReadTree)
		if err != nil {
			return err
		}
		var hwm figures
		cold, warm, err := b.coldWarm("tree", ways, tree, treeRead, nil, func(m mounter, at string) {
			if pid := m.daemonPID(at); pid != 0 {
				hwm[wayIndex(m)] = max(hwm[wayIndex(m)], float64(statusKiB(pid, "VmHWM"))/1024)
			}
		})
		if err != nil {
			return err
		}
		label := fmt.Sprintf("find|xargs cat, %d files", len(tree.files))
		add(label+", cold", "s", "", "", cold)
		add(label+", warm", "s", "", "", warm)
		add("  daemon peak RSS (VmHWM) on it", "MiB", "", "", hwm)
	}

	if c.wants("dpkg", "tar") {
		root, err := debianRoot(c)
		if errors.Is(err, errNoDebootstrap) {
			fmt.Fprintf(os.Stderr, "skipping the dpkg and tar rows: %v\n", err)
		} else if err != nil {
			return err
		} else if err := b.rootfsRows(ways, root, add); err != nil {
			return err
		}
	}

	if c.wants("gobuild") {
		if err := b.goBuildRow(ways, add); err != nil {
			return err
		}
	}

	if c.wants("oci") {
		if err := b.ociGroup(); err != nil {
			return err
		}
	}

	if c.wants("http") {
		if err := b.httpGroup(); err != nil {
			return err
		}
	}
	return nil
}

// coldWarm runs script on each mount twice, with every cache dropped and
// then with everything cached, and returns the medians of both. check, if
// not nil, judges each run's output; after runs sees the mount before it
// goes.
func (b *bench) coldWarm(group string, ways []mounter, cp *corpus, script string,
	check func(m mounter, out []byte) error, after func(m mounter, at string)) (cold, warm figures, err error) {
	var warmRuns [nWays][]float64
	once := func(m mounter, at string) (float64, error) {
		d, out, err := shell(nil, "", script, at)
		if err == nil && check != nil {
			err = check(m, out)
		}
		return d, err
	}
	cold, err = b.measure(b.runsFor(group), ways, cp, func(m mounter, at string, _ float64) (float64, error) {
		c, err := once(m, at)
		if err != nil {
			return 0, err
		}
		w, err := once(m, at)
		if err != nil {
			return 0, err
		}
		warmRuns[wayIndex(m)] = append(warmRuns[wayIndex(m)], w)
		if after != nil {
			after(m, at)
		}
		return c, nil
	})
	return cold, medians(warmRuns), err
}

// shell runs script with sh, args being $1..., in dir with env added to
// the bench's environment, and returns how long it took and its output.
func shell(env []string, dir, script string, args ...string) (float64, []byte, error) {
	cmd := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	d, err := timed(cmd.Run)
	if err != nil {
		return d, nil, fmt.Errorf("%s %s: %v: %s", script, strings.Join(args, " "), err, lastLines(errOut.Bytes(), 5))
	}
	return d, out.Bytes(), nil
}

func lastLines(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}

// errNoDebootstrap is why the root filesystem rows are skipped: there is
// no root in the cache and no debootstrap to make one.
var errNoDebootstrap = errors.New("no debootstrap to make a Debian root")

// debianRoot returns the minimal Debian root in the cache, debootstrapping
// it the first time. It is made under another name and renamed when
// complete, so that a run cut short leaves nothing that looks finished.
func debianRoot(c *config) (string, error) {
	dir := filepath.Join(c.cache, "debian-bookworm-minbase")
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return dir, nil
	}
	deb, err := exec.LookPath("debootstrap")
	if err != nil {
		return "", fmt.Errorf("%w (apt-get install debootstrap, or put a root at %s)", errNoDebootstrap, dir)
	}
	mirror := c.mirror
	if mirror == "" {
		mirror = aptMirror()
	}
	tmp := dir + ".partial"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(c.cache, 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "debootstrap --variant=minbase bookworm %s %s (once; kept in --cache)\n", dir, mirror)
	cmd := exec.Command(deb, "--variant=minbase", "bookworm", tmp, mirror)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("debootstrap: %w", err)
	}
	return dir, os.Rename(tmp, dir)
}

// aptMirror is the first Debian mirror apt is configured with that is not
// the security archive.
func aptMirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	for _, p := range append([]string{"/etc/apt/sources.list"}, files...) {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		u := mirrorIn(f)
		f.Close()
		if u != "" {
			return u
		}
	}
	return "http://deb.debian.org/debian"
}

// mirrorIn finds the first mirror in a sources file, in either the
// one-line or the deb822 format; "" if none.
func mirrorIn(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		var urls []string
		switch {
		case len(fields) >= 2 && fields[0] == "URIs:":
			urls = fields[1:]
		case len(fields) >= 3 && fields[0] == "deb":
			// deb [options] URL suite components
			for _, f := range fields[1:] {
				if strings.Contains(f, "://") {
					urls = append(urls, f)
					break
				}
			}
		}
		for _, u := range urls {
			if !strings.Contains(u, "security") {
				return u
			}
		}
	}
	return ""
}

// imageDir images a directory with mkcomposefs, its files' contents going
// into a digest store beside the image.
func imageDir(c *config, src, dir string) (*corpus, error) {
	cp := &corpus{image: filepath.Join(dir, "image.cfs"), objects: filepath.Join(dir, "objects")}
	if err := os.MkdirAll(cp.objects, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	cmd := exec.Command(filepath.Join(c.bin, "mkcomposefs"), "--digest-store="+cp.objects, src, cp.image)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkcomposefs %s: %v: %s", src, err, out)
	}
	fmt.Fprintf(os.Stderr, "imaged %s in %.1fs\n", src, time.Since(start).Seconds())
	return cp, nil
}

// contentBytes adds up the sizes of the regular files under root, each
// inode once, as tar stores them.
func contentBytes(root string) (int64, error) {
	seen := map[uint64]bool{}
	var total int64
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		total += fi.Size()
		return nil
	})
	return total, err
}

// rootfsRows runs dpkg --verify and tar on the image of the Debian root.
func (b *bench) rootfsRows(ways []mounter, root string, add func(label, unit, bar, cQuoted string, vals figures)) error {
	c := b.cfg
	cp, err := imageDir(c, root, filepath.Join(c.work, "rootfs"))
	if err != nil {
		return err
	}
	if c.wants("dpkg") {
		// Every mount must verify as the kernel's does: the first answer
		// seen is the reference for the others.
		var want []byte
		check := func(m mounter, out []byte) error {
			if want == nil {
				want = bytes.Clone(out)
			}
			if !bytes.Equal(out, want) {
				return fmt.Errorf("dpkg --verify says\n%s\nwhere the first mount said\n%s", lastLines(out, 10), lastLines(want, 10))
			}
			return nil
		}
		cold, warm, err := b.coldWarm("dpkg", ways, cp, dpkgVerify, check, nil)
		if err != nil {
			return err
		}
		add("dpkg --verify, Debian minbase, cold", "s", "", "", cold)
		add("dpkg --verify, Debian minbase, warm", "s", "", "", warm)
		// The cold row again, each of our mounts starting with no
		// trees kept: what the first mount of an image costs.
		first, _, err := b.coldWarm("dpkg", firstMounts(ways, filepath.Join(c.work, "trees-first")), cp, dpkgVerify, check, nil)
		if err != nil {
			return err
		}
		add("  cold, first mount (no trees kept)", "s", "", "", first)
	}
	if c.wants("tar") {
		content, err := contentBytes(root)
		if err != nil {
			return err
		}
		check := func(m mounter, out []byte) error {
			n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			if err != nil || n < content {
				return fmt.Errorf("tar wrote %q bytes, fewer than the %d bytes of file contents", bytes.TrimSpace(out), content)
			}
			return nil
		}
		cold, warm, err := b.coldWarm("tar", ways, cp, tarRead, check, nil)
		if err != nil {
			return err
		}
		add("tar | wc -c, Debian minbase, cold", "s", "", "", cold)
		add("tar | wc -c, Debian minbase, warm", "s", "", "", warm)
	}
	return nil
}

// goBuildRow builds goProgram with the image of --goroot mounted as GOROOT
// and its go command, each run with an empty build cache so that every
// package of the standard library it needs is compiled from the mount.
func (b *bench) goBuildRow(ways []mounter, add func(label, unit, bar, cQuoted string, vals figures)) error {
	c := b.cfg
	cp, err := imageDir(c, c.goroot, filepath.Join(c.work, "goroot"))
	if err != nil {
		return err
	}
	src := filepath.Join(c.work, "goprog")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(goProgram), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module goprog\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	vals, err := b.measure(b.runsFor("gobuild"), ways, cp, func(m mounter, at string, _ float64) (float64, error) {
		cache, err := os.MkdirTemp(c.work, "gocache.")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(cache)
		env := []string{
			"GOROOT=" + at, "PATH=" + filepath.Join(at, "bin") + ":" + os.Getenv("PATH"),
			"GOCACHE=" + cache, "GOPATH=" + filepath.Join(cache, "gopath"),
			// Nothing from the bench's own Go setup: no config file, no
			// toolchain switch, no module download, no cgo (the C
			// compiler's reads are not the mount's).
			"GOENV=off", "GOTOOLCHAIN=local", "GOPROXY=off", "GOFLAGS=-trimpath", "CGO_ENABLED=0",
		}
		d, _, err := shell(env, src, `"$1"/bin/go build -o /dev/null .`, at)
		return d, err
	})
	if err != nil {
		return err
	}
	add("go build net/http+json+sha256, cold", "s", "", "", vals)
	return nil
}
