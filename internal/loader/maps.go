package loader

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/cilium/ebpf"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
)

// The kernel's state, read and written in typed snapshots: the records of
// the live fds, the counters of the processes, their failed syscalls and
// refused connections, and the loss counters.

// FD is the kernel's record of one live fd.
type FD struct {
	PID, FD int
	Type    events.FDType
	Syscall events.Syscall
	OpenNs  uint64 // bpf_ktime_get_ns() at its creation; 0 when seeded
	Cloexec bool
	// Seeded: recorded from /proc rather than seen being created.
	Seeded bool
	// Inherited: copied from the parent at fork, which opened it.
	Inherited        bool
	Family, SockType uint16
	// StackID is the stack of its creation as the kernel has it: a key
	// of the stacks map, a provisional id (stacks.Store.Resolve), or 0.
	StackID uint64
}

func fdOf(key *bpfobj.FdtraceFdKey, info *bpfobj.FdtraceFdInfo) FD {
	return FD{PID: int(key.Tgid), FD: int(key.Fd), Type: events.FDType(info.FdType),
		Syscall: events.Syscall(info.Syscall), OpenNs: info.OpenNs,
		Cloexec:   info.Flags&uint8(bpfobj.FdtraceFdFlagsFDF_CLOEXEC) != 0,
		Seeded:    info.Flags&uint8(bpfobj.FdtraceFdFlagsFDF_SEEDED) != 0,
		Inherited: info.Flags&uint8(bpfobj.FdtraceFdFlagsFDF_INHERITED) != 0,
		Family:    info.Family, SockType: info.SockType, StackID: info.StackId}
}

func fdInfoOf(fd FD) bpfobj.FdtraceFdInfo {
	info := bpfobj.FdtraceFdInfo{OpenNs: fd.OpenNs, StackId: fd.StackID, Syscall: uint16(fd.Syscall),
		FdType: uint8(fd.Type), Family: fd.Family, SockType: fd.SockType}
	for _, f := range []struct {
		set  bool
		flag bpfobj.FdtraceFdFlags
	}{
		{fd.Cloexec, bpfobj.FdtraceFdFlagsFDF_CLOEXEC},
		{fd.Seeded, bpfobj.FdtraceFdFlagsFDF_SEEDED},
		{fd.Inherited, bpfobj.FdtraceFdFlagsFDF_INHERITED},
	} {
		if f.set {
			info.Flags |= uint8(f.flag)
		}
	}
	return info
}

// fdBatch is how many fds map entries one syscall reads.
const fdBatch = 1024

// EachFD calls fn with every live fd the kernel holds a record of, each
// once, as it reads the fds map in batches.
func (k *Kernel) EachFD(fn func(FD)) error {
	return k.eachRecord(func(key *bpfobj.FdtraceFdKey, info *bpfobj.FdtraceFdInfo) {
		if live(info.Gen) {
			fn(fdOf(key, info))
		}
	})
}

