package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/leaks"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/tracer"
)

type leaksOptions struct {
	commonOptions
	minAge   time.Duration
	interval time.Duration
	top      int
	json     bool
	stacks   stackModeFlag
}

// leaksRingBufferBytes is leaks' default ring buffer size (--ringbuf-size).
const leaksRingBufferBytes = 4 << 20

func newLeaksCommand() *cobra.Command {
	var o leaksOptions
	cmd := &cobra.Command{
		Use:   "leaks [-p PID]... [-c COMM] [flags] [-- COMMAND [ARGS...]]",
		Short: "Group the fds a process holds by the call stack that opened them",
		Long: `Record the user stack of every fd a process creates, forget it when the fd
is closed, and report the fds still open, grouped by the stack that created
them, in the manner of bcc's memleak. For each group: the count, fd types,
syscalls, oldest age, growth per minute, a sample of fd numbers and what
they point at (a path, or a socket's endpoints), and the stack. One of -p,
-c or a command is required. Only new stacks and failures come through the
ring buffer, so it is 4 MiB by default (--ringbuf-size).

There is always a final report; --interval adds one every interval while
running. fds younger than --min-age are left out, except in the at-exit
report: with -- COMMAND, the final report lists the fds still open when the
command exits, much like valgrind --track-fds=yes. There each process's fds
count once (the copies a child inherited at fork are its parent's, and are
left out of the child's groups), and descendants still running are
reported with their fds at that moment. It shows fd numbers but not paths:
by the time fdtrace reads the report, the fds are closed.

fds that existed before fdtrace attached have no stack. They are reported
apart, as "pre-existing (no stack)", and never mixed with attributed ones.
So are the fds /proc shows that no traced syscall created (io_uring's
OPENAT, ACCEPT or SOCKET, seccomp's ADDFD, any syscall of a 32-bit process:
see docs/limitations.md): "created outside the traced syscalls", whatever
their age, with what /proc says they point at ("outside_traced_syscalls"
in JSON). At exit, those are the command's, read while it is held at its
exit, and those of its descendants still running.
The stack store holds 16,384 distinct stacks. When it is full, fds go into
a "no stack (stack store full)" group, and fdtrace reports the count on
stderr (and in stacks_full of trace's stats record).

Stacks are unwound in the kernel, when the fd is created, by the DWARF
unwind tables (.eh_frame) of the code, so code built without frame
pointers (glibc, libuv, node, distribution binaries, -O2 builds) gets
whole stacks; JIT code and Go are walked by frame pointers. --stack-mode fp
walks frame pointers only: cheaper, enough for Go and for C/C++ built with
-fno-omit-frame-pointer, with a heuristic for glibc's frameless wrappers.
Each new stack is symbolized while its process is alive; a command started
with -- is held at its exit until its stacks are symbolized. Frames carry
the module's build ID and file offset, so a recording can be symbolized
again later.

JavaScript frames of Node.js are named when node runs with
--perf-basic-prof --interpreted-frames-native-stack (V8's perf map).

How stacks are taken and named, and what each mode costs, is in
docs/stacks.md; where they fall short, in docs/limitations.md. A sample
report is in docs/examples.md; --json writes "type":"leak" records
(docs/records.md).`,
		Example: `  # what has pid 1234 been leaking? report every 10s
  fdtrace leaks -p 1234 -i 10s

  # fds left open at exit, as JSON
  fdtrace leaks --json -- ./myservice --once

  # which JavaScript functions leak sockets
  fdtrace leaks -- node --perf-basic-prof \
    --interpreted-frames-native-stack server.js`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.takeArgs(cmd, args); err != nil {
				return err
			}
			return runLeaks(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	o.addFlags(f)
	f.Lookup("ringbuf-size").DefValue = strconv.Itoa(leaksRingBufferBytes >> 20)
	f.DurationVar(&o.minAge, "min-age", 5*time.Second, "leave out fds younger than this")
	f.DurationVarP(&o.interval, "interval", "i", 0, "print a report every `DUR` while running (default: only at the end)")
	f.IntVar(&o.top, "top", 10, "show at most `N` call sites per report (0: all)")
	f.BoolVar(&o.json, "json", false, `write "type":"leak" JSON lines instead of text`)
	o.stacks.add(f)
	f.SortFlags = false
	return cmd
}

func runLeaks(parent context.Context, o leaksOptions) (err error) {
	if o.hostWide() {
		return usageError{fmt.Errorf("leaks needs -p PID, -c COMM or a command")}
	}
	if o.minAge < 0 || o.interval < 0 || o.top < 0 {
		return usageError{fmt.Errorf("--min-age, --interval and --top must not be negative")}
	}
	// A command's processes keep their records at exit, for the final
	// report; with -p or -c the kernel drops them.
	spec, err := o.spec(loader.Config{
		ErrorsOnly: true, CaptureStacks: true, StackMode: o.stacks.mode, KeepRecordsAtExit: len(o.command) > 0,
		// Only new stacks, failures and exits come through: 4 MiB is
		// ample, and a ring buffer's pages count in RSS twice.
		RingBufferBytes: leaksRingBufferBytes},
		"recording fd stacks of")
	if err != nil {
		return err
	}
	var mu sync.Mutex          // guards exited, held and the builder
	exited := map[int]string{} // pid -> comm
	// held: the command's fds with no record, read while it was held at
	// its exit, for the at-exit report.
	var held []outsideFD
	spec.atExit = func(tr *tracer.Tracer, pid int) {
		fds := outsideFDs(tr.Kernel(), pid, nil, describer())
		mu.Lock()
		held = append(held, fds...)
		mu.Unlock()
	}
	s, err := startSession(parent, spec)
	if err != nil {
		return err
	}
	defer closeInto(&err, s.close)
	b := &leaks.Builder{Since: time.Now(), MinAge: o.minAge, Top: o.top, Stack: s.tracer.Stack,
		Comm: func(pid int) string {
			if c, ok := exited[pid]; ok {
				return c
			}
			c, _ := procfs.Comm(pid)
			return c
		}}
	emit := func(r events.Record) error {
		if p, ok := r.(*events.Process); ok && p.Exited {
			mu.Lock()
			exited[p.PID] = p.Comm
			mu.Unlock()
		}
		return nil
	}
	// report reads the fds walk hands it one at a time: with a million
	// live fds a list of them all would be most of fdtrace's memory. Then
	// the fds /proc shows that have no record, of the processes alive.
	report := func(heading string, atExit bool, walk fdWalk) error {
		if !atExit {
			s.tracer.Stacks().NameJITFrames(0)
		}
		read := time.Now()
		mu.Lock()
		t := b.NewTally(read)
		mu.Unlock()
		stacks := map[uint64]bool{}
		recorded := fdSets{}
		err := walk(func(fd tracer.FD) {
			stacks[fd.StackID] = true
			t.Add(fd)
		}, recorded)
		if err != nil {
			return err
		}
		describe := describer()
		for pid, seen := range recorded {
			for _, f := range outsideFDs(s.tracer.Kernel(), pid, seen, describe) {
				t.AddOutside(f.pid, f.fd, f.typ, f.target)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if atExit {
			for _, f := range held {
				t.AddOutside(f.pid, f.fd, f.typ, f.target)
			}
			held = nil
		}
		b.Describe = describe
		err = writeReport(s.out, t.Report(), heading, o.json, atExit)
		// Stacks no live fd refers to any more make room for new ones.
		s.tracer.DropStacksExcept(stacks, read)
		return err
	}
	live := func(add func(tracer.FD), recorded fdSets) error {
		return s.tracer.EachFD(func(fd tracer.FD) {
			recorded.add(fd.PID, fd.FD)
			add(fd)
		})
	}
	stopReports := every(o.interval, func() {
		if err := report("outstanding fds", false, live); err != nil {
			fmt.Fprintf(os.Stderr, "fdtrace: report: %v\n", err)
		}
	})
	runErr := s.run(emit)
	stopReports()
	if _, ok := runErr.(exitError); runErr != nil && !ok {
		return runErr
	}

	// The command's fds at its exit, whatever their age, and those of
	// descendants still running. A child's copies of its parent's fds are
	// its parent's.
	if s.child != nil {
		mu.Lock()
		b.MinAge = 0
		mu.Unlock()
		ownFDs := func(add func(tracer.FD), recorded fdSets) error {
			keep := func(fd tracer.FD) {
				if !fd.Inherited || fd.PID == s.child.pid {
					add(fd)
				}
			}
			err := s.tracer.EachFD(func(fd tracer.FD) {
				recorded.add(fd.PID, fd.FD)
				keep(fd)
			})
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for pid := range exited {
				for _, fd := range s.tracer.TakeExitedFDs(pid) {
					keep(fd)
				}
			}
			return nil
		}
		if err := report("fds still open at exit", true, ownFDs); err != nil {
			return err
		}
	} else if err := report("outstanding fds", false, live); err != nil {
		return err
	}
	stats, err := s.tracer.Stats()
	if err != nil {
		return err
	}
	say(lossNotes(stats))
	say(s.tracer.Stacks().Warnings())
	return runErr
}

func writeReport(w io.Writer, r leaks.Report, heading string, asJSON, atExit bool) error {
	if !asJSON {
		r.WriteText(w, heading)
		return nil
	}
	enc := json.NewEncoder(w)
	for _, rec := range r.Records(atExit) {
		if err := enc.Encode(rec); err != nil {
			return err
		}
	}
	return nil
}

// describer tells what an fd points at: a path, or a socket's peer.
func describer() func(pid, fd int) string {
	peers := map[int]map[uint64]string{}
	return func(pid, fd int) string {
		target, err := procfs.FDTarget(pid, fd)
		if err != nil {
			return ""
		}
		if ino := procfs.SocketInode(target); ino != 0 {
			if peers[pid] == nil {
				peers[pid] = procfs.SocketPeers(pid)
			}
			if p, ok := peers[pid][ino]; ok {
				return p
			}
		}
		return target
	}
}

// A fdWalk hands a report the records of the fds to report (add), and
// notes in recorded every record of the processes alive, whose other fds
// in /proc then go into the outside group.
type fdWalk func(add func(tracer.FD), recorded fdSets) error

// fdSets are, per process, the fd numbers that have a record: bit sets,
// 128 KiB for a million fds.
type fdSets map[int][]uint64

func (s fdSets) add(pid, fd int) {
	if fd < 0 {
		return
	}
	bits := s[pid]
	if w := fd / 64; w >= len(bits) {
		bits = append(bits, make([]uint64, w+1-len(bits))...)
	}
	bits[fd/64] |= 1 << (fd % 64)
	s[pid] = bits
}

// has says whether fd is in bits, a process's set.
func has(bits []uint64, fd int) bool {
	return fd >= 0 && fd/64 < len(bits) && bits[fd/64]&(1<<(fd%64)) != 0
}

// outsideFD is an fd /proc shows that has no record: created outside the
// traced syscalls (io_uring, seccomp's ADDFD, an ia32 syscall, ...).
type outsideFD struct {
	pid, fd     int
	typ, target string // from /proc
}

// outsideFDs lists the fds of pid that /proc shows and that have no
// record: neither in recorded (pid's fds with a record when the kernel's
// were walked; nil: look each up) nor in the kernel now (created by a
// traced syscall since the walk). A process gone has none.
func outsideFDs(k *loader.Kernel, pid int, recorded []uint64, describe func(pid, fd int) string) []outsideFD {
	fds, err := procfs.FDs(pid)
	if err != nil {
		return nil
	}
	var out []outsideFD
	for _, fd := range fds {
		if has(recorded, fd) {
			continue
		}
		if _, ok := k.LookupFD(pid, fd); ok {
			continue
		}
		target, err := procfs.FDTarget(pid, fd)
		if err != nil {
			continue // closed meanwhile
		}
		// A traced syscall's fd is in the table just before its record.
		if _, ok := k.LookupFD(pid, fd); ok {
			continue
		}
		f := outsideFD{pid: pid, fd: fd, typ: events.ParseFDType(procfs.TargetType(target)).String(), target: target}
		if d := describe(pid, fd); d != "" {
			f.target = d
		}
		out = append(out, f)
	}
	return out
}
