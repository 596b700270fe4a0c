// Package tracer is what fdtrace makes of the kernel's view: records of
// the fds that processes open and close and of the syscalls that fail,
// summaries of each process, the records of the fds that existed before
// fdtrace attached (seeded from /proc), and the symbolized stacks of their
// creation. The kernel side is internal/loader's; stacks are
// internal/stacks'.
package tracer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/stacks"
	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// Tracer is fdtrace's view of the traced processes.
type Tracer struct {
	k      *loader.Kernel
	cfg    loader.Config
	stacks *stacks.Store          // with CaptureStacks
	wall   func(uint64) time.Time // the kernel's clock to wall-clock time
	// prunedAt: when the counts of processes gone unseen were last
	// pruned; held: records waiting for their stacks (the reader's).
	prunedAt time.Time
	held     []held
	// late: records that went out before their stack was symbolized,
	// which they wait for at most stackWait.
	late      atomic.Uint64
	stackWait time.Duration

	// fds recorded from /proc: at start (seeded), and for children the
	// kernel could not copy the records of (reconciled).
	seeded, reconciled atomic.Uint64
	// left: records exits left, by pid, queued since leftSince (the
	// reader's; see leftover.go).
	left      map[int]loader.LeftRecords
	leftSince time.Time

	mu        sync.Mutex   // guards exitedFDs
	exitedFDs map[int][]FD // with KeepRecordsAtExit
}

// Start loads and attaches the programs and records the fds that already
// exist. Close releases everything.
func Start(cfg loader.Config) (_ *Tracer, err error) {
	k, err := loader.Load(cfg)
	if err != nil {
		return nil, err
	}
	t := &Tracer{k: k, cfg: k.Config(), wall: k.Wall, exitedFDs: map[int][]FD{}, prunedAt: time.Now(),
		left:      map[int]loader.LeftRecords{},
		stackWait: StackWait}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if cfg.CaptureStacks {
		t.stacks = stacks.New(k.StackMaps(), symbolize.New(symbolize.Options{}))
		// Their first stacks are unwound with their tables loaded.
		for _, pid := range cfg.PIDs {
			if err := t.stacks.LoadTables(pid); err != nil {
				return nil, err
			}
		}
	}
	if err := k.Attach(); err != nil {
		return nil, err
	}
	if err := t.seedAll(); err != nil {
		return nil, err
	}
	return t, nil
}

// Kernel is the kernel side: its counters, errors, ports and memory, read
// directly (top and serve read nothing else).
func (t *Tracer) Kernel() *loader.Kernel { return t.k }

// Stacks is the store of the captured stacks; nil without CaptureStacks
// (a nil Store knows no stacks).
func (t *Tracer) Stacks() *stacks.Store { return t.stacks }

// Close detaches and unloads everything. It is safe to call more than once.
func (t *Tracer) Close() error {
	err := t.k.Close()
	t.stacks.Close()
	return err
}