// eachRecord calls fn with every entry of the fds map, tombstones too.
func (k *Kernel) eachRecord(fn func(*bpfobj.FdtraceFdKey, *bpfobj.FdtraceFdInfo)) error {
	// A batch is whole hash buckets and a key has one bucket, so no key
	// comes twice, even while the kernel deletes: unlike a get-next-key
	// walk, which restarts from the first bucket when its key is deleted.
	keys := make([]bpfobj.FdtraceFdKey, fdBatch)
	infos := make([]bpfobj.FdtraceFdInfo, fdBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := k.objs.Fds.BatchLookup(&cursor, keys, infos, nil)
		for i := range n {
			fn(&keys[i], &infos[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading fds map: %w", err)
		}
	}
}

// LeftRecords are the records of an exited process its exit's sweep did
// not reach (Event.UnsweptFrom): of fds from From on, made before Before
// (the exit's kernel time).
type LeftRecords struct {
	From   int
	Before uint64
}

// DeleteLeftRecords deletes, in one walk of the fds map, the records (and
// tombstones) the exits of processes left (by pid), and says how many
// went. The next process of a pid may have records of those numbers by
// then: the kernel made them after the exit, which their gens tell, and
// they stay. (Its records from /proc must not go in before this: they
// have no time.)
func (k *Kernel) DeleteLeftRecords(left map[int]LeftRecords) (int, error) {
	type stale struct {
		key bpfobj.FdtraceFdKey
		gen uint64
	}
	var found []stale
	err := k.eachRecord(func(key *bpfobj.FdtraceFdKey, info *bpfobj.FdtraceFdInfo) {
		l, ok := left[int(key.Tgid)]
		// One being written is the next process's.
		if ok && int(key.Fd) >= l.From && info.Gen != recBusy && madeBefore(info.Gen, l.Before) {
			found = append(found, stale{*key, info.Gen})
		}
	})
	deleted := 0
	for _, s := range found {
		// Not if the next process has taken the record over since (a
		// window of two syscalls).
		var info bpfobj.FdtraceFdInfo
		if k.objs.Fds.Lookup(s.key, &info) == nil && info.Gen == s.gen && k.objs.Fds.Delete(s.key) == nil {
			deleted++
		}
	}
	return deleted, err
}

// madeBefore says whether the record of gen was made before kernel time
// ns: user space's were (bit 63), the kernel's hold the time they were
// made in their low 56 bits (see new_gen in account.bpf.h).
func madeBefore(gen, ns uint64) bool {
	return gen&(1<<63) != 0 || gen&(1<<56-1) <= ns
}

// The gens of records that stand for no open fd (see account.bpf.h): a
// closed fd's, left as its number's tombstone (REC_DEAD), and one its
// creator is writing (REC_BUSY).
const (
	recDead = 1
	recBusy = 2
)

// live says whether a record of gen stands for an open fd.
func live(gen uint64) bool { return gen > recBusy }

// userGen numbers the records user space puts in; bit 63 keeps them apart
// from the kernel's (see new_gen in account.bpf.h).
var userGen atomic.Uint64

// LookupFD is the record of one fd, false if there is none.
func (k *Kernel) LookupFD(pid, fd int) (FD, bool) {
	key := bpfobj.FdtraceFdKey{Tgid: uint32(pid), Fd: int32(fd)}
	var info bpfobj.FdtraceFdInfo
	if k.objs.Fds.Lookup(key, &info) != nil || !live(info.Gen) {
		return FD{}, false
	}
	return fdOf(&key, &info), true
}

// InsertFD adds the record of an fd unless it has one, and says its gen
// (0: it had one). The fd was open when the kernel first counted its
// process, so the record says it is one of the process's fds counted from
// the table (see account.bpf.h).
func (k *Kernel) InsertFD(fd FD) (uint64, error) {
	key := bpfobj.FdtraceFdKey{Tgid: uint32(fd.PID), Fd: int32(fd.FD)}
	info := fdInfoOf(fd)
	info.Flags |= uint8(bpfobj.FdtraceFdFlagsFDF_TABLE_COUNTED)
	info.Gen = userGen.Add(1) | 1<<63
	err := k.objs.Fds.Update(key, info, ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("recording fd %d of pid %d: %w", fd.FD, fd.PID, err)
	}
	return info.Gen, nil
}

// DeleteSeededFD removes the record of gen that InsertFD added for an fd,
// unless another has taken its place since (a gen of its own): the fd's
// next creator found it, and it is that fd's record now.
func (k *Kernel) DeleteSeededFD(pid, fd int, gen uint64) {
	key := bpfobj.FdtraceFdKey{Tgid: uint32(pid), Fd: int32(fd)}
	var info bpfobj.FdtraceFdInfo
	if k.objs.Fds.Lookup(key, &info) != nil || info.Gen != gen {
		return
	}
	// The kernel may still take it over between the lookup and the
	// delete: a window of two map syscalls, not the whole listing.
	k.objs.Fds.Delete(key)
}

// DeleteFD removes the record of an fd.
func (k *Kernel) DeleteFD(pid, fd int) {
	k.objs.Fds.Delete(bpfobj.FdtraceFdKey{Tgid: uint32(pid), Fd: int32(fd)})
}

// Track adds a running process to the traced set, when tracing by pid.
func (k *Kernel) Track(pid int) error {
	if len(k.cfg.PIDs) == 0 && k.cfg.FollowChildrenOf == 0 {
		return nil
	}
	// A followed child is in the set already, with its own flags.
	err := k.objs.Traced.Update(uint32(pid), uint8(traceSelf), ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("adding pid %d to the traced set: %w", pid, err)
	}
	return nil
}

// NumFDTypes is how many fd types the kernel counts (events.FDType).
const NumFDTypes = len(bpfobj.FdtraceProc{}.OpenedByType)

// The kernel's by-type arrays are indexed by events.FDType.
var _ [NumFDTypes - events.NumFDTypes]struct{}
var _ [events.NumFDTypes - NumFDTypes]struct{}

// Counters are one process's counters as the kernel keeps them (struct
// proc).
type Counters struct {
	PID int
	// StartNs is when the process started (CLOCK_MONOTONIC): it tells a
	// reused pid apart.
	StartNs        uint64
	Comm           string
	OpenFDs        int64
	Opened, Closed uint64
	Errors         uint64 // every failed fd-creating syscall, any errno
	EMFILE, ENFILE uint64
	Refused        uint64
	// Indexed by events.FDType.
	OpenedByType, ClosedByType [NumFDTypes]uint64
}

func countersOf(pid int, p *bpfobj.FdtraceProc) Counters {
	c := Counters{PID: pid, StartNs: p.StartNs, Comm: cString(p.Comm[:]),
		Closed: p.ClosedUntyped, Errors: p.Errors,
		EMFILE: p.Emfile, ENFILE: p.Enfile, Refused: p.Refused,
		OpenedByType: p.OpenedByType, ClosedByType: p.ClosedByType}
	// The kernel counts an fd once, by type: the totals are the sums,
	// and the open fds what they leave of open_base (proc_open_fds).
	for t := range c.OpenedByType {
		c.Opened += c.OpenedByType[t]
		c.Closed += c.ClosedByType[t]
	}
	c.OpenFDs = p.OpenBase + int64(c.Opened) - int64(c.Closed)
	return c
}

func cString(b []int8) string {
	buf := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		buf = append(buf, byte(c))
	}
	return string(buf)
}

// A process's counters are in the slot of the proc_slots map at the low
// bits of its pid, the slot's Owner then, or in the procs map keyed by pid
// (see bpf/account.bpf.h). A slot is free with Owner 0, and being filled
// with slotBusy.
const slotBusy = ^uint32(0)

// CountersOf reads the counters of one process, false if the kernel has
// none (it did nothing since fdtrace attached).
func (k *Kernel) CountersOf(pid int) (Counters, bool, error) {
	var p bpfobj.FdtraceProc
	_, _, ok, err := k.procOf(pid, &p)
	if !ok || err != nil {
		return Counters{}, false, err
	}
	return countersOf(pid, &p), true, nil
}

// procOf reads the counters of one process into p, and says in which map
// and under which key they are; false if the kernel has none.
func (k *Kernel) procOf(pid int, p *bpfobj.FdtraceProc) (*ebpf.Map, uint32, bool, error) {
	slot := uint32(pid) & (k.objs.ProcSlots.MaxEntries() - 1)
	if err := k.objs.ProcSlots.Lookup(slot, p); err != nil {
		return nil, 0, false, fmt.Errorf("reading proc_slots map: %w", err)
	}
	if p.Owner == uint32(pid) {
		return k.objs.ProcSlots, slot, true, nil
	}
	if err := k.objs.Procs.Lookup(uint32(pid), p); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, 0, false, nil
		}
		return nil, 0, false, fmt.Errorf("reading procs map: %w", err)
	}
	return k.objs.Procs, uint32(pid), true, nil
}

