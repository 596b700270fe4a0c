package tracer

import (
	"slices"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/procfs"
)

// FD is what fdtrace knows of one live fd.
type FD struct {
	PID      int
	FD       int
	Type     string
	Syscall  string
	OpenTime time.Time // zero for fds that existed before fdtrace attached
	Cloexec  bool
	Seeded   bool // recorded from /proc rather than seen being created
	Family   string
	SockType string
	StackID  uint64 // 0: no stack (seeded, or the stack store was full)
	// Inherited: copied from the parent at fork, which opened it.
	Inherited bool
}

func (t *Tracer) fdOf(k loader.FD) FD {
	fd := FD{PID: k.PID, FD: k.FD, Type: k.Type.String(), Syscall: k.Syscall.String(),
		Cloexec: k.Cloexec, Seeded: k.Seeded, Inherited: k.Inherited,
		Family: events.FamilyName(int(k.Family)), SockType: events.SockTypeName(int(k.SockType)),
		StackID: t.stacks.Resolve(k.StackID)}
	if k.OpenNs != 0 {
		fd.OpenTime = t.wall(k.OpenNs)
	}
	return fd
}

// LiveFDs lists the fds the kernel holds records of for pid. It walks the
// whole fds map: meant for tests and reports, not for hot paths.
func (t *Tracer) LiveFDs(pid int) (map[int]FD, error) {
	out := map[int]FD{}
	err := t.EachFD(func(fd FD) {
		if fd.PID == pid {
			out[fd.FD] = fd
		}
	})
	return out, err
}

// EachFD calls fn with every live fd the kernel holds a record of, of
// every traced process, each once.
func (t *Tracer) EachFD(fn func(FD)) error {
	return t.k.EachFD(func(k loader.FD) { fn(t.fdOf(k)) })
}

// collectExited moves the records of an exited process out of the kernel
// into exitedFDs.
func (t *Tracer) collectExited(pid int) {
	var fds []FD
	t.EachFD(func(fd FD) {
		if fd.PID == pid {
			fds = append(fds, fd)
		}
	})
	for _, fd := range fds {
		t.k.DeleteFD(pid, fd.FD)
	}
	t.mu.Lock()
	t.exitedFDs[pid] = fds
	t.mu.Unlock()
}

// TakeExitedFDs returns (once) the fds pid still had open when it exited;
// only with Config.KeepRecordsAtExit.
func (t *Tracer) TakeExitedFDs(pid int) []FD {
	t.mu.Lock()
	defer t.mu.Unlock()
	fds := t.exitedFDs[pid]
	delete(t.exitedFDs, pid)
	return fds
}

// Process is the summary of one live traced process, false if the kernel
// has not seen it do anything since fdtrace attached.
func (t *Tracer) Process(pid int) (events.Process, bool, error) {
	c, ok, err := t.k.CountersOf(pid)
	if err != nil || !ok {
		return events.Process{}, ok, err
	}
	key := loader.ProcKey{PID: pid, StartNs: c.StartNs}
	errs, err := t.k.Errors()
	if err != nil {
		return events.Process{}, false, err
	}
	var ports []loader.PortCounts
	if c.Refused > 0 {
		if ports, err = t.k.Ports(); err != nil {
			return events.Process{}, false, err
		}
	}
	limit, _, _ := procfs.FDLimit(pid)
	return process(&c, limit, only(errs, key, errProc), only(ports, key, portProc)), true, nil
}

func errProc(e loader.ErrorCount) loader.ProcKey  { return e.Proc }
func portProc(p loader.PortCounts) loader.ProcKey { return p.Proc }

// only keeps the counts of one process.
func only[T any](all []T, key loader.ProcKey, proc func(T) loader.ProcKey) []T {
	var out []T
	for _, v := range all {
		if proc(v) == key {
			out = append(out, v)
		}
	}
	return out
}

// Processes summarises every live process the kernel has counters for,
// ordered by pid.
func (t *Tracer) Processes() ([]events.Process, error) {
	errs, err := t.k.Errors()
	if err != nil {
		return nil, err
	}
	ports, err := t.k.Ports()
	if err != nil {
		return nil, err
	}
	errsOf := group(errs, errProc)
	portsOf := group(ports, portProc)
	var out []events.Process
	err = t.k.EachCounters(func(c *loader.Counters) {
		key := loader.ProcKey{PID: c.PID, StartNs: c.StartNs}
		limit, _, err := procfs.FDLimit(c.PID)
		rec := process(c, limit, errsOf[key], portsOf[key])
		// Gone, but its exit was not seen: it came after Detach.
		rec.Exited = err != nil
		out = append(out, rec)
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b events.Process) int { return a.PID - b.PID })
	return out, nil
}

