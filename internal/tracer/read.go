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
// Records come as pointers (*events.Open, *events.Close, *events.Error,
// *events.Process) to space the reader reuses once h returns: h copies
// what it keeps. Their strings and stacks are h's to keep.
type Handler func(events.Record) error

// Run reads the kernel's records until ctx is done, then reads what is
// left, and hands h the records they make.
func (t *Tracer) Run(ctx context.Context, h Handler) error {
	r := newRecords()
	if err := t.k.Read(ctx, func(batch []loader.Event) error { return t.handle(batch, h, r) }); err != nil {
		return err
	}
	return t.settle(h)
}

// Drain hands h the records of what the kernel has written already and
// returns. After a traced process has done something, a Drain makes the
// view of it complete: the kernel wrote its records before the syscalls
// returned.
func (t *Tracer) Drain(h Handler) error {
	r := newRecords()
	if err := t.k.Drain(func(batch []loader.Event) error { return t.handle(batch, h, r) }); err != nil {
		return err
	}
	return t.settle(h)
}

// settle waits (at most StackWait) for the stacks read so far to be
// symbolized, and hands h every record held for them.
func (t *Tracer) settle(h Handler) error {
	t.deleteLeftRecords(true)
	t.stacks.Settle(t.stackWait)
	if err := t.flushHeld(h, true); err != nil {
		return err
	}
	if t.stacks.CollectionDue() {
		t.collectStacks()
	}
	return nil
}

// handle makes the batch's records; Read calls it with no events too,
// when a poll found none.
func (t *Tracer) handle(batch []loader.Event, h Handler, r *records) error {
	for i := range batch {
		if err := t.handleOne(&batch[i], h, r); err != nil {
			return err
		}
	}
	if err := t.flushHeld(h, false); err != nil {
		return err
	}
	if len(t.held) == 0 && t.stacks.CollectionDue() {
		t.collectStacks()
	}
	t.deleteLeftRecords(false)
	t.pruneGone()
	return nil
}

// StackWait is how long a record waits for its stack to be symbolized
// (which parses files the traced process maps, off the reader's path)
// before it goes out without it (tests set Tracer.stackWait); maxHeld,
// how many records may wait.
const (
	StackWait = 5 * time.Second
	maxHeld   = 1 << 16
)

// held is a record waiting, with those after it, for its stack.
type held struct {
	rec   events.Record // a copy of the reader's
	stack uint64        // 0: none
	at    time.Time
}

// emit hands h the record, or holds a copy of it: while its stack is being
// symbolized, or behind one that is, so that records stay in order.
func (t *Tracer) emit(rec events.Record, stack uint64, h Handler) error {
	if len(t.held) == 0 && t.stacks.Ready(stack) {
		setStack(rec, t.stacks.Frames(stack))
		return h(rec)
	}
	t.held = append(t.held, held{clone(rec), stack, time.Now()})
	return nil
}

// flushHeld hands h the held records whose stacks are ready, in order;
// past StackWait (or maxHeld records, or with all set) without theirs.
func (t *Tracer) flushHeld(h Handler, all bool) error {
	if len(t.held) == 0 {
		return nil
	}
	n := 0
	for _, r := range t.held {
		if !t.stacks.Ready(r.stack) {
			if !all && time.Since(r.at) < t.stackWait && len(t.held)-n <= maxHeld {
				break
			}
			t.late.Add(1)
		}
		setStack(r.rec, t.stacks.Frames(r.stack))
		if err := h(r.rec); err != nil {
			return err
		}
		n++
	}
	clear(t.held[:n])
	t.held = append(t.held[:0], t.held[n:]...)
	return nil
}

// setStack gives rec its stack's frames.
func setStack(rec events.Record, frames []symbolize.Frame) {
	switch r := rec.(type) {
	case *events.Open:
		r.Stack = frames
	case *events.Error:
		r.Stack = frames
	}
}

