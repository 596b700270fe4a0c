// Package loader is fdtrace's kernel interface: it loads the BPF programs
// (picking the object and fallbacks the kernel's features allow), attaches
// them to the syscall and scheduler tracepoints, hands out the ring
// buffer's records as typed events in batches, and reads and writes the
// kernel's state in typed snapshots. What fdtrace makes of them is
// internal/tracer's.
package loader

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/stacks"
)

// Config says what to trace. The zero value traces every process.
type Config struct {
	// PIDs limits tracing to these processes (thread group ids).
	PIDs []int
	// Comm limits tracing to processes with this name (at most 15 bytes).
	Comm string
	// FollowChildrenOf traces the children of this process, and their
	// descendants, from the moment they are forked; the process itself is
	// not traced. Used to trace a command fdtrace starts.
	FollowChildrenOf int
	// ErrorsOnly keeps open/close events in the kernel: only failed
	// syscalls and exits reach user space.
	ErrorsOnly bool
	// CountOnly keeps no record per live fd, only the per-process
	// counters: the cheapest mode, for ErrorsOnly tracing. A close then
	// reads the fd's type from its file, and open_fds drifts up when fds
	// are created where fdtrace does not look (io_uring), until the next
	// failure recounts it, or a close that would take it to zero does.
	CountOnly bool
	// AllErrors sends an error event for every errno; by default only
	// EMFILE, ENFILE, ENOMEM and ENOBUFS give one (all are counted).
	AllErrors bool
	// BTFPath is a BTF file for kernels without /sys/kernel/btf/vmlinux.
	BTFPath string
	// RingBufferBytes is the size of the event ring buffer (power of two).
	RingBufferBytes int
	// WakeupBytes wakes the reader once this much is queued; below it the
	// reader polls every PollInterval. 0 means DefaultWakeupBytes; a
	// negative value wakes the reader for every event.
	WakeupBytes int
	// PollInterval bounds how long a queued event waits to be read.
	PollInterval time.Duration
	// CaptureStacks records the user stack of every fd creation (and
	// failure), in the stacks map (StackMaps).
	CaptureStacks bool
	// StackMode is how those stacks are walked; "" means StackDWARF.
	StackMode StackMode
	// KeepRecordsAtExit leaves the records of an exiting process in the
	// fds map for user space to collect, instead of dropping them.
	KeepRecordsAtExit bool
	// VerifierLog makes load errors carry the whole verifier log.
	VerifierLog bool
}

// StackMode is how the kernel walks user stacks.
type StackMode string

const (
	// StackDWARF unwinds by the DWARF call frame information of the
	// mapped files (.eh_frame, .debug_frame), and by frame pointers in
	// code without it (JIT code): right for code built without frame
	// pointers too.
	StackDWARF StackMode = "dwarf"
	// StackFP follows frame pointers, recovering the frames of libc's
	// wrappers from the top of the stack: cheaper, and enough for code
	// built with frame pointers (Go, -fno-omit-frame-pointer).
	StackFP StackMode = "fp"
)

// ParseStackMode checks a --stack-mode value.
func ParseStackMode(s string) (StackMode, error) {
	switch m := StackMode(s); m {
	case StackDWARF, StackFP:
		return m, nil
	}
	return "", fmt.Errorf("stack mode %q: want dwarf or fp", s)
}

const (
	// DefaultRingBufferBytes is 16 MiB: 175k closes, 48k opens with a
	// path.
	DefaultRingBufferBytes = 16 << 20
	// DefaultWakeupBytes batches a few thousand events per reader wakeup
	// (at most an eighth of the ring buffer: then less).
	DefaultWakeupBytes = 512 << 10
)

const (
	traceSelf   = 1 << 0
	traceFollow = 1 << 1
)

