// Package stacks owns the user stacks of fd creations: the kernel's stack
// store and unwind tables, the stacks unwound in user space from copies the
// kernel sent, their symbolization, and their garbage collection.
//
// The kernel keeps a stack in the stacks map under a hash of its process
// and frames (an odd number), and tells of a new one (Add) so that it is
// symbolized while its process lives. In DWARF mode a stack taken before
// its process's unwind tables were loaded comes as a copy of the stack's
// top (AddCopy) under a provisional id (an even number): it is unwound
// here, filed under the key the kernel would have given it, and the
// provisional id becomes an alias of that key (Resolve).
//
// What a stack needs parsed (the files its process maps, their unwind
// tables: all of it the traced process's to craft) is parsed by a worker
// of the store's, in the order the reader met the stacks, never on the
// reader's path: Add, AddCopy, LoadTablesLater and Exited queue their
// work, and Ready says when a stack is done.
package stacks

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// Maps are the kernel's maps the store works with.
type Maps struct {
	Stacks *ebpf.Map // stacks: key -> struct stack
	// With DWARF unwinding: exec_maps (tgid -> struct exec_mappings) and
	// unwind_tables (table id -> rows); nil without.
	ExecMaps, UnwindTables *ebpf.Map
}

// Store is the user-space side of the stacks. Its methods are safe for
// concurrent use; those of a nil Store know no stacks.
type Store struct {
	stacks *ebpf.Map
	sym    *symbolize.Symbolizer
	tables *tables // with DWARF unwinding

	mu      sync.Mutex // guards the fields below
	frames  map[uint64][]symbolize.Frame
	meta    map[uint64]meta
	aliases map[uint64]uint64 // provisional id -> key
	// perPID: symbolized stacks per process; orphans: stacks of processes
	// that exited since the last collection.
	perPID  map[int]int
	orphans int
	collect bool // a collection is due
	// waiting: the stacks (keys, provisional ids) with work queued;
	// queued: the work queued and not done; dropped: the stacks whose
	// work found the queue full.
	waiting map[uint64]int
	queued  int
	dropped uint64
	idle    chan struct{} // closed while queued is 0 (Settle waits on it)

	jobs   chan job
	closed atomic.Bool   // Close was called: the worker drains undone
	done   chan struct{} // closed when the worker has stopped
}

// job is a piece of the worker's work, for the stack id (0: none).
type job struct {
	id uint64
	fn func()
}

// queueLength bounds the work waiting for the worker: when it is full
// (the worker being far behind, on files a process crafted to be slow),
// stacks go unsymbolized and are counted (Stats), and the reader never
// waits.
const queueLength = 1 << 14

// meta is whose a symbolized stack is, and since when it is known. A
// stack's key hashes its process in: no two processes share one.
type meta struct {
	pid int
	at  time.Time
}

// New makes the store of the kernel's stacks; sym symbolizes them.
func New(m Maps, sym *symbolize.Symbolizer) *Store {
	s := &Store{stacks: m.Stacks, sym: sym, frames: map[uint64][]symbolize.Frame{},
		meta: map[uint64]meta{}, aliases: map[uint64]uint64{}, perPID: map[int]int{},
		waiting: map[uint64]int{}, idle: make(chan struct{}), jobs: make(chan job, queueLength),
		done: make(chan struct{})}
	close(s.idle)
	if m.ExecMaps != nil && m.UnwindTables != nil {
		s.tables = newTables(m.UnwindTables, m.ExecMaps, sym)
	}
	go s.work()
	return s
}

// closeWait bounds how long Close waits for the work under way.
const closeWait = 5 * time.Second

// Close stops the worker and releases the unwind tables kept for
// unwinding copies. Work still queued is not done.
func (s *Store) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.jobs == nil {
		s.mu.Unlock()
		return
	}
	close(s.jobs)
	s.jobs = nil
	s.closed.Store(true)
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-time.After(closeWait):
		return // still parsing: the tables stay with it
	}
	if s.tables != nil {
		s.tables.close()
	}
}

