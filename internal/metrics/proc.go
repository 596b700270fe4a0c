package metrics

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/top"
)

// System is what the collector reads from /proc.
type System interface {
	// Limit is the soft RLIMIT_NOFILE of pid.
	Limit(pid int) (uint64, error)
	// Cgroup is the cgroup of pid (see CgroupPath).
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
	b, err := os.ReadFile(filepath.Join(procfs.Root, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return "", err
	}
	return CgroupPath(string(b)), nil
}

func (Proc) FileNr() (uint64, uint64, error) {
	nr, err := top.ReadFileNr()
	return nr.Allocated, nr.Max, err
}

func (Proc) Exists(pid int) bool { return procfs.Exists(pid) }

// CgroupPath picks one path from a /proc/PID/cgroup text: the unified
// (v2) hierarchy's, else systemd's v1 hierarchy, else the first.
func CgroupPath(text string) string {
	var first, systemd string
	for line := range strings.SplitSeq(text, "\n") {
		id, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		switch {
		case id == "0" && controllers == "":
			return path
		case controllers == "name=systemd" && systemd == "":
			systemd = path
		case first == "":
			first = path
		}
	}
	if systemd != "" {
		return systemd
	}
	return first
}

var containerID = regexp.MustCompile(`[0-9a-f]{64}`)

// ContainerID is the short (12-digit) id of the container a cgroup path
// names, as docker, containerd, CRI-O and podman name their cgroups; ""
// outside containers.
func ContainerID(cgroup string) string {
	ids := containerID.FindAllString(cgroup, -1)
	if len(ids) == 0 {
		return ""
	}
	// The innermost: a pod's cgroup holds its containers'.
	return ids[len(ids)-1][:12]
}
