//go:build linux

package fuseuring

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The kernel keeps one queue per possible CPU, puts a request on the queue
// of the CPU its caller runs on, and uses none of them until every queue
// has an entry registered. An entry is a pair of buffers the kernel copies
// a request into and a reply out of; a thread waits on a ring holding one
// or more entries. How many of each:
//
//   - maxPerQueue threads for a queue when there are few CPUs. The kernel
//     hands a new request to the entry that became free last, so normally
//     one thread per CPU does the work; the others take over while it is
//     held up (an OPEN that has a large object to verify). With 3, a stat
//     made while five large cold files were being opened from the same CPU
//     waited ~250 ms for one of them to finish; with 8 it did not wait for
//     them (23-180 ms, the CPUs being busy hashing; 88-120 over /dev/fuse).
//   - maxThreads in all, whatever the number of CPUs: each is a locked OS
//     thread, and on a 192-CPU machine 8 a CPU was 1,536 of them. Past
//     maxThreads online CPUs, a thread holds one entry for each of a few
//     neighbouring queues and is pinned to their CPUs: a request waits
//     only when its thread is busy with another of its queues.
//   - the queues of CPUs that are possible but offline get a request only
//     if their CPU comes online: one thread holds an entry for each.
//
// Each entry's payload buffer holds max_write bytes (1 MiB) and is
// anonymous memory the kernel fills in only as requests and replies touch
// it: an idle entry costs address space, not memory.
const (
	maxPerQueue = 8
	maxThreads  = 64
)

// threadPlan is one thread's share: the queues it holds an entry for, and
// the CPUs to pin it to (none: not pinned).
type threadPlan struct {
	queues []int
	cpus   []int
}

// planThreads splits the queues (one per possible CPU, in order) among the
// threads, as the comment above says. online tells which CPUs are.
func planThreads(possible []int, online map[int]bool) []threadPlan {
	var on, off []int
	for q, cpu := range possible {
		if online[cpu] {
			on = append(on, q)
		} else {
			off = append(off, q)
		}
	}
	budget := maxThreads
	if len(off) > 0 {
		budget--
	}
	var plans []threadPlan
	switch {
	case len(on) == 0:
	case len(on) <= budget:
		per := min(maxPerQueue, budget/len(on))
		for _, q := range on {
			for range per {
				plans = append(plans, threadPlan{queues: []int{q}, cpus: []int{possible[q]}})
			}
		}
	default:
		// budget groups of consecutive queues, sizes differing by one
		// at most.
		for g := range budget {
			lo, hi := g*len(on)/budget, (g+1)*len(on)/budget
			p := threadPlan{queues: append([]int(nil), on[lo:hi]...)}
			for _, q := range p.queues {
				p.cpus = append(p.cpus, possible[q])
			}
			plans = append(plans, p)
		}
	}
	if len(off) > 0 {
		plans = append(plans, threadPlan{queues: off})
	}
	return plans
}

// machinePlan is planThreads for this machine.
func machinePlan() ([]threadPlan, error) {
	possible, err := cpuList("/sys/devices/system/cpu/possible")
	if err != nil {
		return nil, err
	}
	online, err := cpuList("/sys/devices/system/cpu/online")
	if err != nil {
		online = possible
	}
	isOnline := map[int]bool{}
	for _, c := range online {
		isOnline[c] = true
	}
	return planThreads(possible, isOnline), nil
}

func cpuList(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseCPUs(strings.TrimSpace(string(b)))
}

// parseCPUs lists the CPUs of a kernel CPU list such as "0-3,8".
func parseCPUs(list string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("cpu list %q: bad number %q", list, lo)
		}
		z := a
		if isRange {
			if z, err = strconv.Atoi(hi); err != nil || z < a {
				return nil, fmt.Errorf("cpu list %q: bad range %q", list, part)
			}
		}
		if len(cpus)+z-a+1 > 1<<16 {
			return nil, fmt.Errorf("cpu list %q: too many cpus", list)
		}
		for c := a; c <= z; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