// work does the queued work in order until Close; after Close it drains
// the queue without doing it (Close does not wait for that).
func (s *Store) work() {
	defer close(s.done)
	s.mu.Lock()
	jobs := s.jobs
	s.mu.Unlock()
	for j := range jobs {
		if !s.closed.Load() {
			j.fn()
		}
		s.finish(j)
	}
}

func (s *Store) finish(j job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queued--; s.queued == 0 {
		close(s.idle)
	}
	if j.id != 0 {
		if s.waiting[j.id]--; s.waiting[j.id] <= 0 {
			delete(s.waiting, j.id)
		}
	}
}

// enqueue queues fn for the worker, for the stack id (0: none). It never
// waits: with the queue full, the work is not done and the stack counted.
func (s *Store) enqueue(id uint64, fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs == nil {
		return
	}
	select {
	case s.jobs <- job{id, fn}:
		if s.queued++; s.queued == 1 {
			s.idle = make(chan struct{})
		}
		if id != 0 {
			s.waiting[id]++
		}
	default:
		if id != 0 {
			s.dropped++
		}
	}
}

// Ready says whether the stack id (a key or a provisional id) has no work
// queued: its frames are known, or will never be.
func (s *Store) Ready(id uint64) bool {
	if s == nil || id == 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting[id] == 0
}

// Settle waits, at most timeout, until the queued work is done, and says
// whether it is.
func (s *Store) Settle(timeout time.Duration) bool {
	if s == nil {
		return true
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		idle := s.idle
		s.mu.Unlock()
		timedOut := false
		select {
		case <-idle:
		case <-timer.C:
			timedOut = true
		}
		// Work queued since has an idle of its own: look again.
		s.mu.Lock()
		done := s.queued == 0
		s.mu.Unlock()
		if done || timedOut {
			return done
		}
	}
}

// Pause holds the worker, until resume, as a file that takes long to
// parse does: for tests.
func (s *Store) Pause() (resume func()) {
	ch := make(chan struct{})
	s.enqueue(0, func() { <-ch })
	return sync.OnceFunc(func() { close(ch) })
}

