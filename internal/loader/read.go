package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// Handler receives each record in kernel order; an error stops the reader.
type Handler func(events.Record) error

// Run reads the ring buffer until ctx is done, then reads what is left.
func (t *Tracer) Run(ctx context.Context, h Handler) error {
	var rec ringbuf.Record
	c := comms{}
	for ctx.Err() == nil {
		t.reader.SetDeadline(time.Now().Add(t.cfg.PollInterval))
		err := t.reader.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading ring buffer: %w", err)
		}
		t.readSeq.Add(1)
		err = t.handle(rec.RawSample, h, c)
		t.handledSeq.Add(1)
		if err != nil {
			return err
		}
	}
	return t.drain(h, c)
}

// waitCaughtUp waits, at most timeout, until the reader has handled
// every record the kernel had written when it was called.
func (t *Tracer) waitCaughtUp(timeout time.Duration) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if t.reader.AvailableBytes() == 0 && t.readSeq.Load() == t.handledSeq.Load() {
			return
		}
	}
}

// Drain handles every record already in the ring buffer and returns. After
// a traced process has done something, a Drain makes fdtrace's view of it
// complete: the kernel wrote its records before the syscalls returned.
func (t *Tracer) Drain(h Handler) error {
	return t.drain(h, comms{})
}

func (t *Tracer) drain(h Handler, c comms) error {
	var rec ringbuf.Record
	t.reader.SetDeadline(time.Now())
	for {
		err := t.reader.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading ring buffer: %w", err)
		}
		t.readSeq.Add(1)
		err = t.handle(rec.RawSample, h, c)
		t.handledSeq.Add(1)
		if err != nil {
			return err
		}
	}
}

func (t *Tracer) handle(raw []byte, h Handler, c comms) error {
	if len(raw) == 0 {
		return nil
	}
	t.mu.Lock()
	t.delivered++
	t.mu.Unlock()
	if bpfobj.FdtraceEventKind(raw[0]) == bpfobj.FdtraceEventKindEV_EXIT {
		var e bpfobj.FdtraceExitEvent
		if err := decodeExitEvent(raw, &e); err != nil {
			return fmt.Errorf("decoding exit event: %w", err)
		}
		return h(t.exited(&e))
	}
	if bpfobj.FdtraceEventKind(raw[0]) == bpfobj.FdtraceEventKindEV_RAW_STACK {
		var e rawStackEvent
		if err := decodeRawStack(raw, &e); err != nil {
			return err
		}
		t.unwindRawStack(&e, c)
		return nil
	}
	var e rawFdEvent
	if err := decodeFdEvent(raw, &e); err != nil {
		return fmt.Errorf("decoding event: %w", err)
	}
	switch bpfobj.FdtraceEventKind(e.Kind) {
	case bpfobj.FdtraceEventKindEV_OPEN:
		return h(events.Open{Type: "open", Time: t.time(e.Ts), PID: int(e.Pid), TID: int(e.Tid),
			Comm: c.intern(e.Comm), Syscall: events.Syscall(e.Syscall).String(),
			FD: int(e.Fd), FDType: events.FDType(e.FdType).String(),
			Cloexec: e.Flags&uint16(bpfobj.FdtraceFdFlagsFDF_CLOEXEC) != 0, Path: string(e.Path),
			Family: events.FamilyName(int(e.Family)), SockType: events.SockTypeName(int(e.SockType)),
			Stack: t.Stack(e.StackId)})
	case bpfobj.FdtraceEventKindEV_CLOSE:
		return h(events.Close{Type: "close", Time: t.time(e.Ts), PID: int(e.Pid), TID: int(e.Tid),
			Comm: c.intern(e.Comm), Syscall: events.Syscall(e.Syscall).String(),
			FD: int(e.Fd), FDType: events.FDType(e.FdType).String()})
	case bpfobj.FdtraceEventKindEV_ERROR:
		return h(events.Error{Type: "error", Time: t.time(e.Ts), PID: int(e.Pid), TID: int(e.Tid),
			Comm: c.intern(e.Comm), Syscall: events.Syscall(e.Syscall).String(),
			Errno: events.ErrnoName(int(e.Err)), OpenFDs: e.OpenFds,
			FDLimit: e.FdLimit, Path: string(e.Path), ListenPort: e.Port, Stack: t.Stack(e.StackId)})
	case bpfobj.FdtraceEventKindEV_SEED:
		t.seedChild(int(e.Pid), int(e.Ppid))
		return nil
	case bpfobj.FdtraceEventKindEV_STACK:
		return t.symbolizeStack(int(e.Pid), int(e.Ppid), c.intern(e.Comm), e.StackId)
	case bpfobj.FdtraceEventKindEV_MAPS:
		if t.unwind != nil {
			t.unwind.refresh(int(e.Pid))
		}
		return nil
	}
	return fmt.Errorf("unknown event kind %d", e.Kind)
}

func (t *Tracer) time(ktime uint64) events.Time {
	return events.Time(t.clock.wall(ktime))
}

