package tracer

import (
	"context"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/stacks"
	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// Handler receives each record in kernel order; an error stops the reader.
type Handler func(events.Record) error

// Run reads the kernel's records until ctx is done, then reads what is
// left, and hands h the records they make.
func (t *Tracer) Run(ctx context.Context, h Handler) error {
	c := comms{}
	return t.k.Read(ctx, func(batch []loader.Event) error { return t.handle(batch, h, c) })
}

// Drain hands h the records of what the kernel has written already and
// returns. After a traced process has done something, a Drain makes the
// view of it complete: the kernel wrote its records before the syscalls
// returned.
func (t *Tracer) Drain(h Handler) error {
	c := comms{}
	return t.k.Drain(func(batch []loader.Event) error { return t.handle(batch, h, c) })
}

func (t *Tracer) handle(batch []loader.Event, h Handler, c comms) error {
	for i := range batch {
		if err := t.handleOne(&batch[i], h, c); err != nil {
			return err
		}
	}
	t.pruneGone()
	return nil
}

// pruneEvery is how often the counts of processes gone unseen are pruned.
const pruneEvery = time.Minute

// pruneGone drops, now and then, the error and port counts of processes
// whose exit record was lost, which would fill the maps for good. Only
// with nothing left to read: an exit record still queued takes its
// process's counts itself.
func (t *Tracer) pruneGone() {
	if t.k == nil || time.Since(t.prunedAt) < pruneEvery || t.k.Unread() {
		return
	}
	t.prunedAt = time.Now()
	counted := map[loader.ProcKey]bool{}
	if t.k.EachCounters(func(c *loader.Counters) { counted[loader.ProcKey{PID: c.PID, StartNs: c.StartNs}] = true }) != nil {
		return
	}
	t.k.PruneGone(func(p loader.ProcKey) bool { return counted[p] || procfs.Exists(p.PID) })
}

func (t *Tracer) handleOne(e *loader.Event, h Handler, c comms) error {
	switch e.Kind {
	case loader.EventOpen:
		return h(events.Open{Type: "open", Time: t.time(e.Time), PID: e.PID, TID: e.TID,
			Comm: c.intern(e.Comm), Syscall: e.Syscall.String(), FD: e.FD, FDType: e.FDType.String(),
			Cloexec: e.Cloexec, Path: string(e.Path),
			Family: events.FamilyName(int(e.Family)), SockType: events.SockTypeName(int(e.SockType)),
			Stack: t.stacks.Frames(e.StackID)})
	case loader.EventClose:
		return h(events.Close{Type: "close", Time: t.time(e.Time), PID: e.PID, TID: e.TID,
			Comm: c.intern(e.Comm), Syscall: e.Syscall.String(), FD: e.FD, FDType: e.FDType.String()})
	case loader.EventError:
		return h(events.Error{Type: "error", Time: t.time(e.Time), PID: e.PID, TID: e.TID,
			Comm: c.intern(e.Comm), Syscall: e.Syscall.String(), Errno: events.ErrnoName(e.Errno),
			OpenFDs: e.OpenFDs, FDLimit: e.FDLimit, Path: string(e.Path), ListenPort: e.Port,
			Stack: t.stacks.Frames(e.StackID)})
	case loader.EventExit:
		return h(t.exited(e))
	case loader.EventSeed:
		t.seedChild(e.PID, e.Parent)
	case loader.EventStack:
		t.stacks.Add(e.PID, e.Parent, c.intern(e.Comm), e.StackID)
	case loader.EventMaps:
		t.stacks.LoadTables(e.PID)
	case loader.EventRawStack:
		t.stacks.AddCopy(stacks.Copy{PID: e.PID, Parent: e.Parent, Comm: c.intern(e.Comm),
			ID: e.StackID, IP: e.Raw.IP, SP: e.Raw.SP, BP: e.Raw.BP, Data: e.Raw.Data})
	}
	return nil
}

func (t *Tracer) time(ktime uint64) events.Time {
	return events.Time(t.wall(ktime))
}

// exited turns the final counters of a process into its last record.
func (t *Tracer) exited(e *loader.Event) events.Process {
	p := e.Counters
	key := loader.ProcKey{PID: p.PID, StartNs: p.StartNs}
	var ports []loader.PortCounts
	if p.Refused > 0 {
		ports = t.k.TakePorts(key)
	}
	var errs []loader.ErrorCount
	if p.Errors > 0 {
		errs = t.k.TakeErrors(key)
	}
	rec := process(p, e.FDLimit, errs, ports)
	rec.Time = t.time(e.Time)
	rec.Exited = true
	if t.cfg.KeepRecordsAtExit {
		t.collectExited(p.PID)
	}
	if t.stacks.Exited(p.PID) {
		t.collectStacks()
	}
	return rec
}

// SymbolizeStacksOf symbolizes, now, every stack of pid's live fds that
// has not been yet: for a process about to exit.
func (t *Tracer) SymbolizeStacksOf(pid int) {
	if t.stacks == nil {
		return
	}
	if t.stacks.UnwindsCopies() {
		// Stacks the kernel could not unwind are in the ring buffer.
		t.k.WaitCaughtUp(2 * time.Second)
	}
	var keys []uint64
	t.k.EachFD(func(fd loader.FD) {
		if fd.PID == pid {
			keys = append(keys, t.stacks.Resolve(fd.StackID))
		}
	})
	t.stacks.SymbolizeMissing(pid, keys)
}

// DropStacksExcept forgets, in the kernel and here, the stacks symbolized
// before `before` that are not in keep (the stacks of the live fds, read
// after `before`), so that a long run stays within the stack store. Stacks
// of exited processes' fds not yet taken are kept too.
func (t *Tracer) DropStacksExcept(keep map[uint64]bool, before time.Time) {
	t.mu.Lock()
	for _, fds := range t.exitedFDs {
		for _, fd := range fds {
			keep[fd.StackID] = true
		}
	}
	t.mu.Unlock()
	t.stacks.DropExcept(keep, before)
}

// collectStacks drops the stacks no record holds any more.
func (t *Tracer) collectStacks() {
	read := time.Now()
	live := map[uint64]bool{}
	if err := t.k.EachFD(func(fd loader.FD) { live[t.stacks.Resolve(fd.StackID)] = true }); err == nil {
		t.DropStacksExcept(live, read)
	}
}

// Stack is the symbolized stack of id, nil if unknown or id is 0.
func (t *Tracer) Stack(id uint64) []symbolize.Frame { return t.stacks.Frames(id) }