// Kernel is fdtrace's programs and maps, loaded.
type Kernel struct {
	cfg      Config
	feat     Features
	objs     bpfobj.FdtraceObjects
	linksMu  sync.Mutex // guards links, detached
	links    []link.Link
	detached bool
	// readHooked: the read hook is attached (AttachWanted).
	readHooked atomic.Bool
	// uringHooked: io_uring's completions are hooked.
	uringHooked bool
	reader      *ringbuf.Reader
	ring        *ringMemory // the same ring buffer's memory, read directly
	notes       []string
	skipped     int
	clock       clock
	closeErr    error
	once        sync.Once
	spec        *ebpf.CollectionSpec // what Attach attaches
	// limitBefore: RLIMIT_NOFILE before Load raised it, or nil.
	limitBefore *unix.Rlimit

	// Ring buffer records read, handed to the reader's handler (in
	// batches), and handled by it; events delivered (handed, without
	// the loader's own).
	readSeq, handedSeq, handledSeq, delivered atomic.Uint64

	detachErr  error
	detachOnce sync.Once
}

// Load checks the kernel and loads the programs and maps; Attach starts
// them. Close releases everything.
func Load(cfg Config) (_ *Kernel, err error) {
	if cfg.RingBufferBytes == 0 {
		cfg.RingBufferBytes = DefaultRingBufferBytes
	}
	switch {
	case cfg.WakeupBytes == 0:
		cfg.WakeupBytes = min(DefaultWakeupBytes, cfg.RingBufferBytes/8)
	case cfg.WakeupBytes < 0:
		cfg.WakeupBytes = 0
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.RingBufferBytes < os.Getpagesize() || cfg.RingBufferBytes&(cfg.RingBufferBytes-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d: must be a power of two of at least %d bytes", cfg.RingBufferBytes, os.Getpagesize())
	}
	if len(cfg.Comm) >= 16 {
		return nil, fmt.Errorf("comm %q: the kernel keeps at most 15 bytes of a process name", cfg.Comm)
	}
	for _, pid := range cfg.PIDs {
		if pid <= 0 || !procfs.Exists(pid) {
			return nil, fmt.Errorf("pid %d: no such process", pid)
		}
	}
	if err := checkPrivileges(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, refused("raising RLIMIT_MEMLOCK", err, procfs.SelfSeccomp())
	}
	limitBefore, err := raiseFDLimit()
	if err != nil {
		return nil, err
	}

	feat := ProbeFeatures()
	if cfg.CaptureStacks {
		if err := feat.StacksError(); err != nil {
			return nil, err
		}
	}
	k := &Kernel{cfg: cfg, feat: feat, clock: newClock(), limitBefore: limitBefore}
	defer func() {
		if err != nil {
			k.Close()
		}
	}()
	note, err := EnsureTracefs()
	if err != nil {
		return nil, err
	}
	if note != "" {
		k.notes = append(k.notes, note)
	}
	spec, err := k.feat.programSpec()
	if err != nil {
		return nil, fmt.Errorf("reading BPF object: %w", err)
	}
	if err := configure(spec, cfg, k.feat); err != nil {
		return nil, err
	}
	opts, err := collectionOptions(cfg.BTFPath)
	if err != nil {
		return nil, err
	}
	if err := spec.LoadAndAssign(&k.objs, opts); err != nil {
		return nil, loadError(err, cfg.VerifierLog)
	}
	if err := k.fillTraced(); err != nil {
		return nil, err
	}
	if k.reader, err = ringbuf.NewReader(k.objs.Events); err != nil {
		return nil, fmt.Errorf("opening ring buffer: %w", err)
	}
	if k.ring, err = newRingMemory(k.objs.Events); err != nil {
		k.reader.Close()
		return nil, err
	}
	k.spec = spec
	return k, nil
}

// Attach links every program to its tracepoint and arms them: the kernel
// counts from now on. A tracepoint the kernel lacks is skipped with a note.
func (k *Kernel) Attach() error {
	if err := k.attach(k.spec); err != nil {
		return err
	}
	// Count from now on: every hook is live.
	if err := k.objs.Armed.Set(uint32(1)); err != nil {
		return fmt.Errorf("arming the programs: %w", err)
	}
	return nil
}

// StackMaps are the maps of the kernel's stacks, for internal/stacks: the
// unwind tables only when stacks are unwound by DWARF.
func (k *Kernel) StackMaps() stacks.Maps {
	m := stacks.Maps{Stacks: k.objs.Stacks}
	if k.cfg.CaptureStacks && k.cfg.StackMode != StackFP {
		m.ExecMaps, m.UnwindTables = k.objs.ExecMaps, k.objs.UnwindTables
	}
	return m
}

// Config is what the kernel was loaded with, defaults filled in.
func (k *Kernel) Config() Config { return k.cfg }

// Features are what the kernel offers, as the programs were loaded for it.
func (k *Kernel) Features() Features { return k.feat }

func configure(spec *ebpf.CollectionSpec, cfg Config, feat Features) error {
	kc := bpfobj.FdtraceConfig{
		WakeupBytes:      uint64(cfg.WakeupBytes),
		SelfTgid:         uint32(os.Getpid()),
		FilterPids:       len(cfg.PIDs) > 0 || cfg.FollowChildrenOf != 0,
		FilterComm:       cfg.Comm != "",
		ErrorsOnly:       cfg.ErrorsOnly,
		FdRecords:        !cfg.CountOnly,
		CaptureStacks:    cfg.CaptureStacks,
		DwarfStacks:      cfg.CaptureStacks && cfg.StackMode != StackFP,
		ExitKeepsRecords: cfg.KeepRecordsAtExit,
		AllErrors:        cfg.AllErrors,
		HaveRdonlyCast:   feat.RdonlyCast && !feat.Compat(),
		UringCqeArg:      feat.UringCQE,
		PtRegsOffset:     feat.PtRegsOffset,
	}
	// The name and its NUL are what must match (comm_matches compares
	// little-endian words under the mask).
	for i := 0; i <= len(cfg.Comm) && i < len(kc.TargComm); i++ {
		if i < len(cfg.Comm) {
			kc.TargComm[i] = int8(cfg.Comm[i])
		}
		kc.TargCommMask[i/8] |= 0xff << (8 * (i % 8))
	}
	v, ok := spec.Variables["cfg"]
	if !ok {
		return errors.New("BPF object has no variable cfg")
	}
	if err := v.Set(kc); err != nil {
		return fmt.Errorf("setting the programs' configuration: %w", err)
	}
	spec.Maps["events"].MaxEntries = uint32(cfg.RingBufferBytes)
	if !feat.MemAlloc {
		preallocate(spec, feat.Compat())
	}
	return nil
}

// Sizes of the maps when they are preallocated, which costs their whole
// size up front: kernels before 6.1 WARN (tainting themselves) when a
// tracing program uses a hash map that allocates at run time. The compat
// programs take no stacks and keep every process's counters in procs, none
// in proc_slots.
var (
	preallocEntries = map[string]uint32{
		"fds": 1 << 18, "procs": 1 << 14, "exec_maps": 1 << 10,
	}
	compatPreallocEntries = map[string]uint32{
		"fds": 1 << 18, "procs": 1 << 14, "stacks": 1, "exec_maps": 1, "proc_slots": 1,
	}
)

func preallocate(spec *ebpf.CollectionSpec, compat bool) {
	entries := preallocEntries
	if compat {
		entries = compatPreallocEntries
	}
	for name, m := range spec.Maps {
		m.Flags &^= unix.BPF_F_NO_PREALLOC
		if n, ok := entries[name]; ok {
			m.MaxEntries = n
		}
	}
}

func collectionOptions(btfPath string) (*ebpf.CollectionOptions, error) {
	opts := &ebpf.CollectionOptions{}
	if btfPath != "" {
		kernel, err := btf.LoadSpec(btfPath)
		if err != nil {
			return nil, fmt.Errorf("reading BTF from %s: %w", btfPath, err)
		}
		opts.Programs.KernelTypes = kernel
		return opts, nil
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, errors.New("kernel has no BTF (/sys/kernel/btf/vmlinux is missing): pass --btf FILE with the kernel's BTF")
	}
	return opts, nil
}

func loadError(err error, verifierLog bool) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		if verifierLog {
			return fmt.Errorf("loading BPF programs: %+v", ve)
		}
		return fmt.Errorf("loading BPF programs: %v (run with --debug for the verifier log)", ve)
	}
	if errors.Is(err, unix.EPERM) {
		return refused("loading BPF programs", err, procfs.SelfSeccomp())
	}
	return fmt.Errorf("loading BPF programs: %w", err)
}