// group splits counts by process.
func group[T any](all []T, proc func(T) loader.ProcKey) map[loader.ProcKey][]T {
	out := map[loader.ProcKey][]T{}
	for _, v := range all {
		out[proc(v)] = append(out[proc(v)], v)
	}
	return out
}

// IdleProcess summarises a traced process the kernel has no counters for
// (it did nothing since fdtrace attached) from /proc.
func IdleProcess(pid int) (events.Process, error) {
	fds, err := procfs.FDs(pid)
	if err != nil {
		return events.Process{}, err
	}
	comm, _ := procfs.Comm(pid)
	limit, _, _ := procfs.FDLimit(pid)
	return events.Process{Type: "process", Time: events.Time(time.Now()), PID: pid,
		Comm: comm, OpenFDs: int64(len(fds)), FDLimit: limit,
		Utilization: events.Utilization(int64(len(fds)), limit),
		Errors:      map[string]map[string]uint64{}}, nil
}

// process is the record of a process's counters, failed syscalls and
// refused connections.
func process(c *loader.Counters, limit uint64, errs []loader.ErrorCount, ports []loader.PortCounts) events.Process {
	refused, dropped := ByPort(ports)
	return events.Process{
		Type: "process", Time: events.Time(time.Now()), PID: c.PID,
		Comm: c.Comm, OpenFDs: c.OpenFDs, FDLimit: limit,
		Utilization: events.Utilization(c.OpenFDs, limit),
		Opened:      c.Opened, Closed: c.Closed,
		OpenedByType: byType(c.OpenedByType[:]), ClosedByType: byType(c.ClosedByType[:]),
		Errors: ErrorTree(errs), EMFILE: c.EMFILE, ENFILE: c.ENFILE, RefusedConnections: c.Refused,
		RefusedByPort: refused, DroppedByPort: dropped,
	}
}

func byType(counts []uint64) map[string]uint64 {
	out := map[string]uint64{}
	for i, n := range counts {
		if n > 0 {
			out[events.FDType(i).String()] = n
		}
	}
	return out
}

// ErrorsByProcess splits error counts by process, in the records' shape.
func ErrorsByProcess(errs []loader.ErrorCount) map[loader.ProcKey]map[string]map[string]uint64 {
	out := map[loader.ProcKey]map[string]map[string]uint64{}
	for key, e := range group(errs, errProc) {
		out[key] = ErrorTree(e)
	}
	return out
}

// Ports are one process's refused and dropped connections by port.
type Ports struct{ Refused, Dropped map[uint16]uint64 }

// PortsByProcess splits port counts by process, in the records' shape.
func PortsByProcess(ports []loader.PortCounts) map[loader.ProcKey]Ports {
	out := map[loader.ProcKey]Ports{}
	for key, p := range group(ports, portProc) {
		refused, dropped := ByPort(p)
		out[key] = Ports{refused, dropped}
	}
	return out
}

// ErrorTree is the record's shape of error counts: syscall -> errno ->
// count.
func ErrorTree(errs []loader.ErrorCount) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for _, e := range errs {
		sc := e.Syscall.String()
		if out[sc] == nil {
			out[sc] = map[string]uint64{}
		}
		out[sc][events.ErrnoName(e.Errno)] += e.Count
	}
	return out
}

// ByPort is the record's shape of port counts: refused and dropped
// connections by port, nil where there are none (the record leaves them
// out).
func ByPort(ports []loader.PortCounts) (refused, dropped map[uint16]uint64) {
	for _, p := range ports {
		if p.Refused > 0 {
			if refused == nil {
				refused = map[uint16]uint64{}
			}
			refused[p.Port] += p.Refused
		}
		if p.Dropped > 0 {
			if dropped == nil {
				dropped = map[uint16]uint64{}
			}
			dropped[p.Port] += p.Dropped
		}
	}
	return refused, dropped
}

// Stats are the loss and drift counters so far, and fdtrace's memory.
func (t *Tracer) Stats() (events.Stats, error) {
	var s events.Stats
	if err := t.k.KernelStats(&s); err != nil {
		return s, err
	}
	mem, err := t.k.Memory()
	if err != nil {
		return s, err
	}
	mem.UnwindTableBytes, mem.UnwindTablesRefused = t.stacks.TableUse()
	mem.SymbolCacheBytes, mem.SymbolFilesRefused = t.stacks.SymbolUse()
	s.Memory = &mem
	s.SeededFDs, s.ReconciledFDs, s.EventsDelivered = t.seeded.Load(), t.reconciled.Load(), t.k.Delivered()
	s.StacksLate, s.StacksQueueFull = t.late.Load(), t.stacks.Dropped()
	s.Type, s.Time = "stats", events.Time(time.Now())
	return s, nil
}