// procBatch is how many entries of a procs map one syscall reads.
const procBatch = 256

// EachCounters calls fn with the counters of every process the kernel has
// counters for, each once, as it reads the proc maps in batches. fn must
// not keep c.
func (k *Kernel) EachCounters(fn func(c *Counters)) error {
	var c Counters
	return k.eachProc(func(pid uint32, p *bpfobj.FdtraceProc) {
		c = countersOf(int(pid), p)
		fn(&c)
	})
}

// eachProc calls fn with the counters of every process, slots first.
func (k *Kernel) eachProc(fn func(pid uint32, p *bpfobj.FdtraceProc)) error {
	err := eachEntry(k.objs.ProcSlots, func(_ uint32, p *bpfobj.FdtraceProc) {
		if p.Owner != 0 && p.Owner != slotBusy {
			fn(p.Owner, p)
		}
	})
	if err != nil {
		return fmt.Errorf("reading proc_slots map: %w", err)
	}
	if err := eachEntry(k.objs.Procs, fn); err != nil {
		return fmt.Errorf("reading procs map: %w", err)
	}
	return nil
}

// eachEntry calls fn with every entry of a map, read in batches. fn must
// not keep v.
func eachEntry[K, V any](m *ebpf.Map, fn func(k K, v *V)) error {
	keys, vals := make([]K, procBatch), make([]V, procBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// ProcKey names one process instance: its pid and start time.
type ProcKey struct {
	PID     int
	StartNs uint64
}

// ErrorCount is how often one syscall of one process failed with one
// errno.
type ErrorCount struct {
	Proc    ProcKey
	Syscall events.Syscall
	Errno   int
	Count   uint64
}

func errorCountOf(key *bpfobj.FdtraceErrKey, n uint64) ErrorCount {
	return ErrorCount{Proc: ProcKey{int(key.Tgid), key.StartNs}, Syscall: events.Syscall(key.Syscall),
		Errno: int(key.Err), Count: n}
}

// Errors are the failed fd-creating syscalls of the live processes.
func (k *Kernel) Errors() ([]ErrorCount, error) {
	var out []ErrorCount
	var key bpfobj.FdtraceErrKey
	var n uint64
	it := k.objs.Errors.Iterate()
	for it.Next(&key, &n) {
		out = append(out, errorCountOf(&key, n))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading errors map: %w", err)
	}
	return out, nil
}

// TakeErrors collects and removes the error counts of an exited process.
func (k *Kernel) TakeErrors(p ProcKey) []ErrorCount {
	var out []ErrorCount
	var key bpfobj.FdtraceErrKey
	var n uint64
	var done []bpfobj.FdtraceErrKey
	it := k.objs.Errors.Iterate()
	for it.Next(&key, &n) {
		if int(key.Tgid) == p.PID && key.StartNs == p.StartNs {
			out = append(out, errorCountOf(&key, n))
			done = append(done, key)
		}
	}
	for _, key := range done {
		k.objs.Errors.Delete(key)
	}
	return out
}

// PortCounts are the refused and dropped connections of one listening
// port of one process.
type PortCounts struct {
	Proc ProcKey
	Port uint16
	// Refused counts the accepts on the port that failed for lack of fds
	// or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).
	Refused uint64
	// Dropped counts the connections accepted after a refusal and closed
	// untouched: the clients a runtime's drain of its queue reset.
	Dropped uint64
	// Draining: a refused accept began a drain that has not ended yet.
	Draining bool
}

// portBatch is how many ports map entries one syscall reads.
const portBatch = 256

// Ports lists the per-port counts of the processes the kernel counts,
// ordered by pid and port: cheap enough to read at every refresh of a live
// view. The counts of an exited process go with its last record.
func (k *Kernel) Ports() ([]PortCounts, error) {
	var out []PortCounts
	err := k.eachPort(func(key *bpfobj.FdtracePortKey, c *bpfobj.FdtracePortCounts) {
		out = append(out, portCountsOf(key, c))
	})
	slices.SortFunc(out, func(a, b PortCounts) int {
		return cmp.Or(cmp.Compare(a.Proc.PID, b.Proc.PID), cmp.Compare(a.Port, b.Port))
	})
	return out, err
}

func portCountsOf(k *bpfobj.FdtracePortKey, c *bpfobj.FdtracePortCounts) PortCounts {
	return PortCounts{Proc: ProcKey{int(k.Tgid), k.StartNs}, Port: k.Port,
		Refused: c.Refused, Dropped: c.Dropped, Draining: c.Draining != 0}
}

func (k *Kernel) eachPort(fn func(*bpfobj.FdtracePortKey, *bpfobj.FdtracePortCounts)) error {
	keys := make([]bpfobj.FdtracePortKey, portBatch)
	vals := make([]bpfobj.FdtracePortCounts, portBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := k.objs.Ports.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(&keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading ports map: %w", err)
		}
	}
}

// TakePorts collects and removes the per-port counts of an exited process.
func (k *Kernel) TakePorts(p ProcKey) []PortCounts {
	var out []PortCounts
	var done []bpfobj.FdtracePortKey
	k.eachPort(func(key *bpfobj.FdtracePortKey, c *bpfobj.FdtracePortCounts) {
		if int(key.Tgid) == p.PID && key.StartNs == p.StartNs {
			out = append(out, portCountsOf(key, c))
			done = append(done, *key)
		}
	})
	for _, key := range done {
		k.objs.Ports.Delete(key)
	}
	return out
}

// KernelStats fills in s the loss and drift counters the kernel keeps.
func (k *Kernel) KernelStats(s *events.Stats) error {
	fields := statFields(s)
	for id := range bpfobj.FdtraceStatIdSTAT_MAX {
		dst, ok := fields[id]
		if !ok {
			return fmt.Errorf("kernel stat %d has no field in the stats record", id)
		}
		var perCPU []uint64
		if err := k.objs.Stats.Lookup(uint32(id), &perCPU); err != nil {
			return fmt.Errorf("reading stats map: %w", err)
		}
		*dst = 0
		for _, v := range perCPU {
			*dst += v
		}
	}
	s.SkippedHooks = k.skipped
	return nil
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

// DrainGates are the gates of the drain detection: how many ports are in
// a drain, and how many connections accepted in one wait to be judged.
// Accepts and closes pay for the detection only while they are not 0.
func (k *Kernel) DrainGates() (draining, pending uint64, err error) {
	if err := k.objs.Drains.Get(&draining); err != nil {
		return 0, 0, err
	}
	if err := k.objs.DrainPending.Get(&pending); err != nil {
		return 0, 0, err
	}
	return draining, pending, nil
}

// PruneGone removes the error and port counts of processes that are not
// live (as live says): those whose exit record was never read (the ring
// buffer was full), which would otherwise fill the maps for good. It says
// how many entries went.
func (k *Kernel) PruneGone(live func(ProcKey) bool) int {
	var errKeys []bpfobj.FdtraceErrKey
	var key bpfobj.FdtraceErrKey
	var n uint64
	for it := k.objs.Errors.Iterate(); it.Next(&key, &n); {
		if !live(ProcKey{int(key.Tgid), key.StartNs}) {
			errKeys = append(errKeys, key)
		}
	}
	var portKeys []bpfobj.FdtracePortKey
	k.eachPort(func(key *bpfobj.FdtracePortKey, _ *bpfobj.FdtracePortCounts) {
		if !live(ProcKey{int(key.Tgid), key.StartNs}) {
			portKeys = append(portKeys, *key)
		}
	})
	gone := 0
	for _, key := range errKeys {
		if k.objs.Errors.Delete(key) == nil {
			gone++
		}
	}
	for _, key := range portKeys {
		if k.objs.Ports.Delete(key) == nil {
			gone++
		}
	}
	return gone
}

// Unread says whether records wait in the ring buffer, or read, for the
// reader's handler.
func (k *Kernel) Unread() bool {
	return k.ring.available() > 0 || k.readSeq.Load() != k.handedSeq.Load()
}

// Totals are host-wide counts since fdtrace attached, which exits do not
// take away (the metrics' counters only grow, exit records read or lost).
type Totals struct {
	// EMFILE and ENFILE count the fd-creating syscalls that failed for
	// lack of fds; Refused the accepts that failed for lack of fds or
	// memory.
	EMFILE, ENFILE, Refused uint64
	// Errors and Ports are by syscall and errno, and by port (Proc
	// zero, Draining false).
	Errors []ErrorCount
	Ports  []PortCounts
}

// Totals reads the host-wide counts.
func (k *Kernel) Totals() (Totals, error) {
	var t Totals
	for id, dst := range map[bpfobj.FdtraceTotalId]*uint64{
		bpfobj.FdtraceTotalIdTOTAL_EMFILE:  &t.EMFILE,
		bpfobj.FdtraceTotalIdTOTAL_ENFILE:  &t.ENFILE,
		bpfobj.FdtraceTotalIdTOTAL_REFUSED: &t.Refused,
	} {
		var perCPU []uint64
		if err := k.objs.Totals.Lookup(uint32(id), &perCPU); err != nil {
			return t, fmt.Errorf("reading totals map: %w", err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	var ek bpfobj.FdtraceErrTotalKey
	var n uint64
	it := k.objs.ErrorTotals.Iterate()
	for it.Next(&ek, &n) {
		t.Errors = append(t.Errors, ErrorCount{Syscall: events.Syscall(ek.Syscall), Errno: int(ek.Err), Count: n})
	}
	if err := it.Err(); err != nil {
		return t, fmt.Errorf("reading error_totals map: %w", err)
	}
	var port uint32
	var pt bpfobj.FdtracePortTotal
	it = k.objs.PortTotals.Iterate()
	for it.Next(&port, &pt) {
		t.Ports = append(t.Ports, PortCounts{Port: uint16(port), Refused: pt.Refused, Dropped: pt.Dropped})
	}
	if err := it.Err(); err != nil {
		return t, fmt.Errorf("reading port_totals map: %w", err)
	}
	slices.SortFunc(t.Errors, func(a, b ErrorCount) int {
		return cmp.Or(cmp.Compare(a.Syscall, b.Syscall), cmp.Compare(a.Errno, b.Errno))
	})
	slices.SortFunc(t.Ports, func(a, b PortCounts) int { return cmp.Compare(a.Port, b.Port) })
	return t, nil
}
