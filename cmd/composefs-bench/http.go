package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/composefs/composefs-go/internal/webserver"
	"github.com/composefs/composefs-go/verity"
)

// The HTTP rows: composefs-fuse fetching the objects of the tree (the
// find | xargs cat corpus) from nginx on 127.0.0.1 into an empty --cache,
// and mounting the image of --entries entries by its URL, against the
// same mounts with the store and the image on the local disk. The local
// mount is the reference, as umoci is in the OCI table, so these rows are
// a table of their own.

// localWay and httpWay index the two columns of the HTTP rows.
const (
	localWay = iota
	httpWay
)

// corpusOnce makes the corpus name in the work directory the first time a
// group of rows asks for it, with mk, and returns the same one after: the
// tree and the large image serve the HTTP rows as well as their own.
func (b *bench) corpusOnce(name string, mk func(c *config, dir string) (*corpus, error)) (*corpus, error) {
	if cp, ok := b.corpora[name]; ok {
		return cp, nil
	}
	start := time.Now()
	cp, err := mk(b.cfg, filepath.Join(b.cfg.work, name))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "corpus %s made in %.1fs\n", name, time.Since(start).Seconds())
	if b.corpora == nil {
		b.corpora = map[string]*corpus{}
	}
	b.corpora[name] = cp
	return cp, nil
}

// onMount mounts cp with m at at, runs f on the mount and unmounts it,
// the mount known to a signal's cleanup meanwhile. It returns how long
// the mount took. An error of f's comes back once the mount is down.
func (b *bench) onMount(m mounter, cp *corpus, at string, f func() error) (float64, error) {
	secs, err := timed(func() error { return m.mount(cp, at) })
	if err != nil {
		return 0, fmt.Errorf("mount: %w", err)
	}
	b.mu.Lock()
	b.mounted = append(b.mounted, mountedAt{m, at})
	b.mu.Unlock()
	err = f()
	if uerr := m.unmount(at); uerr != nil {
		return 0, uerr // still mounted: nothing more can mount here
	}
	b.mu.Lock()
	b.mounted = b.mounted[:len(b.mounted)-1]
	b.mu.Unlock()
	return secs, err
}

// httpGroup measures the HTTP rows, or says in one line why they are
// skipped.
func (b *bench) httpGroup() error {
	c := b.cfg
	if _, err := os.Stat(webserver.NginxPath); err != nil {
		fmt.Fprintf(os.Stderr, "skipping the http rows: %v\n", webserver.ErrNotInstalled)
		return nil
	}
	dir := filepath.Join(c.work, "http")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	tree, err := b.corpusOnce("tree", makeReadTree)
	if err != nil {
		return err
	}
	rows, err := b.httpTree(tree, dir)
	if err != nil {
		return err
	}
	if !c.skip500 && c.entries > 0 {
		large, err := b.corpusOnce("large", makeLargeImage)
		if err != nil {
			return err
		}
		more, err := b.httpLarge(large, dir)
		if err != nil {
			return err
		}
		rows = append(rows, more...)
	}
	b.addTable(refTable{
		title: "objects fetched from nginx on 127.0.0.1 into an empty --cache; reference: the same store on the local disk (--basedir=DIR)",
		ref:   httpWayNames[localWay], ours: httpWayNames[httpWay], rows: rows,
	})
	return nil
}

// httpWayNames name the two mounts of the HTTP rows, by localWay and
// httpWay.
var httpWayNames = [2]string{"local", "HTTP"}

// failedRun notes that run of who failed with err, and returns nil for the
// runs to go on, unless the mount at at is still up: nothing more can be
// measured there, and err comes back.
func (b *bench) failedRun(at, who string, run int, err error) error {
	if isMounted(at) {
		return err
	}
	b.failed(who, run, withDaemonLog(at, err))
	return nil
}

// httpWays are the two mounts of the HTTP rows: composefs-fuse on the
// local store, and on the store at a URL fetching into cache.
func (b *bench) httpWays(cache string) [2]fuseMount {
	local := fuseMount{bin: b.cfg.bin, devFuse: b.cfg.transport == "dev", trees: b.treesDir()}
	remote := local
	remote.cache = cache
	return [2]fuseMount{local, remote}
}

