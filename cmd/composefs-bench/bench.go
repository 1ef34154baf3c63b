package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// bench runs every measurement on both mounts, interleaved run by run so
// that both see the same machine conditions.
type bench struct {
	cfg     *config
	mounted []mountedAt
}

type mountedAt struct {
	m  mounter
	at string
}

// The ways an image is mounted, as indexes of figures: the kernel, ours,
// and (with --c-server) the C project's FUSE server, run side by side.
const (
	kernelWay = iota
	oursWay
	cWay
	nWays
)

// figures holds one number per way; 0 is "not measured".
type figures [nWays]float64

// measurement is one row of the report: a duration (or size) for each way.
type measurement struct {
	label   string
	vals    figures
	unit    string // "s" or "MiB"
	bar     string // the ratio we must stay under
	cQuoted string // what the C project's FUSE server is quoted at on this row
}

func (b *bench) all() error {
	c := b.cfg
	start := time.Now()
	walk, err := makeWalkCorpus(c, filepath.Join(c.work, "walk"))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "corpus: %d files in %d directories + %d MiB file, made in %.1fs\n",
		len(walk.files), c.dirs, c.bigMiB, time.Since(start).Seconds())
	devFuse := c.transport == "dev"
	ways := []mounter{kernelMount{}, fuseMount{bin: c.bin, devFuse: devFuse}}
	if c.cServer != "" {
		ways = append(ways, cServerMount{bin: c.cServer})
	}

	var rows []measurement
	add := func(label, unit, bar, cQuoted string, vals figures) {
		rows = append(rows, measurement{label, vals, unit, bar, cQuoted})
	}

	vals, err := b.measure(ways, walk, func(_ mounter, _ string, mountSecs float64) (float64, error) { return mountSecs, nil })
	if err != nil {
		return err
	}
	add("mount time", "s", "", "", vals)

	var warm [nWays][]float64
	vals, err = b.measure(ways, walk, func(m mounter, at string, _ float64) (float64, error) {
		cold, err := timed(func() error { return statWalk(at, len(walk.files)) })
		if err != nil {
			return 0, err
		}
		w, err := timed(func() error { return statWalk(at, len(walk.files)) })
		warm[wayIndex(m)] = append(warm[wayIndex(m)], w)
		return cold, err
	})
	if err != nil {
		return err
	}
	add(fmt.Sprintf("cold stat walk, %d files", len(walk.files)), "s", "1.0", "0.70", vals)
	add(fmt.Sprintf("warm stat walk, %d files", len(walk.files)), "s", "1.2", "1.02", medians(warm))

	var rss figures
	vals, err = b.measure(ways, walk, func(m mounter, at string, _ float64) (float64, error) {
		d, err := timed(func() error { return readAll(at, walk.files) })
		if pid := m.daemonPID(at); pid != 0 {
			rss[wayIndex(m)] = max(rss[wayIndex(m)], float64(rssKiB(pid))/1024)
		}
		return d, err
	})
	if err != nil {
		return err
	}
	add(fmt.Sprintf("cold read of %d files", len(walk.files)), "s", "1.5", "1.35", vals)

	if walk.big != "" {
		var warmBig [nWays][]float64
		vals, err = b.measure(ways, walk, func(m mounter, at string, _ float64) (float64, error) {
			p := filepath.Join(at, walk.big)
			cold, err := timed(func() error { return readFile(p) })
			if err != nil {
				return 0, err
			}
			w, err := timed(func() error { return readFile(p) })
			warmBig[wayIndex(m)] = append(warmBig[wayIndex(m)], w)
			if pid := m.daemonPID(at); pid != 0 {
				rss[wayIndex(m)] = max(rss[wayIndex(m)], float64(rssKiB(pid))/1024)
			}
			return cold, err
		})
		if err != nil {
			return err
		}
		add(fmt.Sprintf("cold read, %d MiB file", c.bigMiB), "s", "1.3", "0.91", vals)
		add(fmt.Sprintf("warm read, %d MiB file", c.bigMiB), "s", "1.2", "1.42", medians(warmBig))

		// For comparison with servers that check nothing (the C one's
		// fs-verity check is a TODO): the same cold read, verity off.
		offWays := []mounter{kernelMount{}, fuseMount{bin: c.bin, verityOff: true, devFuse: devFuse}}
		if c.cServer != "" {
			offWays = append(offWays, cServerMount{bin: c.cServer})
		}
		vals, err = b.measure(offWays, walk,
			func(m mounter, at string, _ float64) (float64, error) {
				return timed(func() error { return readFile(filepath.Join(at, walk.big)) })
			})
		if err != nil {
			return err
		}
		add("  cold read, --verity=off", "s", "", "", vals)
	}
	add("daemon RSS (max seen)", "MiB", "", "", rss)

	if !c.skip500 && c.entries > 0 {
		start = time.Now()
		large, err := makeLargeImage(c, filepath.Join(c.work, "large"))
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "large image: %d entries, made in %.1fs\n", c.entries, time.Since(start).Seconds())
		// Only the entries with content under the store need objects, and
		// they are all inline, so the walk corpus' store serves as OBJECTS.
		large.objects = walk.objects
		var mounts [nWays][]float64
		var largeRSS figures
		vals, err := b.measure(ways, large, func(m mounter, at string, mountSecs float64) (float64, error) {
			mounts[wayIndex(m)] = append(mounts[wayIndex(m)], mountSecs)
			d, err := timed(func() error { return statWalk(at, -1) })
			if pid := m.daemonPID(at); pid != 0 {
				largeRSS[wayIndex(m)] = max(largeRSS[wayIndex(m)], float64(rssKiB(pid))/1024)
			}
			return d, err
		})
		if err != nil {
			return err
		}
		add(fmt.Sprintf("%d entries: mount time", c.entries), "s", "0.3 s", "", medians(mounts))
		add(fmt.Sprintf("%d entries: cold stat walk", c.entries), "s", "2.0", "", vals)
		add(fmt.Sprintf("%d entries: RSS after walk", c.entries), "MiB", "256 MiB", "", largeRSS)
	}
	printReport(os.Stdout, rows, c.cServer != "")
	return nil
}