// clone is a copy of a record the reader will reuse.
func clone(rec events.Record) events.Record {
	switch r := rec.(type) {
	case *events.Open:
		c := *r
		return &c
	case *events.Close:
		c := *r
		return &c
	case *events.Error:
		c := *r
		return &c
	}
	return rec
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

func (t *Tracer) handleOne(e *loader.Event, h Handler, r *records) error {
	switch e.Kind {
	case loader.EventOpen:
		r.open = events.Open{Type: "open", Time: t.time(e.Time), PID: e.PID, TID: e.TID,
			Comm: r.comms.intern(e.Comm), Syscall: e.Syscall.String(), FD: e.FD, FDType: e.FDType.String(),
			Cloexec: e.Cloexec, Path: r.paths.intern(e.Path), UserData: e.UserData,
			Family: events.FamilyName(int(e.Family)), SockType: events.SockTypeName(int(e.SockType))}
		return t.emit(&r.open, e.StackID, h)
	case loader.EventClose:
		r.close = events.Close{Type: "close", Time: t.time(e.Time), PID: e.PID, TID: e.TID,
			Comm: r.comms.intern(e.Comm), Syscall: e.Syscall.String(), FD: e.FD, FDType: e.FDType.String()}
		return t.emit(&r.close, 0, h)
	case loader.EventError:
		r.err = events.Error{Type: "error", Time: t.time(e.Time), PID: e.PID, TID: e.TID,
			Comm: r.comms.intern(e.Comm), Syscall: e.Syscall.String(), Errno: events.ErrnoName(e.Errno),
			OpenFDs: e.OpenFDs, FDLimit: e.FDLimit, Path: r.paths.intern(e.Path), ListenPort: e.Port}
		return t.emit(&r.err, e.StackID, h)
	case loader.EventExit:
		t.noteLeftRecords(e)
		p := t.exited(e)
		return t.emit(&p, 0, h)
	case loader.EventSeed:
		t.seedChild(e.PID, e.Parent)
	case loader.EventStack:
		t.stacks.Add(e.PID, e.Parent, r.comms.intern(e.Comm), e.StackID)
	case loader.EventMaps:
		t.stacks.LoadTablesLater(e.PID)
	case loader.EventRawStack:
		t.stacks.AddCopy(stacks.Copy{PID: e.PID, Parent: e.Parent, Comm: r.comms.intern(e.Comm),
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
	errs := e.ExitErrors
	if e.ErrorsLeft {
		errs = append(errs, t.k.TakeErrors(key)...)
	}
	rec := process(p, e.FDLimit, errs, ports)
	rec.Time = t.time(e.Time)
	rec.Exited = true
	if t.cfg.KeepRecordsAtExit {
		t.collectExited(p.PID)
	}
	t.stacks.Exited(p.PID)
	return rec
}

// SymbolizeStacksOf symbolizes, now, every stack of pid's live fds that
// has not been yet: for a process about to exit.
func (t *Tracer) SymbolizeStacksOf(pid int) {
	if t.stacks == nil {
		return
	}
	// Its stacks the reader has met are queued, or being symbolized.
	t.k.WaitCaughtUp(2 * time.Second)
	t.stacks.Settle(t.stackWait)
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

// collectStacks drops the stacks no record holds any more (nor one held
// for its stack).
func (t *Tracer) collectStacks() {
	read := time.Now()
	live := map[uint64]bool{}
	for _, r := range t.held {
		live[t.stacks.Resolve(r.stack)] = true
	}
	if err := t.k.EachFD(func(fd loader.FD) { live[t.stacks.Resolve(fd.StackID)] = true }); err == nil {
		t.DropStacksExcept(live, read)
	}
}

// Stack is the symbolized stack of id, nil if unknown or id is 0.
func (t *Tracer) Stack(id uint64) []symbolize.Frame { return t.stacks.Frames(id) }
