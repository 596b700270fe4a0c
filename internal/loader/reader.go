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
)

// EventKind is what a ring buffer record says (enum event_kind).
type EventKind uint8

const (
	EventOpen  = EventKind(bpfobj.FdtraceEventKindEV_OPEN)
	EventClose = EventKind(bpfobj.FdtraceEventKindEV_CLOSE)
	EventError = EventKind(bpfobj.FdtraceEventKindEV_ERROR)
	// EventSeed: a process has fds without a record (Parent: whose
	// records to copy, or 0); read them from /proc.
	EventSeed = EventKind(bpfobj.FdtraceEventKindEV_SEED)
	// EventExit: a traced process exited (Counters, FDLimit).
	EventExit = EventKind(bpfobj.FdtraceEventKindEV_EXIT)
	// EventStack: a new stack in the stacks map (StackID; Parent).
	EventStack = EventKind(bpfobj.FdtraceEventKindEV_STACK)
	// EventMaps: a stack ran into code no known unwind table holds.
	EventMaps = EventKind(bpfobj.FdtraceEventKindEV_MAPS)
	// EventRawStack: a stack to unwind in user space (Raw).
	EventRawStack = EventKind(bpfobj.FdtraceEventKindEV_RAW_STACK)
	// eventHook: the read hook is wanted now (AttachWanted); not handed
	// out.
	eventHook = EventKind(bpfobj.FdtraceEventKindEV_HOOK)
)

// Event is one ring buffer record, decoded. Its slices (Comm, Path, Raw)
// point into the batch that holds it: valid until the batch's handler
// returns.
type Event struct {
	Kind     EventKind
	Time     uint64 // bpf_ktime_get_ns(): Kernel.Wall makes it a time
	PID, TID int
	Comm     []byte
	Syscall  events.Syscall
	FD       int
	FDType   events.FDType
	Cloexec  bool
	Family   uint16
	SockType uint16
	Errno    int    // EventError: the positive errno
	Port     uint16 // EventError of an accept: the listener's local port
	Parent   int    // EventSeed, EventStack, EventRawStack
	StackID  uint64
	OpenFDs  int64
	FDLimit  uint64
	UserData uint64 // EventOpen by io_uring: the request's user_data
	Path     []byte
	Counters *Counters // EventExit: the process's final counters
	// EventExit: the error counts the exit took out of the errors map;
	// with ErrorsLeft, TakeErrors has the rest.
	ExitErrors []ErrorCount
	ErrorsLeft bool
	// EventExit: the first fd its sweep did not reach, or 0; records of
	// fds from there on are left (Kernel.DeleteLeftRecords).
	UnsweptFrom int
	Raw         *RawStack // EventRawStack
}

// RawStack is a stack the kernel could not unwind (struct raw_stack).
type RawStack struct {
	IP, SP, BP uint64
	Data       []byte // the top of the stack, from SP up
}

// batchSize is how many records a batch holds at most.
const batchSize = 1024

// batch is room for the records handed out at once, reused from batch to
// batch: reading allocates only while its arena grows.
type batch struct {
	events   []Event
	arena    []byte // Comm, Path and Raw.Data of the events
	counters [batchSize]Counters
	raws     [batchSize]RawStack
	rec      ringbuf.Record
	seq      uint64 // readSeq once it was read
}

func (b *batch) reset() {
	b.events, b.arena = b.events[:0], b.arena[:0]
}

// keep copies p into the arena. When the arena grows, the slices kept
// before hold on to its old array, where their bytes still are.
func (b *batch) keep(p []byte) []byte {
	start := len(b.arena)
	b.arena = append(b.arena, p...)
	return b.arena[start:len(b.arena):len(b.arena)]
}

// Read hands the ring buffer's records to fn in batches, in kernel order,
// until ctx is done, then what is left. A poll that finds none hands fn an
// empty batch, for work of its own that waits (at most PollInterval). An
// error from fn stops it.
//
// The ring buffer is read on its own goroutine while fn works on the batch
// before: a core reads, another handles. A batch goes to fn as soon as fn
// waits for one; while fn is busy, the reader fills it on, and once it is
// full waits: then the ring buffer, not a queue here, takes the excess,
// and counts what it loses. So the busier the reader, the larger its
// batches, and the fewer its hand-overs.
func (k *Kernel) Read(ctx context.Context, fn func([]Event) error) error {
	free := make(chan *batch, 3) // one handled, one filled, one handed over
	for range cap(free) {
		free <- newBatch()
	}
	full := make(chan *batch) // unbuffered: a send succeeds when fn waits
	stop := make(chan struct{})
	var readErr error
	go func() {
		defer close(full)
		readErr = k.readBatches(ctx, free, full, stop)
	}()
	var err error
	for b := range full {
		if err == nil {
			if err = k.hand(b, fn); err != nil {
				close(stop)
			}
		}
		free <- b
	}
	if err != nil {
		return err
	}
	return readErr
}