func wayIndex(m mounter) int {
	switch m.(type) {
	case kernelMount:
		return kernelWay
	case cServerMount:
		return cWay
	}
	return oursWay
}

func medians(runs [nWays][]float64) figures {
	var f figures
	for i, r := range runs {
		f[i] = median(r)
	}
	return f
}

// measure runs f cfg.runs times for each way, each time on a fresh mount
// with every cache dropped, and returns the medians of what f measured. f
// also gets the time the mount took.
func (b *bench) measure(ways []mounter, c *corpus, f func(m mounter, at string, mountSecs float64) (float64, error)) (figures, error) {
	var got [nWays][]float64
	for run := 0; run < b.cfg.runs; run++ {
		for _, m := range ways {
			at := filepath.Join(b.cfg.work, "mnt-"+m.name())
			if err := os.MkdirAll(at, 0o755); err != nil {
				return figures{}, err
			}
			if err := dropCaches(); err != nil {
				return figures{}, fmt.Errorf("dropping caches: %w", err)
			}
			mountSecs, err := timed(func() error { return m.mount(c, at) })
			if err != nil {
				return figures{}, fmt.Errorf("%s mount: %w", m.name(), err)
			}
			b.mounted = append(b.mounted, mountedAt{m, at})
			if err := dropCaches(); err != nil {
				return figures{}, err
			}
			v, err := f(m, at, mountSecs)
			uerr := m.unmount(at)
			b.mounted = b.mounted[:len(b.mounted)-1]
			if err != nil {
				return figures{}, fmt.Errorf("%s: %w", m.name(), err)
			}
			if uerr != nil {
				return figures{}, uerr
			}
			got[wayIndex(m)] = append(got[wayIndex(m)], v)
			if b.cfg.verbose {
				fmt.Fprintf(os.Stderr, "  run %d %-15s %10.4f\n", run+1, m.name(), v)
			}
		}
	}
	return medians(got), nil
}

func (b *bench) unmountAll() {
	for i := len(b.mounted) - 1; i >= 0; i-- {
		b.mounted[i].m.unmount(b.mounted[i].at)
	}
}

func timed(f func() error) (float64, error) {
	start := time.Now()
	err := f()
	return time.Since(start).Seconds(), err
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// statWalk lists every directory and lstats every entry, as `find -ls`
// does; want >= 0 checks the number of regular files seen.
func statWalk(root string, want int) error {
	files := 0
	var walk func(dir string) error
	walk = func(dir string) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			if fi.IsDir() {
				if err := walk(p); err != nil {
					return err
				}
			} else if fi.Mode().IsRegular() {
				files++
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return err
	}
	if want >= 0 && files < want {
		return fmt.Errorf("walk of %s saw %d files, want at least %d", root, files, want)
	}
	return nil
}

var readBuf = make([]byte, 1<<20)

func readFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		_, err := f.Read(readBuf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
	}
}

func readAll(root string, files []string) error {
	for _, f := range files {
		if err := readFile(filepath.Join(root, f)); err != nil {
			return err
		}
	}
	return nil
}

func printReport(w io.Writer, rows []measurement, withC bool) {
	fmt.Fprintf(w, "%-36s %12s %12s %8s %9s %10s", "measurement", "kernel", "ours", "ratio", "bar", "C quoted")
	if withC {
		fmt.Fprintf(w, " %12s %8s", "C here", "C ratio")
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		k, o := fmtVal(r.vals[kernelWay], r.unit), fmtVal(r.vals[oursWay], r.unit)
		if r.vals[kernelWay] == 0 {
			k = "-"
		}
		fmt.Fprintf(w, "%-36s %12s %12s %8s %9s %10s", r.label, k, o, ratio(r.vals[oursWay], r.vals[kernelWay]), dash(r.bar), dash(r.cQuoted))
		if withC {
			c := "-"
			if r.vals[cWay] > 0 {
				c = fmtVal(r.vals[cWay], r.unit)
			}
			fmt.Fprintf(w, " %12s %8s", c, ratio(r.vals[cWay], r.vals[kernelWay]))
		}
		fmt.Fprintln(w)
	}
}

func ratio(v, kernel float64) string {
	if kernel > 0 && v > 0 {
		return fmt.Sprintf("%.2f", v/kernel)
	}
	return "-"
}

func fmtVal(v float64, unit string) string {
	if unit == "s" {
		if v < 1 {
			return fmt.Sprintf("%.1f ms", v*1000)
		}
		return fmt.Sprintf("%.3f s", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
