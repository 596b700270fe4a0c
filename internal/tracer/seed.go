package tracer

import (
	"fmt"
	"os"
	"slices"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/procfs"
)

// seedAll records the fds that existed before the programs were attached,
// for every process fdtrace traces.
func (t *Tracer) seedAll() error {
	pids := t.cfg.PIDs
	if len(pids) == 0 && t.cfg.FollowChildrenOf == 0 {
		all, err := procfs.PIDs()
		if err != nil {
			return fmt.Errorf("listing processes: %w", err)
		}
		pids = all
	}
	self := os.Getpid()
	for _, pid := range pids {
		if pid == self {
			continue
		}
		if t.cfg.Comm != "" {
			if comm, err := procfs.Comm(pid); err != nil || comm != t.cfg.Comm {
				continue
			}
		}
		n, _ := t.seed(pid, 0)
		t.seeded.Add(uint64(n))
	}
	return nil
}

// Track adds a running process to the traced set (when tracing by pid)
// and records its fds.
func (t *Tracer) Track(pid int) error {
	if !procfs.Exists(pid) {
		return fmt.Errorf("pid %d: no such process", pid)
	}
	if err := t.k.Track(pid); err != nil {
		return err
	}
	n, err := t.seed(pid, 0)
	t.seeded.Add(uint64(n))
	return err
}

// seedChild records the fds of a process that the kernel could not copy
// from its parent's records (parent 0: no parent to copy from).
func (t *Tracer) seedChild(pid, parent int) {
	t.deleteLeftRecordsOf(pid)
	n, _ := t.seed(pid, parent)
	t.reconciled.Add(uint64(n))
}

// seed adds a record for each fd of pid that has none, copying the
// parent's record when there is one. It is safe against the process
// changing its fds meanwhile: a record is only added where none exists,
// and removed again when the fd turns out to be gone.
func (t *Tracer) seed(pid, parent int) (int, error) {
	if t.cfg.CountOnly {
		return 0, nil
	}
	fds, err := procfs.FDs(pid)
	if err != nil {
		return 0, err
	}
	slices.Sort(fds)
	added := 0
	for _, fd := range fds {
		rec, ok := loader.FD{}, false
		if parent != 0 {
			rec, ok = t.k.LookupFD(parent, fd)
		}
		if !ok {
			target, err := procfs.FDTarget(pid, fd)
			if err != nil {
				continue // closed meanwhile
			}
			rec = loader.FD{Type: events.ParseFDType(procfs.TargetType(target)), Cloexec: procfs.FDCloexec(pid, fd)}
		}
		rec.PID, rec.FD = pid, fd
		rec.Seeded, rec.Inherited = true, parent != 0
		inserted, err := t.k.InsertFD(rec)
		if err != nil {
			return added, err
		}
		if !inserted {
			continue // the kernel saw it first
		}
		if !procfs.FDOpen(pid, fd) {
			t.k.DeleteSeededFD(pid, fd) // closed between listing and recording
			continue
		}
		added++
	}
	return added, nil
}
