package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/output"
)

type traceOptions struct {
	pids        []int
	comm        string
	outPath     string
	duration    time.Duration
	errorsOnly  bool
	readyFile   string
	btfPath     string
	ringbufMiB  int
	debug       bool
	command     []string
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

  # a command from start to end
  fdtrace trace -o trace.jsonl -- ./myservice --port 8080`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if dash > 0 {
					return usageError{fmt.Errorf("unexpected argument %q before --", args[0])}
				}
				o.command = args
			} else if len(args) > 0 {
				return usageError{fmt.Errorf("unexpected argument %q (put a command after --)", args[0])}
			}
			return runTrace(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntSliceVarP(&o.pids, "pid", "p", nil, "trace this process, not its children (repeatable, or comma-separated)")
	f.StringVarP(&o.comm, "comm", "c", "", "trace processes with this name (as in /proc/PID/comm)")
	f.StringVarP(&o.outPath, "output", "o", "", "write records to `FILE` instead of stdout")
	f.DurationVarP(&o.duration, "duration", "d", 0, "stop after this long (e.g. 30s, 5m); default: until Ctrl-C")
	f.BoolVar(&o.errorsOnly, "errors-only", false, "report only failed syscalls and summaries (open/close counted in the kernel)")
	f.StringVar(&o.readyFile, "ready-file", "", "write fdtrace's pid to `FILE` once tracing has started")
	f.StringVar(&o.btfPath, "btf", "", "kernel BTF `FILE`, for kernels without /sys/kernel/btf/vmlinux")
	f.IntVar(&o.ringbufMiB, "ringbuf-size", loader.DefaultRingBufferBytes>>20, "event ring buffer size in `MiB` (power of two)")
	f.BoolVar(&o.debug, "debug", false, "print the full BPF verifier log on load errors")
	f.DurationVar(&o.flushPeriod, "flush-interval", 200*time.Millisecond, "write buffered records at least this often")
	cmd.Flags().SortFlags = false
	return cmd
}

func (o traceOptions) validate() error {
	if len(o.command) > 0 && len(o.pids) > 0 {
		return usageError{errors.New("-p and a command cannot be combined")}
	}
	if len(o.command) > 0 && o.comm != "" {
		return usageError{errors.New("-c and a command cannot be combined")}
	}
	if o.duration < 0 {
		return usageError{errors.New("--duration must be positive")}
	}
	if o.ringbufMiB <= 0 || o.ringbufMiB&(o.ringbufMiB-1) != 0 {
		return usageError{fmt.Errorf("--ringbuf-size %d: must be a power of two", o.ringbufMiB)}
	}
	for _, pid := range o.pids {
		if pid <= 0 {
			return usageError{fmt.Errorf("--pid %d: not a process id", pid)}
		}
	}
	return nil
}

func runTrace(parent context.Context, o traceOptions) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	var path string
	if len(o.command) > 0 {
		if path, err = exec.LookPath(o.command[0]); err != nil {
			return fmt.Errorf("command %q: %w", o.command[0], err)
		}
	}
	out := os.Stdout
	if o.outPath != "" {
		f, err := os.Create(o.outPath)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}()
		out = f
	}
	loader.VerboseErrors = o.debug
	cfg := loader.Config{PIDs: o.pids, Comm: o.comm, ErrorsOnly: o.errorsOnly,
		BTFPath: o.btfPath, RingBufferBytes: o.ringbufMiB << 20}
	if len(o.command) > 0 {
		cfg.FollowChildrenOf = os.Getpid()
		// The Go runtime probes pidfd support by forking a child the first
		// time it needs a process handle: get that done before tracing.
		os.FindProcess(os.Getpid())
	}
	tracer, err := loader.Load(cfg)
	if err != nil {
		return err
	}
	defer tracer.Close()

	w := output.New(out, o.flushPeriod)
	defer func() {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}()

	ctx, cancel := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if o.duration > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeout(ctx, o.duration)
		defer cancelTimeout()
	}

	var child *exec.Cmd
	if len(o.command) > 0 {
		child = &exec.Cmd{Path: path, Args: o.command, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
		if err := child.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", o.command[0], err)
		}
		if err := tracer.Track(child.Process.Pid); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "fdtrace: recording the fds of %s: %v\n", o.command[0], err)
		}
	}
	for _, n := range tracer.Notes() {
		fmt.Fprintf(os.Stderr, "fdtrace: %s\n", n)
	}
	fmt.Fprintf(os.Stderr, "fdtrace: tracing %s%s; Ctrl-C to stop\n", describeTarget(o, child), describeOutput(o))
	if o.readyFile != "" {
		if err := os.WriteFile(o.readyFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return err
		}
	}

	hostWide := len(o.pids) == 0 && o.comm == "" && child == nil
	emit := func(r events.Record) error {
		// Host-wide, only processes that failed are worth a line at exit.
		if p, ok := r.(events.Process); ok && hostWide && len(p.Errors) == 0 {
			return nil
		}
		return w.Write(r)
	}

	// SIGUSR1: the summary now, without stopping.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	runCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go func() {
		for {
			select {
			case <-usr1:
				if err := writeSummary(tracer, o, hostWide, w); err != nil {
					fmt.Fprintf(os.Stderr, "fdtrace: summary: %v\n", err)
				}
				w.Flush()
			case <-runCtx.Done():
				return
			}
		}
	}()
	status := make(chan error, 1)
	if child != nil {
		go func() {
			status <- waitChild(ctx, child)
			stopReading()
		}()
	}
	if err := tracer.Run(runCtx, emit); err != nil {
		return err
	}
	var childErr error
	if child != nil {
		childErr = <-status
		if err := tracer.Drain(emit); err != nil {
			return err
		}
	}
	if err := writeSummary(tracer, o, hostWide, w); err != nil {
		return err
	}
	return childErr
}

// waitChild waits for the command, passing SIGINT/SIGTERM on to it.
func waitChild(ctx context.Context, child *exec.Cmd) error {
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			child.Process.Signal(syscall.SIGTERM)
		case <-done:
		}
	}()
	err := child.Wait()
	close(done)
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return exitError{128 + int(ws.Signal())}
		}
		return exitError{ee.ExitCode()}
	}
	return err
}

func writeSummary(t *loader.Tracer, o traceOptions, hostWide bool, w *output.Writer) error {
	procs, err := t.Processes()
	if err != nil {
		return err
	}
	seen := map[int]bool{}
	for _, p := range procs {
		seen[p.PID] = true
		if hostWide && p.Opened+p.Closed == 0 && len(p.Errors) == 0 {
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

func describeTarget(o traceOptions, child *exec.Cmd) string {
	switch {
	case child != nil:
		return fmt.Sprintf("%s (pid %d) and its descendants", o.command[0], child.Process.Pid)
	case len(o.pids) > 0:
		s := make([]string, len(o.pids))
		for i, p := range o.pids {
			s[i] = strconv.Itoa(p)
		}
		return "pid " + strings.Join(s, ", ")
	case o.comm != "":
		return fmt.Sprintf("processes named %q", o.comm)
	}
	return "all processes"
}

func describeOutput(o traceOptions) string {
	mode := ""
	if o.errorsOnly {
		mode = ", errors only"
	}
	if o.outPath != "" {
		return mode + ", writing to " + o.outPath
	}
	return mode
}
