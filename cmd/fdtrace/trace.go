package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/output"
)

type traceOptions struct {
	commonOptions
	errorsOnly  bool
	allErrors   bool
	stacks      bool
	flushPeriod time.Duration
}

func newTraceCommand() *cobra.Command {
	var o traceOptions
	cmd := &cobra.Command{
		Use:   "trace [-p PID]... [-c COMM] [flags] [-- COMMAND [ARGS...]]",
		Short: "Stream fd events as JSON lines, with a per-process summary at the end",
		Long: `Trace the syscalls that create and close file descriptors and write one
JSON object per line:

  {"type":"open", ...}     an fd was created (pipe2 and socketpair give two)
  {"type":"close", ...}    an fd went away (close, close_range, dup2 over it, exec)
  {"type":"error", ...}    an fd-creating syscall failed (EMFILE, ENFILE, ...)
  {"type":"process", ...}  per-process totals: when a process exits, and at the end
  {"type":"stats", ...}    lost events and other loss or drift counters, at the end

Send SIGUSR1 to get the process and stats records at any time.

Without -p, -c or a command, every process on the host is traced.
With -- COMMAND, fdtrace attaches first, then starts the command, traces it
and its descendants, stops when it exits and exits with its status.`,
		Example: `  # everything one process does with fds, for 30 seconds
  fdtrace trace -p 1234 -d 30s

  # only the failures, host-wide, into a file
  fdtrace trace --errors-only -o errors.jsonl

  # a command from start to end, with the stack of every open and failure
  fdtrace trace --stacks -o trace.jsonl -- ./myservice --port 8080`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.takeArgs(cmd, args); err != nil {
				return err
			}
			return runTrace(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	o.addFlags(f)
	f.BoolVar(&o.errorsOnly, "errors-only", false, "report only failed syscalls and summaries (open/close counted in the kernel)")
	f.BoolVar(&o.allErrors, "all-errors", false, "an error record for every errno (default: EMFILE, ENFILE, ENOMEM, ENOBUFS; all are counted)")
	f.BoolVar(&o.stacks, "stacks", false, "add the symbolized user stack to open and error records")
	f.DurationVar(&o.flushPeriod, "flush-interval", 200*time.Millisecond, "write buffered records at least this often")
	f.SortFlags = false
	return cmd
}

func runTrace(parent context.Context, o traceOptions) (err error) {
	what := "tracing"
	if o.errorsOnly {
		what = "tracing errors of"
	}
	s, err := startSession(parent, o.commonOptions,
		loader.Config{ErrorsOnly: o.errorsOnly, CountOnly: o.errorsOnly, AllErrors: o.allErrors, CaptureStacks: o.stacks}, what)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.close(); err == nil {
			err = cerr
		}
	}()
	w := output.New(s.out, o.flushPeriod)
	defer func() {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}()

	hostWide := o.hostWide()
	emit := func(r events.Record) error {
		// Host-wide, only processes that ran out of fds are worth a line
		// at exit.
		if p, ok := r.(events.Process); ok && hostWide && !ranOut(p) {
			return nil
		}
		return w.Write(r)
	}
	var summaryMu sync.Mutex // SIGUSR1 and the end must not interleave
	s.onSignal(syscall.SIGUSR1, func() {
		summaryMu.Lock()
		defer summaryMu.Unlock()
		if err := writeSummary(s.tracer, o.commonOptions, w); err != nil {
			fmt.Fprintf(os.Stderr, "fdtrace: summary: %v\n", err)
		}
		w.Flush()
	})
	runErr := s.run(emit)
	if _, ok := runErr.(exitError); runErr != nil && !ok {
		return runErr
	}
	summaryMu.Lock()
	defer summaryMu.Unlock()
	if err := writeSummary(s.tracer, o.commonOptions, w); err != nil {
		return err
	}
	for _, warning := range s.tracer.SymbolizerWarnings() {
		fmt.Fprintf(os.Stderr, "fdtrace: %s\n", warning)
	}
	return runErr
}

// ranOut tells whether a process hit its fd limit (or the system's).
func ranOut(p events.Process) bool {
	return p.EMFILE+p.ENFILE+p.RefusedConnections > 0
}

func writeSummary(t *loader.Tracer, o commonOptions, w *output.Writer) error {
	procs, err := t.Processes()
	if err != nil {
		return err
	}
	seen := map[int]bool{}
	for _, p := range procs {
		seen[p.PID] = true
		if o.hostWide() && p.Opened+p.Closed == 0 && !ranOut(p) {
			continue
		}
		if err := w.Write(p); err != nil {
			return err
		}
	}
	// Traced processes that did nothing at all still get their line.
	for _, pid := range o.pids {
		if seen[pid] {
			continue
		}
		p, err := loader.IdleProcess(pid)
		if err != nil {
			continue // exited: its record was written then
		}
		if err := w.Write(p); err != nil {
			return err
		}
	}
	stats, err := t.Stats()
	if err != nil {
		return err
	}
	if err := w.Write(stats); err != nil {
		return err
	}
	if stats.LostEvents > 0 {
		fmt.Fprintf(os.Stderr, "fdtrace: %d events were lost (ring buffer full): raise --ringbuf-size or use --errors-only\n", stats.LostEvents)
	}
	return nil
}
