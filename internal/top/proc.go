package top

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
		out[typeIndex[procfs.TargetType(target)]]++
	}
	return out, nil
}

func (Proc) PIDs() ([]int, error) { return procfs.PIDs() }

func (Proc) FDCount(pid int) (int64, error) {
	fds, err := procfs.FDs(pid)
	return int64(len(fds)), err
}

var typeIndex = func() map[string]int {
	m := map[string]int{}
	for i, name := range TypeNames {
		m[name] = i
	}
	return m
}()

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

// FileNr is the system's count of file structures, from
// /proc/sys/fs/file-nr: the side of ENFILE.
type FileNr struct {
	Allocated uint64
	Max       uint64 // fs.file-max
}

// ReadFileNr reads /proc/sys/fs/file-nr.
func ReadFileNr() (FileNr, error) {
	b, err := os.ReadFile(filepath.Join(procfs.Root, "sys/fs/file-nr"))
	if err != nil {
		return FileNr{}, err
	}
	return ParseFileNr(string(b))
}

// ParseFileNr reads "allocated free max".
func ParseFileNr(s string) (FileNr, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return FileNr{}, errors.New("file-nr: not three numbers")
	}
	alloc, err1 := strconv.ParseUint(f[0], 10, 64)
	max, err2 := strconv.ParseUint(f[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return FileNr{}, err
	}
	return FileNr{Allocated: alloc, Max: max}, nil
}

// CgroupPrefix normalizes a --cgroup argument: a path in the cgroup
// hierarchy, as /proc/PID/cgroup shows it, or under /sys/fs/cgroup.
func CgroupPrefix(s string) string {
	for _, mount := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if rest, ok := strings.CutPrefix(s, mount); ok && (rest == "" || rest[0] == '/') {
			s = rest
			break
		}
	}
	if !strings.HasPrefix(s, "/") {
		s = "/" + s
	}
	return s
}

// CgroupMatches tells whether one of the paths of a /proc/PID/cgroup text
// starts with prefix: the path itself, or (cgroup v1) the path under its
// hierarchy's directory in /sys/fs/cgroup ("/memory/docker/...").
func CgroupMatches(text, prefix string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		// hierarchy-ID:controllers:path; the path may hold colons.
		_, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if strings.HasPrefix(path, prefix) {
			return true
		}
		dir := "/" + strings.TrimPrefix(controllers, "name=")
		if controllers != "" && strings.HasPrefix(dir+path, prefix) {
			return true
		}
	}
	return false
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
// CgroupPrefix), reading /proc/PID/cgroup once per process and name.
func CgroupMatcher(prefix string) func(pid int, comm string) bool {
	prefix = CgroupPrefix(prefix)
	cache := map[int]cgroupEntry{}
	return func(pid int, comm string) bool {
		now := time.Now()
		if e, ok := cache[pid]; ok && e.comm == comm && now.Sub(e.at) < cgroupTTL {
			return e.match
		}
		b, err := os.ReadFile(filepath.Join(procfs.Root, strconv.Itoa(pid), "cgroup"))
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
		e := cgroupEntry{comm: comm, match: CgroupMatches(string(b), prefix), at: now}
		cache[pid] = e
		return e.match
	}
}