// symbolizeStack resolves a new stack while its process still lives.
func (t *Tracer) symbolizeStack(pid, parent int, comm string, id uint64) error {
	var st bpfobj.FdtraceStack
	if err := t.objs.Stacks.Lookup(id, &st); err != nil {
		return nil // already collected: records keep the id only
	}
	n := min(int(st.Nr), len(st.Ips))
	t.remember(pid, parent, comm, id, st.Ips[:n])
	return nil
}

func (t *Tracer) remember(pid, parent int, comm string, id uint64, ips []uint64) {
	frames := t.cfg.Symbolizer.Symbolize(pid, ips)
	if unmapped(frames) {
		frames = t.symbolizeAsParent(parent, comm, ips, frames)
	}
	t.mu.Lock()
	t.stacks[id] = frames
	t.stackMeta[id] = stackMeta{pid: pid, at: time.Now()}
	t.stackCount[pid]++
	t.mu.Unlock()
}

// unwindRawStack unwinds a stack the kernel could not, its process's
// unwind tables not being loaded yet: it loads them, unwinds the copy of
// the stack, and files the result under the key the kernel would have
// given it, so that it is one stack with those the kernel walks later. The
// fd's record keeps the provisional id, which Stack and EachFD translate.
func (t *Tracer) unwindRawStack(e *rawStackEvent, c comms) {
	if t.unwind == nil {
		return
	}
	pid := int(e.Pid)
	// A backlog of copies from one process needs its mappings read once:
	// again only when the copy runs into code they do not hold.
	ips, unknown := t.unwind.unwindCopy(pid, int(e.Ppid), e.IP, e.SP, e.BP, e.Data)
	if unknown {
		if err := t.unwind.refresh(pid); errors.Is(err, errGone) {
			// A forked child gone already: it ran its parent's code,
			// whose mappings its siblings will start with (see the
			// fork handler).
			t.unwind.refresh(int(e.Ppid))
		}
		ips, _ = t.unwind.unwindCopy(pid, int(e.Ppid), e.IP, e.SP, e.BP, e.Data)
	}
	id := stackKey(e.Pid, ips)
	var st bpfobj.FdtraceStack
	st.Nr = uint32(copy(st.Ips[:], ips))
	err := t.objs.Stacks.Update(id, &st, ebpf.UpdateNoExist)
	t.mu.Lock()
	t.aliases[e.StackID] = id
	_, known := t.stacks[id]
	t.mu.Unlock()
	if err == nil || !known {
		t.remember(pid, int(e.Ppid), c.intern(e.Comm), id, ips)
	}
}

// LoadUnwindTables loads the unwind tables of the files pid maps now,
// if stacks are unwound by DWARF: for a process that has not run yet.
func (t *Tracer) LoadUnwindTables(pid int) {
	if t.unwind != nil {
		t.unwind.refresh(pid)
	}
}

