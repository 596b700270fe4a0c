package loader

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
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
		t.mu.Lock()
		t.seeded += uint64(n)
		t.mu.Unlock()
	}
	return nil
}

// Track adds a running process to the traced set (when tracing by pid)
// and records its fds.
func (t *Tracer) Track(pid int) error {
	if !processExists(pid) {
		return fmt.Errorf("pid %d: no such process", pid)
	}
	if len(t.cfg.PIDs) > 0 || t.cfg.FollowChildrenOf != 0 {
		// A followed child is in the set already, with its own flags.
		err := t.objs.Traced.Update(uint32(pid), uint8(traceSelf), ebpf.UpdateNoExist)
		if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("adding pid %d to the traced set: %w", pid, err)
		}
	}
	n, err := t.seed(pid, 0)
	t.mu.Lock()
	t.seeded += uint64(n)
	t.mu.Unlock()
	return err
}

// seedChild records the fds of a process that the kernel could not copy
// from its parent's records (parent 0: no parent to copy from).
func (t *Tracer) seedChild(pid, parent int) {
	n, _ := t.seed(pid, parent)
	t.mu.Lock()
	t.reconcile += uint64(n)
	t.mu.Unlock()
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
		key := bpfobj.FdtraceFdKey{Tgid: uint32(pid), Fd: int32(fd)}
		var info bpfobj.FdtraceFdInfo
		if parent == 0 || t.objs.Fds.Lookup(bpfobj.FdtraceFdKey{Tgid: uint32(parent), Fd: int32(fd)}, &info) != nil {
			target, err := procfs.FDTarget(pid, fd)
			if err != nil {
				continue // closed meanwhile
			}
			info = bpfobj.FdtraceFdInfo{FdType: uint8(events.ParseFDType(procfs.TargetType(target)))}
			if procfs.FDCloexec(pid, fd) {
				info.Flags |= uint8(bpfobj.FdtraceFdFlagsFDF_CLOEXEC)
			}
		}
		info.Flags |= uint8(bpfobj.FdtraceFdFlagsFDF_SEEDED)
		if parent != 0 {
			info.Flags |= uint8(bpfobj.FdtraceFdFlagsFDF_INHERITED)
		}
		if err := t.objs.Fds.Update(key, info, ebpf.UpdateNoExist); err != nil {
			if errors.Is(err, ebpf.ErrKeyExist) {
				continue // the kernel saw it first
			}
			return added, fmt.Errorf("recording fd %d of pid %d: %w", fd, pid, err)
		}
		if !procfs.FDOpen(pid, fd) {
			t.objs.Fds.Delete(key) // closed between listing and recording
			continue
		}
		added++
	}
	return added, nil
}
