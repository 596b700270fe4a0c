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
	s, err := startSession(parent, spec)
	if err != nil {
		return err
	}
	defer closeInto(&err, s.close)
	var mu sync.Mutex          // guards exited and the builder
	exited := map[int]string{} // pid -> comm
	b := &leaks.Builder{Since: time.Now(), MinAge: o.minAge, Top: o.top, Stack: s.tracer.Stack,
		Comm: func(pid int) string {
			if c, ok := exited[pid]; ok {
				return c
			}
			c, _ := procfs.Comm(pid)
			return c
		}}
	emit := func(r events.Record) error {
		if p, ok := r.(events.Process); ok && p.Exited {
			mu.Lock()
			exited[p.PID] = p.Comm
			mu.Unlock()
		}
		return nil
	}
	// report reads the fds walk hands it one at a time: with a million
	// live fds a list of them all would be most of fdtrace's memory.
	report := func(heading string, atExit bool, walk func(add func(tracer.FD)) error) error {
		if !atExit {
			s.tracer.Stacks().NameJITFrames(0)
		}
		read := time.Now()
		mu.Lock()
		t := b.NewTally(read)
		mu.Unlock()
		stacks := map[uint64]bool{}
		err := walk(func(fd tracer.FD) {
			stacks[fd.StackID] = true
			t.Add(fd)
		})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		b.Describe = describer()
		err = writeReport(s.out, t.Report(), heading, o.json, atExit)
		// Stacks no live fd refers to any more make room for new ones.
		s.tracer.DropStacksExcept(stacks, read)
		return err
	}
	live := func(add func(tracer.FD)) error { return s.tracer.EachFD(add) }
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
		ownFDs := func(add func(tracer.FD)) error {
			keep := func(fd tracer.FD) {
				if !fd.Inherited || fd.PID == s.child.pid {
					add(fd)
				}
			}
			if err := s.tracer.EachFD(keep); err != nil {
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
