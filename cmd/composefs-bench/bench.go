package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// bench runs every measurement on every mount, interleaved run by run so
// that all see the same machine conditions.
type bench struct {
	cfg *config
	// mu guards mounted and rows, which a signal's cleanup reads while a
	// measurement may be mounting or adding its rows.
	mu      sync.Mutex
	mounted []mountedAt
	rows    []measurement
	// tables are those of rows with a reference of their own (OCI,
	// HTTP), printed after the main one.
	tables []refTable
	// corpora are those made so far, by name, for groups of rows that
	// share one (corpusOnce).
	corpora map[string]*corpus
	// failures are the runs left out of the figures, and why.
	failures []string
}

type mountedAt struct {
	m  mounter
	at string
}

// The ways an image is mounted, as indexes of figures: the kernel, ours
// over FUSE on io_uring and on /dev/fuse, and (with --c-server) the C
// project's FUSE server, run side by side.
const (
	kernelWay = iota
	uringWay
	devWay
	passthroughWay
	cWay
	nWays
)

// wayNames head the report's columns.
var wayNames = [nWays]string{"kernel", "ours io_uring", "ours /dev/fuse", "ours --passthrough", "C server"}

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

// ways lists the mounts each measurement compares, kernel first.
func (b *bench) ways(verityOff bool) []mounter {
	c := b.cfg
	ways := []mounter{kernelMount{}}
	trees := b.treesDir()
	if c.transport != "dev" {
		ways = append(ways, fuseMount{bin: c.bin, verityOff: verityOff, trees: trees})
	}
	if c.transport != "io_uring" {
		ways = append(ways, fuseMount{bin: c.bin, verityOff: verityOff, devFuse: true, trees: trees})
	}
	if c.passthrough {
		ways = append(ways, fuseMount{bin: c.bin, verityOff: verityOff, devFuse: true, passthrough: true, trees: trees})
	}
	if c.cServer != "" {
		ways = append(ways, cServerMount{bin: c.cServer})
	}
	return ways
}

// treesDir is where our mounts keep the block sums of large objects
// (--tree-cache), shared by every mount of the run as a user's cache is by
// their mounts: a row's first cold mount hashes its large objects whole
// and keeps their sums, and the mounts after it check them as they read.
// It starts empty (removed when the run begins).
func (b *bench) treesDir() string { return filepath.Join(b.cfg.work, "trees") }

// firstMounts is ways with our mounts that keep trees made to start each
// mount with none, as the first mount of an image does, and the others
// (the C server, passthrough, which keeps none) left out.
func firstMounts(ways []mounter, trees string) []mounter {
	var first []mounter
	for _, m := range ways {
		switch m := m.(type) {
		case kernelMount:
			first = append(first, m)
		case fuseMount:
			if m.trees != "" && !m.passthrough && !m.verityOff {
				m.trees, m.firstMount = trees, true
				first = append(first, m)
			}
		}
	}
	return first
}

// runsFor is how many times a row group is measured: --group-runs or
// --runs when given, else the group's own count, fewer for the rows that
// take long each time.
func (b *bench) runsFor(group string) int {
	if n, ok := b.cfg.groupRuns[group]; ok && n > 0 {
		return n
	}
	if b.cfg.runs > 0 {
		return b.cfg.runs
	}
	if n, ok := defaultRuns[group]; ok {
		return n
	}
	return 3
}

