package fuseconn

import (
	"runtime"
	"time"
)

// yielder has a /dev/fuse reader pass through the Go scheduler every
// yieldEvery. A loop that goes from one blocking system call to the next
// (read(2) of /dev/fuse, io_uring_enter) without ever doing so looks to
// the runtime's monitor like a goroutine running for long, and past 10 ms
// the monitor takes its P at each system call and hands it to another
// thread. On find | xargs cat of 20,000 files over /dev/fuse that was up
// to 13,000 handoffs and 20,000 wakeups of the monitor for 40,000
// requests; yielding every 3 ms left 40 and 600, a seventh fewer context
// switches and a third less CPU in the daemon. Not for a goroutine locked
// to its thread, as fuseuring's ring threads are: there a yield hands the
// thread's P off and back, which cost more than it saved (5,300 handoffs,
// 31,000 futex calls, 10% more CPU).
type yielder struct{ last time.Time }

const yieldEvery = 3 * time.Millisecond

// tick yields if the loop has not for yieldEvery: call it once per request
// served.
func (y *yielder) tick() {
	if now := time.Now(); now.Sub(y.last) > yieldEvery {
		runtime.Gosched()
		y.last = now
	}
}