// Dropped is how many stacks went unsymbolized for a full queue.
func (s *Store) Dropped() uint64 {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Add queues the symbolization of a new stack of the kernel's, to be done
// while its process lives. parent and comm are for a process gone
// already: a forked child that did not exec has its parent's memory
// layout.
func (s *Store) Add(pid, parent int, comm string, key uint64) {
	s.enqueue(key, func() { s.add(pid, parent, comm, key) })
}

// add symbolizes a stack of the kernel's now.
func (s *Store) add(pid, parent int, comm string, key uint64) {
	ips, ok := s.kernelStack(key)
	if !ok {
		return // collected already: records keep the key only
	}
	s.remember(pid, parent, comm, key, ips)
}

// kernelStack reads a stack from the kernel's store.
func (s *Store) kernelStack(key uint64) ([]uint64, bool) {
	var st bpfobj.FdtraceStack
	if err := s.stacks.Lookup(key, &st); err != nil {
		return nil, false
	}
	return st.Ips[:min(int(st.Nr), len(st.Ips))], true
}

func (s *Store) remember(pid, parent int, comm string, key uint64, ips []uint64) {
	frames := s.sym.Symbolize(pid, ips)
	if unmapped(frames) {
		frames = s.symbolizeAsParent(parent, comm, ips, frames)
	}
	s.mu.Lock()
	s.frames[key] = frames
	s.meta[key] = meta{pid: pid, at: time.Now()}
	s.perPID[pid]++
	s.mu.Unlock()
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
func (s *Store) symbolizeAsParent(parent int, comm string, ips []uint64, frames []symbolize.Frame) []symbolize.Frame {
	if parent <= 1 || s.sym.Comm(parent) != comm { // its maps may be known still when it is gone too
		return frames
	}
	return s.sym.Symbolize(parent, ips)
}

// Copy is a stack the kernel could not unwind (struct raw_stack): its
// registers and the top of its stack. Data may be reused after AddCopy.
type Copy struct {
	PID, Parent int
	Comm        string
	ID          uint64 // provisional
	IP, SP, BP  uint64
	Data        []byte // from SP up
}

// AddCopy queues the unwinding of a stack the kernel could not, its
// process's unwind tables not being loaded yet: the worker loads them,
// unwinds the copy, and files the result under the key the kernel would
// have given it, so that it is one stack with those the kernel walks later.
func (s *Store) AddCopy(c Copy) {
	if s.tables == nil {
		return
	}
	c.Data = bytes.Clone(c.Data)
	s.enqueue(c.ID, func() { s.addCopy(c) })
}

func (s *Store) addCopy(c Copy) {
	// A backlog of copies from one process needs its mappings read once:
	// again only when the copy runs into code they do not hold.
	ips, unknown := s.tables.unwindCopy(c)
	if unknown {
		if err := s.tables.refresh(c.PID); errors.Is(err, errGone) {
			// A forked child gone already: it ran its parent's code,
			// whose mappings its siblings will start with (see the
			// fork handler).
			s.tables.refresh(c.Parent)
		}
		ips, _ = s.tables.unwindCopy(c)
	}
	key := Key(uint32(c.PID), ips)
	var st bpfobj.FdtraceStack
	st.Nr = uint32(copy(st.Ips[:], ips))
	err := s.stacks.Update(key, &st, ebpf.UpdateNoExist)
	s.mu.Lock()
	s.aliases[c.ID] = key
	_, known := s.frames[key]
	s.mu.Unlock()
	if err == nil || !known {
		s.remember(c.PID, c.Parent, c.Comm, key, ips)
	}
}

// LoadTables loads, now, the unwind tables of the files pid maps, with
// DWARF unwinding: for a process that has not run yet.
func (s *Store) LoadTables(pid int) error {
	if s == nil || s.tables == nil {
		return nil
	}
	return s.tables.refresh(pid)
}

// LoadTablesLater queues the loading of pid's unwind tables: for a process
// that asked (its stack ran into code no mapping it has holds: after exec,
// dlopen, new JIT code).
func (s *Store) LoadTablesLater(pid int) {
	if s == nil || s.tables == nil {
		return
	}
	s.enqueue(0, func() { s.tables.refresh(pid) })
}

// UnwindsCopies says whether stacks may come as copies (DWARF unwinding):
// until they are read, the stacks of a process are not all known.
func (s *Store) UnwindsCopies() bool { return s != nil && s.tables != nil }

// Resolve is the key behind a provisional id, or id itself.
func (s *Store) Resolve(id uint64) uint64 {
	if s == nil || id == 0 || !provisional(id) {
		return id
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if key, ok := s.aliases[id]; ok {
		return key
	}
	return id
}

// provisional: the kernel's keys are odd (capture_stack), the ids of
// copies even (send_raw_stack).
func provisional(id uint64) bool { return id&1 == 0 }

// Frames is the symbolized stack of id (a key or a provisional id), nil
// if unknown or id is 0.
func (s *Store) Frames(id uint64) []symbolize.Frame {
	if s == nil || id == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if key, ok := s.aliases[id]; ok {
		id = key
	}
	return s.frames[id]
}

// SymbolizeMissing symbolizes, now, those of keys (pid's) not symbolized
// yet: for a process about to exit. Its perf map is complete now, too:
// the stacks with unnamed JIT frames are symbolized again.
func (s *Store) SymbolizeMissing(pid int, keys []uint64) {
	if s == nil {
		return
	}
	s.NameJITFrames(pid)
	for _, key := range keys {
		if key != 0 && s.Frames(key) == nil {
			s.add(pid, 0, "", key)
		}
	}
}

// NameJITFrames symbolizes again the stacks of pid (of every process if pid
// is 0) that have frames in JIT code the perf map did not name when they
// were first symbolized: V8 writes its perf map through a stdio buffer, so
// the names of code compiled last show up later, at the latest at exit.
func (s *Store) NameJITFrames(pid int) {
	if s == nil {
		return
	}
	type redo struct {
		key uint64
		pid int
	}
	var todo []redo
	s.mu.Lock()
	for key, m := range s.meta {
		if (pid == 0 || m.pid == pid) && unnamedJIT(s.frames[key]) {
			todo = append(todo, redo{key, m.pid})
		}
	}
	s.mu.Unlock()
	for _, r := range todo {
		ips, ok := s.kernelStack(r.key)
		if !ok {
			continue
		}
		frames := s.sym.Symbolize(r.pid, ips)
		if unmapped(frames) {
			continue // gone
		}
		s.mu.Lock()
		if _, ok := s.frames[r.key]; ok {
			s.frames[r.key] = frames
		}
		s.mu.Unlock()
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

// OrphansBeforeCollection is how many stacks of exited processes may pile
// up before the stacks no fd refers to are collected.
const OrphansBeforeCollection = 1024

// Exited notes that pid exited, once its stacks queued before are done:
// its stacks may be garbage now (children may still hold fds it created).
// When enough piled up, a collection (DropExcept) is due (CollectionDue),
// so that a long run without reports stays within the stack store.
func (s *Store) Exited(pid int) {
	if s == nil {
		return
	}
	s.enqueue(0, func() {
		// What was read of it would only grow (and name a reused
		// pid's addresses wrongly).
		if s.tables != nil {
			s.tables.forget(pid)
		}
		s.sym.Forget(pid)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.orphans += s.perPID[pid]
		delete(s.perPID, pid)
		if s.orphans >= OrphansBeforeCollection {
			s.orphans = 0
			s.collect = true
		}
	})
}

// CollectionDue says, once, that enough stacks of exited processes piled
// up for a collection (DropExcept) to be due.
func (s *Store) CollectionDue() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	due := s.collect
	s.collect = false
	return due
}

// DropExcept forgets, in the kernel and here, the stacks symbolized before
// `before` that are not in keep (the keys records still hold, read after
// `before`).
func (s *Store) DropExcept(keep map[uint64]bool, before time.Time) {
	if s == nil {
		return
	}
	var drop []uint64
	s.mu.Lock()
	for alias, key := range s.aliases {
		if !keep[key] {
			delete(s.aliases, alias)
		}
	}
	for key, m := range s.meta {
		if !keep[key] && m.at.Before(before) {
			drop = append(drop, key)
			delete(s.frames, key)
			delete(s.meta, key)
			if s.perPID[m.pid]--; s.perPID[m.pid] <= 0 {
				delete(s.perPID, m.pid)
			}
		}
	}
	s.mu.Unlock()
	for _, key := range drop {
		s.stacks.Delete(key)
	}
}

// TableUse is what the unwind tables hold, in bytes, and how many files
// got none for the tables' budget.
func (s *Store) TableUse() (bytes, refused uint64) {
	if s == nil || s.tables == nil {
		return 0, 0
	}
	s.tables.mu.Lock()
	defer s.tables.mu.Unlock()
	return uint64(s.tables.bytes), uint64(s.tables.overBudget)
}

// SymbolUse is what the symbolizer's parsed files take, in bytes
// (estimated), and how many files were too large for its budget.
func (s *Store) SymbolUse() (bytes, refused uint64) {
	if s == nil {
		return 0, 0
	}
	b, r := s.sym.Usage()
	return uint64(b), r
}

// Len is how many stacks are symbolized.
func (s *Store) Len() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.frames)
}

// Warnings are notes on stacks for the user (JIT code without a perf map,
// a full unwind table store, ...).
func (s *Store) Warnings() []string {
	if s == nil {
		return nil
	}
	w := s.sym.Warnings()
	if s.tables != nil {
		w = append(w, s.tables.warnings()...)
	}
	return w
}

// Key is the key the kernel gives a stack in the stacks map: capture_stack's
// FNV-1a over the frames, seeded with the process, odd.
func Key(tgid uint32, ips []uint64) uint64 {
	const offset, prime = 0xcbf29ce484222325, 0x100000001b3
	h := uint64(offset) ^ uint64(tgid)
	for _, ip := range ips {
		h = (h ^ ip) * prime
	}
	return h | 1
}