// refused explains an EPERM from bpf(): with fdtrace's capabilities, it is
// a seccomp filter that says no (container runtimes' default profiles
// refuse bpf() and perf_event_open()), not the memlock limit.
func refused(what string, err error, seccomp int) error {
	if errors.Is(err, unix.EPERM) && seccomp == 2 {
		// Seccomp first: the failed step (a memlock probe) misleads.
		return fmt.Errorf("a seccomp filter refuses bpf() (Seccomp: 2 in /proc/self/status), "+
			"as container runtimes' default profiles do: run fdtrace with deploy/seccomp/fdtrace.json "+
			"or unconfined (docs/deployment.md) (%s: %w)", what, err)
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%s: %w: fdtrace needs CAP_BPF and CAP_PERFMON (run as root)", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (k *Kernel) fillTraced() error {
	put := func(pid int, flags uint8) error {
		if err := k.objs.Traced.Put(uint32(pid), flags); err != nil {
			return fmt.Errorf("adding pid %d to the traced set: %w", pid, err)
		}
		return nil
	}
	for _, pid := range k.cfg.PIDs {
		if err := put(pid, traceSelf); err != nil {
			return err
		}
	}
	if k.cfg.FollowChildrenOf != 0 {
		return put(k.cfg.FollowChildrenOf, traceFollow)
	}
	return nil
}

// attach links every program to the tracepoint its section names. A
// tracepoint the kernel lacks is skipped with a note.
func (k *Kernel) attach(spec *ebpf.CollectionSpec) error {
	progs := programsByName(&k.objs.FdtracePrograms)
	for name, ps := range spec.Programs {
		if name == readHook {
			continue // attached when wanted: AttachWanted
		}
		h, listed := hooks[name]
		if listed && !h.wanted(k.cfg, k.feat) {
			continue
		}
		attached, err := k.attachOne(progs[name], ps.SectionName, h.quiet)
		if err != nil {
			return err
		}
		if name == "raw_tracepoint__io_uring_complete" {
			k.uringHooked = attached
		}
	}
	return nil
}

// hooks are the programs attached only in some runs or on some kernels;
// the others always are.
var hooks = map[string]struct {
	wanted func(Config, Features) bool
	quiet  bool // a missing tracepoint is no news: io_uring may be built out
}{
	// Each io_uring program where the kernel's tracepoint gives the
	// request where the program reads it.
	"raw_tracepoint__io_uring_complete":   {func(_ Config, f Features) bool { return f.UringComplete }, true},
	"raw_tracepoint__io_uring_submit_sqe": {func(_ Config, f Features) bool { return f.UringSubmitSqe }, true},
	"raw_tracepoint__io_uring_submit_req": {func(_ Config, f Features) bool { return f.UringComplete }, true},
	// Closes are accounted at their exit with records only.
	"tracepoint__syscalls__sys_exit_close":       {func(c Config, _ Features) bool { return !c.CountOnly }, false},
	"tracepoint__syscalls__sys_exit_close_range": {func(c Config, _ Features) bool { return !c.CountOnly }, false},
}

// UringHooked says whether the fds io_uring makes and closes are seen.
func (k *Kernel) UringHooked() bool { return k.uringHooked }

// readHook is the program on read's exit: every read of the host would
// run it, so it is attached only once a traced process made a fanotify
// group or a userfaultfd, whose reads install fds.
const readHook = "tracepoint__syscalls__sys_exit_read"

// attachOne attaches prog where its section says. A tracepoint this kernel
// lacks is skipped (false), with a note unless quiet.
func (k *Kernel) attachOne(prog *ebpf.Program, section string, quiet bool) (bool, error) {
	var l link.Link
	var err error
	switch {
	case strings.HasPrefix(section, "tracepoint/"):
		group, tp, _ := strings.Cut(strings.TrimPrefix(section, "tracepoint/"), "/")
		l, err = link.Tracepoint(group, tp, prog, nil)
	case strings.HasPrefix(section, "raw_tracepoint/"):
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{
			Name: strings.TrimPrefix(section, "raw_tracepoint/"), Program: prog})
	default:
		return false, fmt.Errorf("unknown section %s", section)
	}
	if errors.Is(err, os.ErrNotExist) || (quiet && err != nil) {
		if !quiet {
			k.skipped++
			k.notes = append(k.notes, fmt.Sprintf("tracepoint %s missing in this kernel: skipped", strings.SplitN(section, "/", 2)[1]))
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("attaching %s: %w", section, err)
	}
	k.linksMu.Lock()
	defer k.linksMu.Unlock()
	if k.detached {
		return false, l.Close()
	}
	k.links = append(k.links, l)
	return true, nil
}

// AttachWanted attaches the read hook once the programs want it (see
// readHook); until then, and where it fails, the fds reads install are
// counted by the recount at their close. The reader calls it as soon as
// it reads that the programs want it (EV_HOOK), and every poll interval.
// Only the reader's goroutine may call it.
func (k *Kernel) AttachWanted() {
	if k.readHooked.Load() || k.spec.Programs[readHook] == nil {
		return
	}
	var wanted uint32
	if k.objs.ReadHookWanted.Get(&wanted) != nil || wanted == 0 {
		return
	}
	k.readHooked.Store(true)
	prog := programsByName(&k.objs.FdtracePrograms)[readHook]
	if _, err := k.attachOne(prog, k.spec.Programs[readHook].SectionName, false); err != nil {
		k.notes = append(k.notes, fmt.Sprintf("reads of fanotify groups and userfaultfds are not hooked: %v", err))
	}
}

// ReadHooked says whether the read hook is attached (AttachWanted).
func (k *Kernel) ReadHooked() bool { return k.readHooked.Load() }

// Notes are things the user should know: a mounted tracefs, skipped hooks.
func (k *Kernel) Notes() []string { return k.notes }

// Detach stops the programs; the maps and the ring buffer stay readable,
// so that a last Drain sees everything that happened. It is safe to call
// more than once.
func (k *Kernel) Detach() error {
	k.detachOnce.Do(func() {
		k.linksMu.Lock()
		links := k.links
		k.detached = true
		k.linksMu.Unlock()
		// Each detach waits out an RCU grace period (~40 ms): do them at once.
		errs := make([]error, len(links))
		var wg sync.WaitGroup
		for i, l := range links {
			wg.Go(func() { errs[i] = l.Close() })
		}
		wg.Wait()
		k.detachErr = errors.Join(errs...)
	})
	return k.detachErr
}

// Close detaches and unloads everything. It is safe to call more than once.
func (k *Kernel) Close() error {
	k.once.Do(func() {
		errs := []error{k.Detach()}
		if k.reader != nil {
			errs = append(errs, k.reader.Close(), k.ring.close())
		}
		errs = append(errs, k.objs.Close())
		k.closeErr = errors.Join(errs...)
	})
	return k.closeErr
}

// checkPrivileges turns a missing capability into words before the kernel
// answers EPERM.
func checkPrivileges() error {
	var hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil // let the kernel say no
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	if has(unix.CAP_SYS_ADMIN) || (has(unix.CAP_BPF) && has(unix.CAP_PERFMON)) {
		return nil
	}
	return errors.New("fdtrace needs CAP_BPF and CAP_PERFMON (run as root)")
}

// neededFDs is what fdtrace itself may hold: programs, links, maps, and
// the files it reads.
const neededFDs = 4096

// minFDs is the least fdtrace can attach with.
const minFDs = 256

// raiseFDLimit makes room for fdtrace's own fds so that the tracer is not
// the next victim. The Go runtime has already lifted the soft limit to the
// hard one (and restores it in the commands it starts); only a hard limit
// below neededFDs is raised, which takes CAP_SYS_RESOURCE. It returns the
// limit before, when it raised it.
func raiseFDLimit() (*unix.Rlimit, error) {
	var cur unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &cur); err != nil {
		return nil, nil
	}
	if cur.Max >= neededFDs {
		return nil, nil
	}
	want := unix.Rlimit{Cur: neededFDs, Max: neededFDs}
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, &want, nil); err != nil {
		if cur.Max >= minFDs {
			return nil, nil // tight, but enough to attach
		}
		return nil, fmt.Errorf("the fd limit is %d and raising it failed (%v): fdtrace needs at least %d (ulimit -Hn %d as root)", cur.Max, err, minFDs, neededFDs)
	}
	return &cur, nil
}

// FDLimitBefore is the RLIMIT_NOFILE fdtrace had before Load raised its
// own, nil when it did not: a command fdtrace starts must get it back.
func (k *Kernel) FDLimitBefore() *unix.Rlimit { return k.limitBefore }
