package fusemount

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/objects"
)

// prefetchWorkers is how many objects --prefetch fetches at once: fewer
// than a remote store's request slots, which leaves some to the opens.
const prefetchWorkers = 4

// prefetchEvery is how often --prefetch logs its progress.
const prefetchEvery = 10 * time.Second

// prefetch is --prefetch: every object of the image fetched in the
// background, in image order, through the stores (a remote store keeps
// them in its cache). Progress goes to the log every prefetchEvery, on
// SIGUSR1 and at the end.
type prefetch struct {
	total, done, failed atomic.Int64
	finished            atomic.Bool
	logger              *slog.Logger
	started             time.Time
	// ended is closed when the prefetch has stopped: no walk of the
	// image and no fetch goes on after.
	ended chan struct{}
}

// startPrefetch starts the prefetch; it stops when ctx ends, and has
// stopped once ended is closed (after the walk of the image it may be in,
// which reads the image: wait for it before the image is unmapped).
func startPrefetch(ctx context.Context, view *composefs.FS, store objects.Store, logger *slog.Logger) *prefetch {
	p := &prefetch{logger: logger, started: time.Now(), ended: make(chan struct{})}
	// Listening from now until the unmount: SIGUSR1 kills a process
	// that does not.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(usr1)
		for {
			select {
			case <-usr1:
				p.report()
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer close(p.ended)
		p.run(ctx, view, store)
	}()
	return p
}

func (p *prefetch) run(ctx context.Context, view *composefs.FS, store objects.Store) {
	refs, err := view.ObjectRefs()
	if err != nil {
		p.logger.Warn("prefetch: the image could not be walked", "err", err)
		return
	}
	p.total.Store(int64(len(refs)))
	p.logger.Info("prefetch: started", "objects", len(refs))
	tick := time.NewTicker(prefetchEvery)
	defer tick.Stop()

	work := make(chan composefs.ObjectRef)
	var wg sync.WaitGroup
	for range prefetchWorkers {
		wg.Go(func() {
			for ref := range work {
				// With its size: a server sending more is cut off.
				octx := ctx
				if ref.Size >= 0 {
					octx = objects.WithSize(ctx, ref.Size)
				}
				f, err := objects.OpenContext(octx, store, ref.Payload)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					p.failed.Add(1)
					p.logger.Warn("prefetch: object not fetched", "err", err)
				} else {
					f.Close()
				}
				p.done.Add(1)
			}
		})
	}
feed:
	for _, ref := range refs {
		for {
			select {
			case work <- ref:
				continue feed
			case <-tick.C:
				p.report()
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(work)
	wg.Wait()
	if ctx.Err() == nil {
		p.finished.Store(true)
		p.report()
	}
}

func (p *prefetch) report() {
	msg := "prefetch: progress"
	if p.finished.Load() {
		msg = "prefetch: done"
	}
	p.logger.Info(msg, "done", p.done.Load(), "objects", p.total.Load(), "failed", p.failed.Load(),
		"elapsed", time.Since(p.started).Round(time.Millisecond))
}
