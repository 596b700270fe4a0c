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
		n, _ := t.seed(pid, 0, false)
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
	n, err := t.seed(pid, 0, false)
	t.seeded.Add(uint64(n))
	return err
}

// seedChild records the fds of a process that the kernel could not copy
// from its parent's records (parent 0: no parent to copy from). The
// kernel counted the process before it asked.
func (t *Tracer) seedChild(pid, parent int) {
	t.deleteLeftRecordsOf(pid)
	n, _ := t.seed(pid, parent, true)
	t.reconciled.Add(uint64(n))
}

// seed adds a record for each fd of pid that has none, copying the
// parent's record when there is one. It is safe against the process
// changing its fds meanwhile: a record is only added where none exists,
// and removed again when the fd turns out to be gone. And against its
// exit: see takeBackIfExited. wasCounted: the kernel counted the process
// already, so that no counters say it exited (or had no room).
func (t *Tracer) seed(pid, parent int, wasCounted bool) (int, error) {
	if t.cfg.CountOnly {
		return 0, nil
	}
	before, counted, err := t.k.CountersOf(pid)
	if err != nil || (wasCounted && !counted) {
		return 0, err
	}
	fds, err := procfs.FDs(pid)
	if err != nil {
		return 0, err
	}
	slices.Sort(fds)
	var put []seededFD
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
		gen, err := t.k.InsertFD(rec)
		if err != nil {
			t.takeBackIfExited(pid, before, counted, put)
			return len(put), err
		}
		if gen == 0 {
			continue // the kernel saw it first
		}
		if !procfs.FDOpen(pid, fd) {
			t.k.DeleteSeededFD(pid, fd, gen) // closed between listing and recording
			continue
		}
		put = append(put, seededFD{fd, gen})
	}
	if t.takeBackIfExited(pid, before, counted, put) {
		return 0, nil
	}
	return len(put), nil
}

// seededFD is a record seed put in: its fd and gen.
type seededFD struct {
	fd  int
	gen uint64
}

// takeBackIfExited deletes the records seed put in for pid if the process
// exited meanwhile: its exit's sweep may have passed before they went in,
// and they would outlive it, to pass for fds of the next process of its
// pid. The exit takes the process's counters before it sweeps, so a
// process counted when seed began (before) is seen gone or replaced
// whenever that can be; one not counted yet (a process that was there
// before fdtrace and did nothing since), only once it is a zombie.
func (t *Tracer) takeBackIfExited(pid int, before loader.Counters, counted bool, put []seededFD) bool {
	if len(put) == 0 {
		return false
	}
	var exited bool
	if counted {
		now, ok, err := t.k.CountersOf(pid)
		exited = err == nil && (!ok || now.StartNs != before.StartNs)
	} else {
		exited = procfs.Gone(pid)
	}
	if !exited {
		return false
	}
	for _, s := range put {
		t.k.DeleteSeededFD(pid, s.fd, s.gen)
	}
	return true
}
