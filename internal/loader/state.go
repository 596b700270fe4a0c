package loader

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cilium/ebpf"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/procfs"
)

// FD is what the kernel holds about one live fd.
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

// LiveFDs lists the fds the kernel maps hold for pid. It walks the whole
// fds map: meant for tests and reports, not for hot paths.
func (t *Tracer) LiveFDs(pid int) (map[int]FD, error) {
	out := map[int]FD{}
	err := t.EachFD(func(fd FD) {
		if fd.PID == pid {
			out[fd.FD] = fd
		}
	})
	return out, err
}

// fdBatch is how many fds map entries one syscall reads.
const fdBatch = 1024

// EachFD calls fn with every live fd the kernel maps hold, of every traced
// process, each once, as it reads the fds map in batches.
func (t *Tracer) EachFD(fn func(FD)) error {
	// A batch is whole hash buckets and a key has one bucket, so no key
	// comes twice, even while the kernel deletes: unlike a get-next-key
	// walk, which restarts from the first bucket when its key is deleted.
	keys := make([]bpfobj.FdtraceFdKey, fdBatch)
	infos := make([]bpfobj.FdtraceFdInfo, fdBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := t.objs.Fds.BatchLookup(&cursor, keys, infos, nil)
		for i := range n {
			fn(t.fdOf(keys[i], &infos[i]))
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading fds map: %w", err)
		}
	}
}

// collectExited moves the records of an exited process out of the kernel
// into exitedFDs.
func (t *Tracer) collectExited(pid int) {
	var keys []bpfobj.FdtraceFdKey
	var fds []FD
	t.EachFD(func(fd FD) {
		if fd.PID == pid {
			fds = append(fds, fd)
			keys = append(keys, bpfobj.FdtraceFdKey{Tgid: uint32(pid), Fd: int32(fd.FD)})
		}
	})
	for _, k := range keys {
		t.objs.Fds.Delete(k)
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

func (t *Tracer) fdOf(key bpfobj.FdtraceFdKey, info *bpfobj.FdtraceFdInfo) FD {
	fd := FD{
		PID:       int(key.Tgid),
		FD:        int(key.Fd),
		Type:      events.FDType(info.FdType).String(),
		Syscall:   events.Syscall(info.Syscall).String(),
		Cloexec:   info.Flags&uint8(bpfobj.FdtraceFdFlagsFDF_CLOEXEC) != 0,
		Seeded:    info.Flags&uint8(bpfobj.FdtraceFdFlagsFDF_SEEDED) != 0,
		Family:    events.FamilyName(int(info.Family)),
		SockType:  events.SockTypeName(int(info.SockType)),
		StackID:   t.stacks.Resolve(info.StackId),
		Inherited: info.Flags&uint8(bpfobj.FdtraceFdFlagsFDF_INHERITED) != 0,
	}
	if info.OpenNs != 0 {
		fd.OpenTime = t.clock.wall(info.OpenNs)
	}
	return fd
}

// Process is the summary of one live traced process, false if the kernel
// has not seen it do anything since fdtrace attached.
func (t *Tracer) Process(pid int) (events.Process, bool, error) {
	var p bpfobj.FdtraceProc
	if err := t.objs.Procs.Lookup(uint32(pid), &p); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return events.Process{}, false, nil
		}
		return events.Process{}, false, fmt.Errorf("reading procs map: %w", err)
	}
	errs, err := t.errorCounts()
	if err != nil {
		return events.Process{}, false, err
	}
	var ports *byPort
	if p.Refused > 0 {
		byProc, err := t.portCounts()
		if err != nil {
			return events.Process{}, false, err
		}
		ports = byProc[procKey{uint32(pid), p.StartNs}]
	}
	limit, _, _ := procfs.FDLimit(pid)
	return t.process(pid, &p, limit, errs[procKey{uint32(pid), p.StartNs}], ports), true, nil
}

