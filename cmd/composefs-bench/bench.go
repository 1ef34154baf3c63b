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

// measurement is one row of the report: a duration (or size) for each way.
type measurement struct {
	label   string
	kernel  float64
	ours    float64
	unit    string // "s" or "MiB"
	bar     string // the ratio we must stay under
	cServer string // what the C project's FUSE server measured on this row
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
	ways := []mounter{kernelMount{}, fuseMount{bin: c.bin}}

	var rows []measurement
	add := func(label, unit, bar, cServer string, vals [2]float64) {
		rows = append(rows, measurement{label, vals[0], vals[1], unit, bar, cServer})
	}

	vals, err := b.measure(ways, walk, func(_ mounter, _ string, mountSecs float64) (float64, error) { return mountSecs, nil })
	if err != nil {
		return err
	}
	add("mount time", "s", "", "", vals)

	var warm [2][]float64
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
	add(fmt.Sprintf("warm stat walk, %d files", len(walk.files)), "s", "1.2", "1.02", [2]float64{median(warm[0]), median(warm[1])})

	var rss float64
	vals, err = b.measure(ways, walk, func(m mounter, at string, _ float64) (float64, error) {
		d, err := timed(func() error { return readAll(at, walk.files) })
		if pid := m.daemonPID(at); pid != 0 {
			rss = max(rss, float64(rssKiB(pid))/1024)
		}
		return d, err
	})
	if err != nil {
		return err
	}
	add(fmt.Sprintf("cold read of %d files", len(walk.files)), "s", "1.5", "1.35", vals)

	if walk.big != "" {
		var warmBig [2][]float64
		vals, err = b.measure(ways, walk, func(m mounter, at string, _ float64) (float64, error) {
			p := filepath.Join(at, walk.big)
			cold, err := timed(func() error { return readFile(p) })
			if err != nil {
				return 0, err
			}
			w, err := timed(func() error { return readFile(p) })
			warmBig[wayIndex(m)] = append(warmBig[wayIndex(m)], w)
			if pid := m.daemonPID(at); pid != 0 {
				rss = max(rss, float64(rssKiB(pid))/1024)
			}
			return cold, err
		})
		if err != nil {
			return err
		}
		add(fmt.Sprintf("cold read, %d MiB file", c.bigMiB), "s", "1.3", "0.91", vals)
		add(fmt.Sprintf("warm read, %d MiB file", c.bigMiB), "s", "1.2", "1.42", [2]float64{median(warmBig[0]), median(warmBig[1])})

		// For comparison with servers that check nothing (the C one's
		// fs-verity check is a TODO): the same cold read, verity off.
		vals, err = b.measure([]mounter{kernelMount{}, fuseMount{bin: c.bin, verityOff: true}}, walk,
			func(m mounter, at string, _ float64) (float64, error) {
				return timed(func() error { return readFile(filepath.Join(at, walk.big)) })
			})
		if err != nil {
			return err
		}
		add("  cold read, --verity=off", "s", "", "", vals)
	}
	add("daemon RSS (max seen)", "MiB", "", "", [2]float64{0, rss})

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
		var mounts [2][]float64
		var largeRSS float64
		vals, err := b.measure(ways, large, func(m mounter, at string, mountSecs float64) (float64, error) {
			mounts[wayIndex(m)] = append(mounts[wayIndex(m)], mountSecs)
			d, err := timed(func() error { return statWalk(at, -1) })
			if pid := m.daemonPID(at); pid != 0 {
				largeRSS = max(largeRSS, float64(rssKiB(pid))/1024)
			}
			return d, err
		})
		if err != nil {
			return err
		}
		add(fmt.Sprintf("%d entries: mount time", c.entries), "s", "0.3 s", "", [2]float64{median(mounts[0]), median(mounts[1])})
		add(fmt.Sprintf("%d entries: cold stat walk", c.entries), "s", "2.0", "", vals)
		add(fmt.Sprintf("%d entries: RSS after walk", c.entries), "MiB", "256 MiB", "", [2]float64{0, largeRSS})
	}
	printReport(os.Stdout, rows)
	return nil
}

func wayIndex(m mounter) int {
	if _, ok := m.(kernelMount); ok {
		return 0
	}
	return 1
}

// measure runs f cfg.runs times for each way, each time on a fresh mount
// with every cache dropped, and returns the medians of what f measured. f
// also gets the time the mount took.
func (b *bench) measure(ways []mounter, c *corpus, f func(m mounter, at string, mountSecs float64) (float64, error)) ([2]float64, error) {
	var got [2][]float64
	for run := 0; run < b.cfg.runs; run++ {
		for i, m := range ways {
			at := filepath.Join(b.cfg.work, "mnt-"+m.name())
			if err := os.MkdirAll(at, 0o755); err != nil {
				return [2]float64{}, err
			}
			if err := dropCaches(); err != nil {
				return [2]float64{}, fmt.Errorf("dropping caches: %w", err)
			}
			mountSecs, err := timed(func() error { return m.mount(c, at) })
			if err != nil {
				return [2]float64{}, fmt.Errorf("%s mount: %w", m.name(), err)
			}
			b.mounted = append(b.mounted, mountedAt{m, at})
			if err := dropCaches(); err != nil {
				return [2]float64{}, err
			}
			v, err := f(m, at, mountSecs)
			uerr := m.unmount(at)
			b.mounted = b.mounted[:len(b.mounted)-1]
			if err != nil {
				return [2]float64{}, fmt.Errorf("%s: %w", m.name(), err)
			}
			if uerr != nil {
				return [2]float64{}, uerr
			}
			got[i] = append(got[i], v)
			if b.cfg.verbose {
				fmt.Fprintf(os.Stderr, "  run %d %-15s %10.4f\n", run+1, m.name(), v)
			}
		}
	}
	return [2]float64{median(got[0]), median(got[1])}, nil
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

func printReport(w io.Writer, rows []measurement) {
	fmt.Fprintf(w, "%-36s %12s %12s %8s %9s %10s\n", "measurement", "kernel", "ours", "ratio", "bar", "C fuse")
	for _, r := range rows {
		k, o := fmtVal(r.kernel, r.unit), fmtVal(r.ours, r.unit)
		ratio := "-"
		if r.kernel > 0 && r.ours > 0 {
			ratio = fmt.Sprintf("%.2f", r.ours/r.kernel)
		}
		if r.kernel == 0 {
			k = "-"
		}
		fmt.Fprintf(w, "%-36s %12s %12s %8s %9s %10s\n", r.label, k, o, ratio, dash(r.bar), dash(r.cServer))
	}
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