// httpTree reads the tree with find | xargs cat through both mounts: cold
// from an empty cache, warm on the same mount, and cold again on a new
// mount whose cache holds every object.
func (b *bench) httpTree(tree *corpus, dir string) ([]refRow, error) {
	srv, err := webserver.StartNginx(filepath.Join(dir, "nginx-tree"), tree.objects)
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	objects, err := countObjects(tree.objects)
	if err != nil {
		return nil, err
	}
	cache := filepath.Join(dir, "cache")
	ways := b.httpWays(cache)
	corpora := [2]*corpus{tree, {image: tree.image, objects: srv.URL, files: tree.files}}
	at := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(at, 0o755); err != nil {
		return nil, err
	}
	var cold, warm, filled [2][]float64
	for run := range b.runsFor("http") {
		for i, m := range ways {
			var c, w, f float64
			err := func() error {
				if err := os.RemoveAll(cache); err != nil {
					return err
				}
				if err := dropCaches(); err != nil {
					return err
				}
				_, err := b.onMount(m, corpora[i], at, func() error {
					if err := dropCaches(); err != nil {
						return err
					}
					var err error
					if c, _, err = shell(nil, "", treeRead, at); err != nil {
						return err
					}
					w, _, err = shell(nil, "", treeRead, at)
					return err
				})
				if err != nil {
					return err
				}
				if i == httpWay {
					// Every object fetched, checked and kept: else
					// the rows measure something else.
					n, err := countObjects(cache)
					if err != nil {
						return err
					}
					if n != objects {
						return fmt.Errorf("%d objects in the cache after the read, want the store's %d", n, objects)
					}
				}
				if err := dropCaches(); err != nil {
					return err
				}
				_, err = b.onMount(m, corpora[i], at, func() error {
					var err error
					f, _, err = shell(nil, "", treeRead, at)
					return err
				})
				return err
			}()
			who := httpWayNames[i]
			if err != nil {
				if err := b.failedRun(at, who, run, err); err != nil {
					return nil, err
				}
				continue
			}
			cold[i], warm[i], filled[i] = append(cold[i], c), append(warm[i], w), append(filled[i], f)
			if b.cfg.verbose {
				fmt.Fprintf(os.Stderr, "  run %d %-6s cold %.4f warm %.4f cache filled %.4f\n", run+1, who, c, w, f)
			}
		}
	}
	label := fmt.Sprintf("find|xargs cat, %d files", len(tree.files))
	return []refRow{
		{label + ", cold, empty cache", "s", median(cold[localWay]), median(cold[httpWay]), "2.0"},
		{label + ", warm", "s", median(warm[localWay]), median(warm[httpWay]), ""},
		{label + ", cold, cache filled", "s", median(filled[localWay]), median(filled[httpWay]), ""},
	}, nil
}

// httpLarge mounts the image of --entries entries by its URL and lists
// its root, against the same from the local disk, without and with
// --digest (the image checked whole before the mount).
func (b *bench) httpLarge(large *corpus, dir string) ([]refRow, error) {
	srv, err := webserver.StartNginx(filepath.Join(dir, "nginx-large"), filepath.Dir(large.image))
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	d, err := verity.DigestPath(verity.SHA256, large.image)
	if err != nil {
		return nil, err
	}
	digest := hex.EncodeToString(d)
	objectsRel, err := filepath.Rel(filepath.Dir(large.image), large.objects)
	if err != nil {
		return nil, err
	}
	imageRel := filepath.Base(large.image)
	corpora := [2]*corpus{large, {image: srv.URL + imageRel, objects: srv.URL + objectsRel + "/"}}
	cache := filepath.Join(dir, "cache")
	at := filepath.Join(dir, "mnt")
	var plain, checked [2][]float64
	for run := range b.runsFor("http") {
		for _, withDigest := range []bool{false, true} {
			for i, m := range b.httpWays(cache) {
				if withDigest {
					m.digest = digest
				}
				var list float64
				mount, err := func() (float64, error) {
					if err := os.RemoveAll(cache); err != nil {
						return 0, err
					}
					if err := dropCaches(); err != nil {
						return 0, err
					}
					return b.onMount(m, corpora[i], at, func() error {
						var err error
						list, err = timed(func() error {
							ents, err := os.ReadDir(at)
							if err == nil && len(ents) == 0 {
								err = errors.New("the root lists nothing")
							}
							return err
						})
						return err
					})
				}()
				who := httpWayNames[i]
				if err != nil {
					if err := b.failedRun(at, who, run, err); err != nil {
						return nil, err
					}
					continue
				}
				if withDigest {
					checked[i] = append(checked[i], mount+list)
				} else {
					plain[i] = append(plain[i], mount+list)
				}
				if b.cfg.verbose {
					fmt.Fprintf(os.Stderr, "  run %d %-6s --digest=%v mount + listing %.4f\n", run+1, who, withDigest, mount+list)
				}
			}
		}
	}
	label := fmt.Sprintf("%d entries by URL: mount + first listing", b.cfg.entries)
	return []refRow{
		{label, "s", median(plain[localWay]), median(plain[httpWay]), ""},
		{"  the same with --digest", "s", median(checked[localWay]), median(checked[httpWay]), ""},
	}, nil
}

// countObjects counts the objects of a flat store: the files in its
// two-hex-digit fan-out directories, temporary files (dot names) left
// out.
func countObjects(store string) (int, error) {
	subs, err := filepath.Glob(filepath.Join(store, "[0-9a-f][0-9a-f]"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sub := range subs {
		ents, err := os.ReadDir(sub)
		if err != nil {
			return 0, err
		}
		for _, e := range ents {
			if e.Type().IsRegular() && e.Name()[0] != '.' {
				n++
			}
		}
	}
	return n, nil
}
