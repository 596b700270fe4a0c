package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/output"
	"github.com/fdtrace/fdtrace/internal/tracer"
)

type traceOptions struct {
	commonOptions
	errorsOnly  bool
	allErrors   bool
	stacks      bool
	stackMode   stackModeFlag
	flushPeriod time.Duration
	metrics     metricsOptions
	// Long-running use: rotation of -o FILE, periodic summaries.
	maxSize      byteSize
	maxFiles     int
	summaryEvery time.Duration
}

// defaultMaxFiles is how many rotated files --max-size keeps by default.
const defaultMaxFiles = 5

func newTraceCommand() *cobra.Command {
	var o traceOptions
	cmd := &cobra.Command{
		Use:   "trace [-p PID]... [-c COMM] [flags] [-- COMMAND [ARGS...]]",
		Short: "Stream fd events as JSON lines, with a per-process summary at the end",
		Long: `Trace the syscalls that create and close file descriptors and write one
JSON object per line:

    open     an fd was created (pipe2 and socketpair give two)
    close    an fd went away (close, close_range, dup2 over it, exec)
    error    an fd-creating syscall failed (EMFILE, ENFILE, ...)
    process  per-process totals: when a process exits, and at the end
    stats    lost events and other loss or drift counters, and fdtrace's
             own memory, at the end

Every field is in docs/records.md, a sample in docs/examples.md. Send
SIGUSR1 to get the process and stats records at any time, or have them
every --summary-interval.

Without -p, -c or a command, every process on the host is traced; then a
process record at exit is written only for processes that ran out of fds
(EMFILE, ENFILE or refused connections), and at the end only for those
that had activity. -p does not follow children. -c matches the process
name (/proc/PID/comm of the main thread), not the names of its threads. A
process that execs into another name leaves the trace with an exited
record.

With -- COMMAND, fdtrace attaches first, then starts the command, traces it
and its descendants, stops when it exits and exits with its status. The
command keeps the RLIMIT_NOFILE you gave fdtrace. fdtrace needs some fds of
its own: if the hard limit is below 4096, fdtrace raises its own limit
(this takes CAP_SYS_RESOURCE; it refuses to run below 256), and sets the
command's limit back right after the command's exec, before its first
instruction. To do this, the command runs under ptrace, which is also how
fdtrace leaks holds it at exit. The command's signals are passed on, but
Ctrl-Z does not stop it. Where ptrace is refused (another tracer, Yama's
ptrace_scope 3), the command runs untraced: its limit is set right after
it starts, and it is not held at exit.

By default only EMFILE, ENFILE, ENOMEM and ENOBUFS give an error record
(--all-errors: every errno); every errno is counted in the process record.
Kernel-internal restart codes (ERESTARTSYS and above) and an accept that
finds nothing to accept (EAGAIN) are not failures and are not counted.

--errors-only is the cheapest mode: only failed syscalls and summaries
reach user space; opens and closes are still counted in the kernel, without
a record per fd (docs/PERFORMANCE.md measures what each mode costs).
--stacks adds the symbolized user stack of the creating (or failing) call
to open and error records, taken as fdtrace leaks takes it (see
docs/stacks.md).

fdtrace stops on SIGINT, SIGTERM, the end of --duration or the exit of the
command. On Ctrl-C, which the terminal sends to the command too, the
command gets 5s to exit, then SIGTERM; otherwise it gets SIGTERM at once;
SIGKILL follows 5s after SIGTERM. fdtrace detaches its programs, reads
every event still in the ring buffer, then writes the process summaries
and a final stats record. A process whose exit came after the detach is
still summarised, with "exited": true.

With -o FILE, records are appended to FILE (created readable by root
only; a symbolic link there is refused), and SIGHUP makes fdtrace reopen
FILE: after logrotate has moved it, new records go to a new FILE. Or let
fdtrace rotate: past --max-size, FILE becomes FILE.1, FILE.1 becomes
FILE.2, and so on up to --max-files, and a FILE left by an earlier run
becomes FILE.1 at start. Files hold whole lines only. Running for weeks
is in docs/design.md; --metrics-addr serves the Prometheus metrics of
docs/metrics.md while tracing.`,
		Example: `  # a short command: its opens, closes and summary
  fdtrace trace -- sh -c 'exec 3</etc/hostname; ls /proc/self/fd'

  # everything one process does with fds, for 30 seconds
  fdtrace trace -p 1234 -d 30s

  # only the failures, host-wide, into a file
  fdtrace trace --errors-only -o errors.jsonl

  # a command from start to end, with the stack of every open and failure
  fdtrace trace --stacks -o trace.jsonl -- ./myservice --port 8080

  # host-wide for weeks: at most 11 files of 100 MiB, summaries every minute
  fdtrace trace --errors-only -o /var/log/fdtrace/trace.jsonl \
    --max-size 100MiB --max-files 10 --summary-interval 1m

  # the same, and Prometheus metrics on port 9464
  fdtrace trace --errors-only -o /var/log/fdtrace/trace.jsonl \
    --metrics-addr :9464`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.takeArgs(cmd, args); err != nil {
				return err
			}
			if err := o.checkLongRunning(cmd.Flags().Changed("max-files")); err != nil {
				return err
			}
			if cmd.Flags().Changed("stack-mode") && !o.stacks {
				return usageError{errors.New("--stack-mode needs --stacks")}
			}
			return runTrace(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	o.addFlags(f)
	f.BoolVar(&o.errorsOnly, "errors-only", false, "report only failed syscalls and summaries (open/close counted in the kernel)")
	f.BoolVar(&o.allErrors, "all-errors", false, "an error record for every errno (default: EMFILE, ENFILE, ENOMEM, ENOBUFS; all are counted)")
	f.BoolVar(&o.stacks, "stacks", false, "add the symbolized user stack to open and error records")
	o.stackMode.add(f)
	f.DurationVar(&o.flushPeriod, "flush-interval", 200*time.Millisecond, "write buffered records at least this often")
	f.Var(&o.maxSize, "max-size", "with -o: start a new FILE past `SIZE` (100MiB, 1GiB, 10MB), keeping older ones as FILE.1, FILE.2, ... (default: never)")
	f.IntVar(&o.maxFiles, "max-files", defaultMaxFiles, "with --max-size: keep `N` rotated files, FILE.1 (newest) to FILE.N")
	f.DurationVar(&o.summaryEvery, "summary-interval", 0, "also write the process and stats records every `DUR` (default: at the end and on SIGUSR1)")
	o.metrics.addFlags(f, "", "serve Prometheus metrics at `ADDR` (HOST:PORT) while tracing, as fdtrace serve does")
	f.SortFlags = false
	return cmd
}

func runTrace(parent context.Context, o traceOptions) (err error) {
	what := "tracing"
	if o.errorsOnly {
		what = "tracing errors of"
	}
	spec, err := o.spec(loader.Config{ErrorsOnly: o.errorsOnly, CountOnly: o.errorsOnly, AllErrors: o.allErrors,
		CaptureStacks: o.stacks, StackMode: o.stackMode.mode}, what)
	if err != nil {
		return err
	}
	spec.metrics = &o.metrics
	// Counting only, without stacks or pids to summarise from /proc, it
	// never reads another process's fds or maps again once started.
	spec.dropReading = o.errorsOnly && !o.stacks && len(o.target.pids) == 0
	if o.outPath != "" && o.maxSize > 0 {
		// With rotation, a previous run's FILE becomes FILE.1, as if
		// rotated; without, the run appends to it (Open). A restart
		// (after a crash, say) loses nothing either way.
		if err := spec.validate(); err != nil {
			return err
		}
		if err := output.Rotate(o.outPath, o.maxFiles); err != nil {
			return err
		}
	}
	s, err := startSession(parent, spec)
	if err != nil {
		return err
	}
	defer closeInto(&err, s.close)
	out := io.Writer(s.out)
	var file *output.File
	if o.outPath != "" {
		// The rotating file takes over the file the session opened.
		if file, err = output.NewFile(s.out, o.outPath, int64(o.maxSize), o.maxFiles); err != nil {
			return err
		}
		file.OnRotateError = func(err error) {
			fmt.Fprintf(os.Stderr, "fdtrace: rotating %s: %v (writing on past --max-size)\n", o.outPath, err)
		}
		file.OnWriteError = func(err error, dropped uint64) {
			fmt.Fprintf(os.Stderr, "fdtrace: writing %s: %v: %d records dropped so far (output_dropped); tracing goes on\n", o.outPath, err, dropped)
		}
		s.file.Store(file)
		s.out, out = nil, file
		defer func() {
			if n := file.Dropped(); n > 0 {
				fmt.Fprintf(os.Stderr, "fdtrace: %d records could not be written to %s (output_dropped)\n", n, o.outPath)
			}
		}()
		defer closeInto(&err, file.Close)
	}
	w := output.New(out, o.flushPeriod)
	defer closeInto(&err, w.Close)
	if file != nil {
		s.onSignal(syscall.SIGHUP, func() {
			// Buffered records still go to the file logrotate moved.
			w.Flush()
			if err := file.Reopen(); err != nil {
				fmt.Fprintf(os.Stderr, "fdtrace: reopening %s: %v\n", o.outPath, err)
			}
		})
	}

	hostWide := o.hostWide()
	emit := func(r events.Record) error {
		// Host-wide, only processes that ran out of fds are worth a line
		// at exit.
		if p, ok := r.(*events.Process); ok && hostWide && !ranOut(*p) {
			return nil
		}
		return w.Write(r)
	}
	var summaryMu sync.Mutex // SIGUSR1, the timer and the end must not interleave
	var lostSaid uint64
	summary := func() error {
		summaryMu.Lock()
		defer summaryMu.Unlock()
		err := writeSummary(s, o.commonOptions, w, &lostSaid)
		w.Flush()
		return err
	}
	sayErr := func() {
		if err := summary(); err != nil {
			fmt.Fprintf(os.Stderr, "fdtrace: summary: %v\n", err)
		}
	}
	s.onSignal(syscall.SIGUSR1, sayErr)
	stopTimer := every(o.summaryEvery, sayErr)
	runErr := s.run(emit)
	stopTimer()
	if _, ok := runErr.(exitError); runErr != nil && !ok {
		return runErr
	}
	if err := summary(); err != nil {
		return err
	}
	say(s.tracer.Stacks().Warnings())
	return runErr
}

// checkLongRunning refuses rotation and summary flags that cannot work.
func (o traceOptions) checkLongRunning(maxFilesSet bool) error {
	switch {
	case o.maxSize > 0 && o.outPath == "":
		return usageError{errors.New("--max-size needs -o FILE")}
	case maxFilesSet && o.outPath == "":
		return usageError{errors.New("--max-files needs -o FILE")}
	case o.maxFiles < 0:
		return usageError{fmt.Errorf("--max-files %d: must not be negative", o.maxFiles)}
	case maxFilesSet && o.maxSize == 0:
		return usageError{errors.New("--max-files needs --max-size (without it FILE is never rotated)")}
	case o.summaryEvery < 0:
		return usageError{errors.New("--summary-interval must be positive")}
	}
	// Rotation renames FILE: through a symlink or onto a device it would
	// rename the link, or empty what it points at.
	if st, err := os.Lstat(o.outPath); o.maxSize > 0 && err == nil && !st.Mode().IsRegular() {
		return usageError{fmt.Errorf("--max-size: %s is not a regular file, which rotation needs", o.outPath)}
	}
	return nil
}

// byteSize is a size flag: 100MiB, 10MB, 4096.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Type() string   { return "SIZE" }

func (b *byteSize) Set(s string) error {
	n, err := output.ParseSize(s)
	*b = byteSize(n)
	return err
}

// ranOut tells whether a process hit its fd limit (or the system's).
func ranOut(p events.Process) bool {
	return p.EMFILE+p.ENFILE+p.RefusedConnections > 0
}

// writeSummary writes the process records and a stats record. lostSaid is
// how many lost events stderr has been told of already.
func writeSummary(s *session, o commonOptions, w *output.Writer, lostSaid *uint64) error {
	procs, err := s.tracer.Processes()
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
	for _, pid := range o.target.pids {
		if seen[pid] {
			continue
		}
		p, err := tracer.IdleProcess(pid)
		if err != nil {
			continue // exited: its record was written then
		}
		if err := w.Write(p); err != nil {
			return err
		}
	}
	stats, err := s.Stats()
	if err != nil {
		return err
	}
	if err := w.Write(stats); err != nil {
		return err
	}
	// What was lost is said again only when it grew.
	if sum := losses(stats); sum > *lostSaid {
		*lostSaid = sum
		say(lossNotes(stats))
	}
	return nil
}