// realStack is the stack id behind a provisional one (see unwindRawStack).
func (t *Tracer) realStack(id uint64) uint64 {
	if id&1 != 0 || id == 0 {
		return id
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if real, ok := t.aliases[id]; ok {
		return real
	}
	return id
}

// orphanStacksGC is how many stacks of exited processes may pile up
// before the stacks no fd refers to are collected.
const orphanStacksGC = 1024

// stacksOfExited notes that pid's stacks may be garbage now (children may
// still hold fds it created) and collects them once enough piled up, so
// that a long run without reports stays within the stack store.
func (t *Tracer) stacksOfExited(pid int) {
	t.mu.Lock()
	t.orphanStacks += t.stackCount[pid]
	delete(t.stackCount, pid)
	collect := t.orphanStacks >= orphanStacksGC
	if collect {
		t.orphanStacks = 0
	}
	t.mu.Unlock()
	if !collect {
		return
	}
	read := time.Now()
	live := map[uint64]bool{}
	if err := t.EachFD(func(fd FD) { live[fd.StackID] = true }); err == nil {
		t.DropStacksExcept(live, read)
	}
}

// stackMeta is whose a symbolized stack is, and since when it is known.
// A stack's key hashes its process in: no two processes share one.
type stackMeta struct {
	pid int
	at  time.Time
}

func unmapped(frames []symbolize.Frame) bool {
	for _, f := range frames {
		if f.Module != "" {
			return false
		}
	}
	return true
}

// symbolizeAsParent symbolizes the stack of a process that exited before
// its maps could be read with its parent's maps: a forked child that did
// not exec (same name) has its parent's memory layout.
func (t *Tracer) symbolizeAsParent(parent int, comm string, ips []uint64, frames []symbolize.Frame) []symbolize.Frame {
	if parent <= 1 {
		return frames
	}
	// Its maps may be known still when it is gone too.
	if t.cfg.Symbolizer.Comm(parent) != comm {
		return frames
	}
	return t.cfg.Symbolizer.Symbolize(parent, ips)
}

// SymbolizeStacksOf symbolizes, now, every stack of pid's live fds that
// has not been yet: for a process about to exit.
func (t *Tracer) SymbolizeStacksOf(pid int) {
	if t.cfg.Symbolizer == nil {
		return
	}
	if t.unwind != nil {
		// Stacks the kernel could not unwind are in the ring buffer.
		t.waitCaughtUp(2 * time.Second)
	}
	// Its perf map is complete now: the JIT's buffer was flushed at exit.
	t.NameJITFrames(pid)
	t.EachFD(func(fd FD) {
		if fd.PID == pid && fd.StackID != 0 && t.Stack(fd.StackID) == nil {
			t.symbolizeStack(pid, 0, "", fd.StackID)
		}
	})
}

// NameJITFrames symbolizes again the stacks of pid (of every process if pid
// is 0) that have frames in JIT code the perf map did not name when they
// were first symbolized: V8 writes its perf map through a stdio buffer, so
// the names of code compiled last show up later, at the latest at exit.
func (t *Tracer) NameJITFrames(pid int) {
	if t.cfg.Symbolizer == nil {
		return
	}
	type redo struct {
		id  uint64
		pid int
	}
	var todo []redo
	t.mu.Lock()
	for id, m := range t.stackMeta {
		if (pid == 0 || m.pid == pid) && unnamedJIT(t.stacks[id]) {
			todo = append(todo, redo{id, m.pid})
		}
	}
	t.mu.Unlock()
	for _, r := range todo {
		var st bpfobj.FdtraceStack
		if t.objs.Stacks.Lookup(r.id, &st) != nil {
			continue
		}
		frames := t.cfg.Symbolizer.Symbolize(r.pid, st.Ips[:min(int(st.Nr), len(st.Ips))])
		if unmapped(frames) {
			continue // gone
		}
		t.mu.Lock()
		if _, ok := t.stacks[r.id]; ok {
			t.stacks[r.id] = frames
		}
		t.mu.Unlock()
	}
}

// unnamedJIT says whether frames has one that no mapped file holds and no
// perf map names: JIT code, most likely.
func unnamedJIT(frames []symbolize.Frame) bool {
	for _, f := range frames {
		if f.Func == "" && f.Module == "" && f.Addr >= 0x10000 {
			return true
		}
	}
	return false
}

// DropStacksExcept forgets, in the kernel and here, the stacks symbolized
// before `before` that are not in keep (the stacks of the live fds, read
// after `before`), so that a long run stays within the stack store. Stacks
// of exited processes' fds not yet taken are kept too.
func (t *Tracer) DropStacksExcept(keep map[uint64]bool, before time.Time) {
	t.mu.Lock()
	exited := map[uint64]bool{}
	for _, fds := range t.exitedFDs {
		for _, fd := range fds {
			exited[fd.StackID] = true
		}
	}
	var drop []uint64
	for alias, id := range t.aliases {
		if !keep[id] && !exited[id] {
			delete(t.aliases, alias)
		}
	}
	for id, m := range t.stackMeta {
		if !keep[id] && !exited[id] && m.at.Before(before) {
			drop = append(drop, id)
			delete(t.stacks, id)
			delete(t.stackMeta, id)
			if t.stackCount[m.pid]--; t.stackCount[m.pid] <= 0 {
				delete(t.stackCount, m.pid)
			}
		}
	}
	t.mu.Unlock()
	for _, id := range drop {
		t.objs.Stacks.Delete(id)
	}
}

// Stack is the symbolized stack of id, nil if unknown or id is 0.
func (t *Tracer) Stack(id uint64) []symbolize.Frame {
	if id == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if real, ok := t.aliases[id]; ok {
		id = real
	}
	return t.stacks[id]
}

// SymbolizerWarnings are notes on stacks for the user (JIT code
// without a perf map, a full unwind table store, ...).
func (t *Tracer) SymbolizerWarnings() []string {
	if t.cfg.Symbolizer == nil {
		return nil
	}
	w := t.cfg.Symbolizer.Warnings()
	if t.unwind != nil {
		w = append(w, t.unwind.warnings()...)
	}
	return w
}

// exited turns the final counters of a process into its last record.
func (t *Tracer) exited(e *bpfobj.FdtraceExitEvent) events.Process {
	var ports *byPort
	if e.Proc.Refused > 0 {
		ports = t.takePorts(e.Pid, e.Proc.StartNs)
	}
	p := t.process(int(e.Pid), &e.Proc, e.FdLimit, nil, ports)
	p.Time = events.Time(t.clock.wall(e.Ts))
	p.Exited = true
	if t.cfg.KeepRecordsAtExit {
		t.collectExited(int(e.Pid))
	}
	t.stacksOfExited(int(e.Pid))
	if t.unwind != nil {
		t.unwind.forget(int(e.Pid))
	}
	if e.Proc.Errors > 0 {
		if errs := t.takeErrors(e.Pid, e.Proc.StartNs); errs != nil {
			p.Errors = errs
		}
	}
	return p
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