// Processes summarises every live process the kernel has counters for,
// ordered by pid.
func (t *Tracer) Processes() ([]events.Process, error) {
	errs, err := t.errorCounts()
	if err != nil {
		return nil, err
	}
	ports, err := t.portCounts()
	if err != nil {
		return nil, err
	}
	var out []events.Process
	var pid uint32
	var p bpfobj.FdtraceProc
	it := t.objs.Procs.Iterate()
	for it.Next(&pid, &p) {
		limit, _, err := procfs.FDLimit(int(pid))
		rec := t.process(int(pid), &p, limit, errs[procKey{pid, p.StartNs}], ports[procKey{pid, p.StartNs}])
		// Gone, but its exit was not seen: it came after Detach.
		rec.Exited = err != nil
		out = append(out, rec)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading procs map: %w", err)
	}
	slices.SortFunc(out, func(a, b events.Process) int { return a.PID - b.PID })
	return out, nil
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

type procKey struct {
	tgid    uint32
	startNs uint64
}

func (t *Tracer) process(pid int, p *bpfobj.FdtraceProc, limit uint64, errs map[string]map[string]uint64, ports *byPort) events.Process {
	if errs == nil {
		errs = map[string]map[string]uint64{}
	}
	if ports == nil {
		ports = &byPort{}
	}
	return events.Process{
		Type: "process", Time: events.Time(time.Now()), PID: pid,
		Comm: cString(p.Comm[:]), OpenFDs: p.OpenFds, FDLimit: limit,
		Utilization: events.Utilization(p.OpenFds, limit),
		Opened:      p.Opened, Closed: p.Closed,
		OpenedByType: byType(p.OpenedByType[:]), ClosedByType: byType(p.ClosedByType[:]),
		Errors: errs, EMFILE: p.Emfile, ENFILE: p.Enfile, RefusedConnections: p.Refused,
		RefusedByPort: ports.refused, DroppedByPort: ports.dropped,
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

// errorCounts reads the errors map: process -> syscall -> errno -> count.
func (t *Tracer) errorCounts() (map[procKey]map[string]map[string]uint64, error) {
	out := map[procKey]map[string]map[string]uint64{}
	var key bpfobj.FdtraceErrKey
	var n uint64
	it := t.objs.Errors.Iterate()
	for it.Next(&key, &n) {
		addError(out, key, n)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading errors map: %w", err)
	}
	return out, nil
}

func addError(out map[procKey]map[string]map[string]uint64, key bpfobj.FdtraceErrKey, n uint64) {
	pk := procKey{key.Tgid, key.StartNs}
	if out[pk] == nil {
		out[pk] = map[string]map[string]uint64{}
	}
	sc := events.Syscall(key.Syscall).String()
	if out[pk][sc] == nil {
		out[pk][sc] = map[string]uint64{}
	}
	out[pk][sc][events.ErrnoName(int(key.Err))] += n
}

// takeErrors collects and removes the error counts of an exited process.
func (t *Tracer) takeErrors(tgid uint32, startNs uint64) map[string]map[string]uint64 {
	out := map[procKey]map[string]map[string]uint64{}
	var key bpfobj.FdtraceErrKey
	var n uint64
	var done []bpfobj.FdtraceErrKey
	it := t.objs.Errors.Iterate()
	for it.Next(&key, &n) {
		if key.Tgid == tgid && key.StartNs == startNs {
			addError(out, key, n)
			done = append(done, key)
		}
	}
	for _, k := range done {
		t.objs.Errors.Delete(k)
	}
	return out[procKey{tgid, startNs}]
}

// Stats are the loss and drift counters so far, and fdtrace's memory.
func (t *Tracer) Stats() (events.Stats, error) {
	var s events.Stats
	fields := statFields(&s)
	for id := range bpfobj.FdtraceStatIdSTAT_MAX {
		dst, ok := fields[id]
		if !ok {
			return s, fmt.Errorf("kernel stat %d has no field in the stats record", id)
		}
		var perCPU []uint64
		if err := t.objs.Stats.Lookup(uint32(id), &perCPU); err != nil {
			return s, fmt.Errorf("reading stats map: %w", err)
		}
		*dst = 0
		for _, v := range perCPU {
			*dst += v
		}
	}
	mem, err := t.Memory()
	if err != nil {
		return s, err
	}
	s.Memory = &mem
	t.mu.Lock()
	s.SeededFDs, s.ReconciledFDs, s.EventsDelivered = t.seeded, t.reconcile, t.delivered
	t.mu.Unlock()
	s.Type, s.Time, s.SkippedHooks = "stats", events.Time(time.Now()), t.skipped
	return s, nil
}

// statFields is where each kernel stat (enum stat_id) goes in s.
func statFields(s *events.Stats) map[bpfobj.FdtraceStatId]*uint64 {
	return map[bpfobj.FdtraceStatId]*uint64{
		bpfobj.FdtraceStatIdSTAT_LOST_EVENTS:      &s.LostEvents,
		bpfobj.FdtraceStatIdSTAT_FDS_FULL:         &s.FDsMapFull,
		bpfobj.FdtraceStatIdSTAT_PROCS_FULL:       &s.ProcsMapFull,
		bpfobj.FdtraceStatIdSTAT_ERRORS_FULL:      &s.ErrorsMapFull,
		bpfobj.FdtraceStatIdSTAT_DRIFT:            &s.KernelDrift,
		bpfobj.FdtraceStatIdSTAT_STACKS_FULL:      &s.StacksFull,
		bpfobj.FdtraceStatIdSTAT_PORTS_FULL:       &s.PortsMapFull,
		bpfobj.FdtraceStatIdSTAT_STACKS_NO_TABLES: &s.StacksNoTables,
		bpfobj.FdtraceStatIdSTAT_UNSWEPT:          &s.Unswept,
	}
}