// Within busyFor of its last record, the reader sleeps between reads (and
// offers of the batch it holds) rather than wait in epoll: a goroutine
// blocked in epoll_wait holds its thread in a syscall, which the Go runtime
// then checks on every 20 µs. It sleeps as long as about napRecords take
// to queue at the rate it read last, between minNap and maxNap: a wakeup
// wakes threads of the runtime too, and costs as much as hundreds of
// records, so at tens of thousands of records a second the fewer wakeups
// the less CPU per record.
const (
	busyFor    = 100 * time.Millisecond
	minNap     = time.Millisecond
	maxNap     = 20 * time.Millisecond
	napRecords = 4 * batchSize
	// fastestRate is more bytes a second than the kernel queues when
	// every CPU makes and closes fds as fast as it can: a nap must not
	// last long enough for that to fill half the ring.
	fastestRate = 512 << 20
)

// nap is how long the busy reader sleeps after reading n records in the
// time since its read before.
func (k *Kernel) nap(n int, since time.Duration) time.Duration {
	longest := min(maxNap, time.Duration(k.cfg.RingBufferBytes/2)*time.Second/fastestRate)
	d := longest
	if n > 0 {
		d = since * napRecords / time.Duration(n)
	}
	return max(minNap, min(d, longest))
}

// A batch that is not full goes to fn once it holds handAt records or its
// first has waited holdFor (and fn waits for it): at tens of thousands of
// records a second, a hand-over every few milliseconds, not each one.
// Without records, an empty batch goes after a poll that waited, or busy,
// every PollInterval.
const (
	handAt  = batchSize / 4
	holdFor = 10 * time.Millisecond
)

// readBatches fills batches from free and sends them to full (an empty one
// when a poll found nothing) until ctx is done, then what is left, or
// until stop.
func (k *Kernel) readBatches(ctx context.Context, free <-chan *batch, full chan<- *batch, stop <-chan struct{}) error {
	checked, lastRecord, handedAt := time.Now(), time.Time{}, time.Now()
	readAt, nap := time.Now(), minNap
	for done := false; ; {
		var b *batch
		select {
		case b = <-free:
		case <-stop:
			return nil
		}
		b.reset()
		var firstAt time.Time // of the batch's first record
		for handed := false; !handed; {
			done = done || ctx.Err() != nil
			now := time.Now()
			wait := k.cfg.PollInterval
			switch {
			case done:
				wait = 0 // only what is there
			case now.Sub(lastRecord) < busyFor:
				// Busy: sleep, then read what is there.
				if k.ring.available() == 0 {
					time.Sleep(nap)
					now = time.Now()
				}
				wait = 0
			case now.Sub(checked) >= k.cfg.PollInterval:
				k.AttachWanted()
				checked = now
			}
			had := len(b.events)
			if err := k.fill(b, wait); err != nil {
				return err
			}
			if len(b.events) > had {
				lastRecord = now
				if had == 0 {
					firstAt = now
				}
			}
			nap, readAt = k.nap(len(b.events)-had, now.Sub(readAt)), now
			switch n := len(b.events); {
			case done && n == 0:
				return nil
			case n >= batchSize || done || (n == 0 && (wait > 0 || now.Sub(handedAt) >= k.cfg.PollInterval)):
				select {
				case full <- b:
					handed = true
				case <-stop:
					return nil
				}
			case n > 0 && (n >= handAt || now.Sub(firstAt) >= holdFor):
				select {
				case full <- b:
					handed = true
				default: // fn is busy: read on into this batch
				}
			}
		}
		handedAt = time.Now()
	}
}

// Drain hands fn the records already in the ring buffer and returns. After
// a traced process has done something, a Drain makes the view of it
// complete: the kernel wrote its records before the syscalls returned.
func (k *Kernel) Drain(fn func([]Event) error) error {
	k.AttachWanted()
	return k.drain(newBatch(), fn)
}

func newBatch() *batch {
	return &batch{events: make([]Event, 0, batchSize),
		arena: make([]byte, 0, batchSize*(len(bpfobj.FdtraceFdEvent{}.Comm)+fdPathLen))}
}

func (k *Kernel) drain(b *batch, fn func([]Event) error) error {
	for {
		b.reset()
		if err := k.fill(b, 0); err != nil {
			return err
		}
		if len(b.events) == 0 {
			return nil
		}
		if err := k.hand(b, fn); err != nil {
			return err
		}
	}
}

