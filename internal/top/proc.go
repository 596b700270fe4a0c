package top

import (
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/procfs"
)

// Proc is the System of the running host: /proc and prlimit.
type Proc struct{}

func (Proc) Limit(pid int) (uint64, error) {
	soft, _, err := procfs.FDLimit(pid)
	return soft, err
}

func (Proc) FDTypes(pid int) ([NumTypes]int64, error) {
	var out [NumTypes]int64
	fds, err := procfs.FDs(pid)
	if err != nil {
		return out, err
	}
	for _, fd := range fds {
		target, err := procfs.FDTarget(pid, fd)
		if err != nil {
			continue // closed meanwhile
		}
		out[events.ParseFDType(procfs.TargetType(target))]++
	}
	return out, nil
}

func (Proc) PIDs() ([]int, error) { return procfs.PIDs() }

func (Proc) FDCount(pid int) (int64, error) {
	fds, err := procfs.FDs(pid)
	return int64(len(fds)), err
}

// SeedSamples counts the open fds of each of pids that keep accepts, from
// /proc, once: the rows of the processes the kernel has not seen act yet.
// Processes without fds (kernel threads) are left out unless all is set.
func SeedSamples(pids []int, keep func(pid int, comm string) bool, all bool) []Sample {
	var out []Sample
	for _, pid := range pids {
		comm, err := procfs.Comm(pid)
		if err != nil || (keep != nil && !keep(pid, comm)) {
			continue
		}
		fds, err := procfs.FDs(pid)
		if err != nil || (len(fds) == 0 && !all) {
			continue
		}
		out = append(out, Sample{PID: pid, Comm: comm, OpenFDs: int64(len(fds))})
	}
	return out
}

// cgroupTTL is how long a process's cgroup is trusted: runtimes move a
// process into its cgroup after the fork, most before the exec (a new
// name, which reads it again).
const cgroupTTL = 10 * time.Second

type cgroupEntry struct {
	comm  string
	match bool
	at    time.Time
}

// CgroupMatcher accepts the processes in a cgroup under prefix (see
// procfs.CgroupPrefix), reading /proc/PID/cgroup once per process and name.
func CgroupMatcher(prefix string) func(pid int, comm string) bool {
	prefix = procfs.CgroupPrefix(prefix)
	cache := map[int]cgroupEntry{}
	return func(pid int, comm string) bool {
		now := time.Now()
		if e, ok := cache[pid]; ok && e.comm == comm && now.Sub(e.at) < cgroupTTL {
			return e.match
		}
		text, err := procfs.Cgroup(pid)
		if err != nil {
			e, ok := cache[pid]
			return ok && e.match // gone: as it was
		}
		if len(cache) > 1<<14 {
			for pid, e := range cache {
				if now.Sub(e.at) > time.Minute {
					delete(cache, pid)
				}
			}
		}
		e := cgroupEntry{comm: comm, match: procfs.CgroupMatches(text, prefix), at: now}
		cache[pid] = e
		return e.match
	}
}