func (b *bench) all() error {
	c := b.cfg
	ways := b.ways(false)
	add := func(label, unit, bar, cQuoted string, vals figures) {
		b.mu.Lock()
		b.rows = append(b.rows, measurement{label, vals, unit, bar, cQuoted})
		b.mu.Unlock()
	}
	// The report so far is printed whatever fails later, so that a long
	// run that breaks on its last row still shows the others.
	defer b.report()

	var walk *corpus
	if c.wants("mount", "stat", "read", "big") {
		start := time.Now()
		var err error
		walk, err = makeWalkCorpus(c, filepath.Join(c.work, "walk"))
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "corpus: %d files in %d directories + %d MiB file, made in %.1fs\n",
			len(walk.files), c.dirs, c.bigMiB, time.Since(start).Seconds())
	}

	if c.wants("mount") {
		vals, err := b.measure(b.runsFor("mount"), ways, walk, func(_ mounter, _ string, mountSecs float64) (float64, error) { return mountSecs, nil })
		if err != nil {
			return err
		}
		add("mount time", "s", "", "", vals)
	}

	if c.wants("stat") {
		var warm [nWays][]float64
		vals, err := b.measure(b.runsFor("stat"), ways, walk, func(m mounter, at string, _ float64) (float64, error) {
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
	}

	var rss figures
	if c.wants("read") {
		vals, err := b.measure(b.runsFor("read"), ways, walk, func(m mounter, at string, _ float64) (float64, error) {
			d, err := timed(func() error { return readAll(at, walk.files) })
			if pid := m.daemonPID(at); pid != 0 {
				rss[wayIndex(m)] = max(rss[wayIndex(m)], float64(statusKiB(pid, "VmRSS"))/1024)
			}
			return d, err
		})
		if err != nil {
			return err
		}
		add(fmt.Sprintf("cold read of %d files", len(walk.files)), "s", "1.5", "1.35", vals)
	}

	if c.wants("big") && walk.big != "" {
		var warmBig [nWays][]float64
		vals, err := b.measure(b.runsFor("big"), ways, walk, func(m mounter, at string, _ float64) (float64, error) {
			p := filepath.Join(at, walk.big)
			cold, err := timed(func() error { return readFile(p) })
			if err != nil {
				return 0, err
			}
			w, err := timed(func() error { return readFile(p) })
			warmBig[wayIndex(m)] = append(warmBig[wayIndex(m)], w)
			if pid := m.daemonPID(at); pid != 0 {
				rss[wayIndex(m)] = max(rss[wayIndex(m)], float64(statusKiB(pid, "VmRSS"))/1024)
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
		vals, err = b.measure(b.runsFor("big"), b.ways(true), walk,
			func(m mounter, at string, _ float64) (float64, error) {
				return timed(func() error { return readFile(filepath.Join(at, walk.big)) })
			})
		if err != nil {
			return err
		}
		add("  cold read, --verity=off", "s", "", "", vals)
	}
	if c.wants("read", "big") {
		add("daemon RSS (max seen)", "MiB", "", "", rss)
	}

	if c.wants("large") && !c.skip500 && c.entries > 0 {
		large, err := b.corpusOnce("large", makeLargeImage)
		if err != nil {
			return err
		}
		var mounts [nWays][]float64
		var largeRSS figures
		vals, err := b.measure(b.runsFor("large"), ways, large, func(m mounter, at string, mountSecs float64) (float64, error) {
			mounts[wayIndex(m)] = append(mounts[wayIndex(m)], mountSecs)
			d, err := timed(func() error { return statWalk(at, -1) })
			if pid := m.daemonPID(at); pid != 0 {
				largeRSS[wayIndex(m)] = max(largeRSS[wayIndex(m)], float64(statusKiB(pid, "VmRSS"))/1024)
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

	if err := b.workloads(ways, add); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.failures) > 0 {
		return fmt.Errorf("%d runs failed", len(b.failures))
	}
	return nil
}

// report prints the rows measured so far, once: at the end, or when a
// failure or a signal cuts the run short.
func (b *bench) report() {
	b.mu.Lock()
	defer b.mu.Unlock()
	printReport(os.Stdout, b.rows, b.columns())
	b.rows = nil
	for _, t := range b.tables {
		printRefTable(os.Stdout, t)
	}
	b.tables = nil
	if len(b.failures) > 0 {
		fmt.Printf("%d runs failed, left out of the figures above:\n", len(b.failures))
		for _, f := range b.failures {
			fmt.Printf("  %s\n", f)
		}
	}
	b.failures = nil
}

// addTable adds a table of rows with a reference of their own, printed
// after the main one.
func (b *bench) addTable(t refTable) {
	b.mu.Lock()
	b.tables = append(b.tables, t)
	b.mu.Unlock()
}

// columns are the ways measured, in the report's order.
func (b *bench) columns() []int {
	var cols []int
	for _, m := range b.ways(false) {
		cols = append(cols, wayIndex(m))
	}
	return cols
}

func wayIndex(m mounter) int {
	switch m := m.(type) {
	case kernelMount:
		return kernelWay
	case cServerMount:
		return cWay
	case fuseMount:
		if m.passthrough {
			return passthroughWay
		}
		if m.devFuse {
			return devWay
		}
	}
	return uringWay
}

func medians(runs [nWays][]float64) figures {
	var f figures
	for i, r := range runs {
		f[i] = median(r)
	}
	return f
}

// measure runs f runs times for each way, each time on a fresh mount
// with every cache dropped, and returns the medians of what f measured. f
// also gets the time the mount took. A run that fails (a mount that does
// not come up, a command that fails on it) is left out of the medians and
// reported after the table, and the run goes on: one failure hours into a
// run should not cost the other rows.
func (b *bench) measure(runs int, ways []mounter, c *corpus, f func(m mounter, at string, mountSecs float64) (float64, error)) (figures, error) {
	var got [nWays][]float64
	for run := 0; run < runs; run++ {
		for _, m := range ways {
			at := filepath.Join(b.cfg.work, "mnt-"+mountSlug.Replace(wayNames[wayIndex(m)]))
			if err := os.MkdirAll(at, 0o755); err != nil {
				return figures{}, err
			}
			if err := dropCaches(); err != nil {
				return figures{}, fmt.Errorf("dropping caches: %w", err)
			}
			mountSecs, err := timed(func() error { return m.mount(c, at) })
			if err != nil {
				b.fail(m, at, run, fmt.Errorf("mount: %w", err))
				continue
			}
			b.mu.Lock()
			b.mounted = append(b.mounted, mountedAt{m, at})
			b.mu.Unlock()
			if err := dropCaches(); err != nil {
				return figures{}, err
			}
			v, err := f(m, at, mountSecs)
			uerr := m.unmount(at)
			if uerr != nil {
				// Still mounted: the next run cannot mount here.
				return figures{}, uerr
			}
			b.mu.Lock()
			b.mounted = b.mounted[:len(b.mounted)-1]
			b.mu.Unlock()
			if err != nil {
				b.fail(m, at, run, err)
				continue
			}
			got[wayIndex(m)] = append(got[wayIndex(m)], v)
			if b.cfg.verbose {
				fmt.Fprintf(os.Stderr, "  run %d %-15s %10.4f\n", run+1, wayNames[wayIndex(m)], v)
			}
		}
	}
	return medians(got), nil
}

// fail records a run of m, mounted at at, that failed, to be reported
// after the table with what composefs-fuse logged.
func (b *bench) fail(m mounter, at string, run int, err error) {
	b.failed(wayNames[wayIndex(m)], run, withDaemonLog(at, err))
}

// failed records a run of who that failed.
func (b *bench) failed(who string, run int, err error) {
	msg := fmt.Sprintf("run %d, %s: %v", run+1, who, err)
	fmt.Fprintf(os.Stderr, "  FAILED %s\n", msg)
	b.mu.Lock()
	b.failures = append(b.failures, msg)
	b.mu.Unlock()
}

// detachAll detaches every mount lazily: on a signal, the commands reading
// them may still be running, and the mounts go when they are done.
func (b *bench) detachAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.mounted) - 1; i >= 0; i-- {
		at := b.mounted[i].at
		unix.Unmount(at, unix.MNT_DETACH)
		if _, ok := b.mounted[i].m.(kernelMount); ok {
			unix.Unmount(at+".erofs", unix.MNT_DETACH)
		}
	}
	b.mounted = nil
}

// mountSlug makes a way's name a mountpoint's: "ours /dev/fuse" is
// mnt-ours-devfuse.
var mountSlug = strings.NewReplacer(" ", "-", "/", "")

func (b *bench) unmountAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
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
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
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

// printReport prints one table: the kernel's figure, then for each other
// way its figure and its ratio to the kernel's, then the bars.
func printReport(w io.Writer, rows []measurement, cols []int) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "%-42s %10s", "measurement", wayNames[kernelWay])
	for _, col := range cols[1:] {
		fmt.Fprintf(w, "  %14s %6s", wayNames[col], "ratio")
	}
	fmt.Fprintf(w, " %8s %8s\n", "bar", "C quoted")
	for _, r := range rows {
		k := "-"
		if r.vals[kernelWay] > 0 {
			k = fmtVal(r.vals[kernelWay], r.unit)
		}
		fmt.Fprintf(w, "%-42s %10s", r.label, k)
		for _, col := range cols[1:] {
			v := "-"
			if r.vals[col] > 0 {
				v = fmtVal(r.vals[col], r.unit)
			}
			fmt.Fprintf(w, "  %14s %6s", v, ratio(r.vals[col], r.vals[kernelWay]))
		}
		fmt.Fprintf(w, " %8s %8s\n", dash(r.bar), dash(r.cQuoted))
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
