package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/stacks"
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
		t.stacks.AddCopy(stacks.Copy{PID: int(e.Pid), Parent: int(e.Ppid), Comm: c.intern(e.Comm),
			ID: e.StackID, IP: e.IP, SP: e.SP, BP: e.BP, Data: e.Data})
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
		t.stacks.Add(int(e.Pid), int(e.Ppid), c.intern(e.Comm), e.StackId)
		return nil
	case bpfobj.FdtraceEventKindEV_MAPS:
		t.stacks.LoadTables(int(e.Pid))
		return nil
	}
	return fmt.Errorf("unknown event kind %d", e.Kind)
}

func (t *Tracer) time(ktime uint64) events.Time {
	return events.Time(t.clock.wall(ktime))
}

// LoadUnwindTables loads the unwind tables of the files pid maps now,
// if stacks are unwound by DWARF: for a process that has not run yet.
func (t *Tracer) LoadUnwindTables(pid int) { t.stacks.LoadTables(pid) }

// SymbolizeStacksOf symbolizes, now, every stack of pid's live fds that
// has not been yet: for a process about to exit.
func (t *Tracer) SymbolizeStacksOf(pid int) {
	if t.stacks == nil {
		return
	}
	if t.stacks.UnwindsCopies() {
		// Stacks the kernel could not unwind are in the ring buffer.
		t.waitCaughtUp(2 * time.Second)
	}
	var keys []uint64
	t.EachFD(func(fd FD) {
		if fd.PID == pid {
			keys = append(keys, fd.StackID)
		}
	})
	t.stacks.SymbolizeMissing(pid, keys)
}

// NameJITFrames symbolizes again the stacks of pid (of every process if
// pid is 0) with JIT frames their perf map did not name yet.
func (t *Tracer) NameJITFrames(pid int) { t.stacks.NameJITFrames(pid) }

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
	if err := t.EachFD(func(fd FD) { live[fd.StackID] = true }); err == nil {
		t.DropStacksExcept(live, read)
	}
}

// Stack is the symbolized stack of id, nil if unknown or id is 0.
func (t *Tracer) Stack(id uint64) []symbolize.Frame { return t.stacks.Frames(id) }

// SymbolizerWarnings are notes on stacks for the user (JIT code
// without a perf map, a full unwind table store, ...).
func (t *Tracer) SymbolizerWarnings() []string { return t.stacks.Warnings() }

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
	if t.stacks.Exited(int(e.Pid)) {
		t.collectStacks()
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