// fill reads records into b until it is full or none wait, from the
// ring's memory (see ringMemory); when none wait, ringbuf.Reader waits
// for the first, at most wait.
func (k *Kernel) fill(b *batch, wait time.Duration) error {
	defer func() { b.seq = k.readSeq.Load() }()
	if k.ring.available() == 0 {
		if wait <= 0 {
			return nil
		}
		k.reader.SetDeadline(time.Now().Add(wait))
		err := k.reader.ReadInto(&b.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading ring buffer: %w", err)
		}
		k.readSeq.Add(1)
		if len(b.rec.RawSample) > 0 {
			if err := k.decode(b, b.rec.RawSample); err != nil {
				return err
			}
		}
	}
	var decodeErr error
	n, err := k.ring.read(func(raw []byte) bool {
		if len(b.events) == batchSize || decodeErr != nil {
			return false
		}
		decodeErr = k.decode(b, raw)
		return true
	})
	k.readSeq.Add(uint64(n))
	if err != nil {
		return fmt.Errorf("reading ring buffer: %w", err)
	}
	return decodeErr
}

// hand hands fn a batch; an empty one as nil.
func (k *Kernel) hand(b *batch, fn func([]Event) error) error {
	k.handedSeq.Store(b.seq)
	events := b.events
	if len(events) == 0 {
		events = nil
	}
	k.delivered.Add(uint64(len(events)))
	err := fn(events)
	k.handledSeq.Store(b.seq)
	return err
}

// decode appends the record raw to the batch.
func (k *Kernel) decode(b *batch, raw []byte) error {
	i := len(b.events)
	switch EventKind(raw[0]) {
	case EventExit:
		var e bpfobj.FdtraceExitEvent
		if err := decodeExitEvent(raw, &e); err != nil {
			return fmt.Errorf("decoding exit event: %w", err)
		}
		b.counters[i] = countersOf(int(e.Pid), &e.Proc)
		errs, more := exitErrors(&e)
		b.events = append(b.events, Event{Kind: EventExit, Time: e.Ts, PID: int(e.Pid),
			FDLimit: e.FdLimit, Counters: &b.counters[i], ExitErrors: errs, ErrorsLeft: more,
			UnsweptFrom: int(e.UnsweptFrom)})
	case EventRawStack:
		var e rawStackEvent
		if err := decodeRawStack(raw, &e); err != nil {
			return err
		}
		b.raws[i] = RawStack{IP: e.IP, SP: e.SP, BP: e.BP, Data: b.keep(e.Data)}
		b.events = append(b.events, Event{Kind: EventRawStack, PID: int(e.Pid), Parent: int(e.Ppid),
			Comm: b.keep(e.Comm), StackID: e.StackID, Raw: &b.raws[i]})
	default:
		var e rawFdEvent
		if err := decodeFdEvent(raw, &e); err != nil {
			return fmt.Errorf("decoding event: %w", err)
		}
		b.events = append(b.events, Event{Kind: EventKind(e.Kind), Time: e.Ts, PID: int(e.Pid), TID: int(e.Tid),
			Comm: b.keep(e.Comm), Syscall: events.Syscall(e.Syscall), FD: int(e.Fd),
			FDType: events.FDType(e.FdType), Cloexec: e.Flags&uint16(bpfobj.FdtraceFdFlagsFDF_CLOEXEC) != 0,
			Family: e.Family, SockType: e.SockType, Errno: int(e.Err), Port: e.Port, Parent: int(e.Ppid),
			StackID: e.StackId, OpenFDs: e.OpenFds, FDLimit: e.FdLimit, UserData: e.UserData, Path: b.keep(e.Path)})
		if kind := EventKind(e.Kind); kind < EventOpen || kind > eventHook {
			return fmt.Errorf("unknown event kind %d", e.Kind)
		}
		if EventKind(e.Kind) == eventHook {
			b.events = b.events[:i] // the loader's own
			k.AttachWanted()
		}
	}
	return nil
}

// WaitCaughtUp waits, at most timeout, until every record the kernel had
// written when it was called has been handed out and handled.
func (k *Kernel) WaitCaughtUp(timeout time.Duration) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if k.ring.available() == 0 && k.readSeq.Load() == k.handledSeq.Load() {
			return
		}
	}
}

// Delivered is how many records the reader has handed out.
func (k *Kernel) Delivered() uint64 { return k.delivered.Load() }

// Wall turns a bpf_ktime_get_ns() time into wall-clock time.
func (k *Kernel) Wall(ktime uint64) time.Time { return k.clock.wall(ktime) }
