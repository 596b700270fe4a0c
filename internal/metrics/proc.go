package metrics

import (
	"github.com/fdtrace/fdtrace/internal/procfs"
)

// System is what the collector reads from /proc.
type System interface {
	// Limit is the soft RLIMIT_NOFILE of pid.
	Limit(pid int) (uint64, error)
	// Cgroup is the cgroup of pid (see procfs.CgroupPath).
	Cgroup(pid int) (string, error)
	FileNr() (allocated, max uint64, err error)
	Exists(pid int) bool
}

// Proc reads the real /proc.
type Proc struct{}

func (Proc) Limit(pid int) (uint64, error) {
	soft, _, err := procfs.FDLimit(pid)
	return soft, err
}

func (Proc) Cgroup(pid int) (string, error) {
	text, err := procfs.Cgroup(pid)
	if err != nil {
		return "", err
	}
	return procfs.CgroupPath(text), nil
}

func (Proc) FileNr() (uint64, uint64, error) {
	nr, err := procfs.ReadFileNr()
	return nr.Allocated, nr.Max, err
}

func (Proc) Exists(pid int) bool { return procfs.Exists(pid) }
