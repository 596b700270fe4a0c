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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fdtrace/fdtrace/internal/loader"
)

// commonOptions are the flags every tracing command shares: what to trace,
// for how long, where to write.
type commonOptions struct {
	pids       []int
	comm       string
	command    []string
	outPath    string
	duration   time.Duration
	readyFile  string
	btfPath    string
	ringbufMiB int
	ringbufSet bool // --ringbuf-size given: it overrides a command's own size
	debug      bool
}

func (o *commonOptions) addFlags(f *pflag.FlagSet) {
	f.IntSliceVarP(&o.pids, "pid", "p", nil, "trace this process, not its children (repeatable, or comma-separated)")
	f.StringVarP(&o.comm, "comm", "c", "", "trace processes with this name (as in /proc/PID/comm)")
	f.StringVarP(&o.outPath, "output", "o", "", "write to `FILE` instead of stdout")
	f.DurationVarP(&o.duration, "duration", "d", 0, "stop after this long (e.g. 30s, 5m); default: until Ctrl-C")
	f.StringVar(&o.readyFile, "ready-file", "", "write fdtrace's pid to `FILE` once tracing has started")
	f.StringVar(&o.btfPath, "btf", "", "kernel BTF `FILE`, for kernels without /sys/kernel/btf/vmlinux")
	f.IntVar(&o.ringbufMiB, "ringbuf-size", loader.DefaultRingBufferBytes>>20, "event ring buffer size in `MiB` (power of two)")
	f.BoolVar(&o.debug, "debug", false, "print the full BPF verifier log on load errors")
}

// takeArgs accepts only a command after --, and notes which flags were given.
func (o *commonOptions) takeArgs(cmd *cobra.Command, args []string) error {
	o.ringbufSet = cmd.Flags().Changed("ringbuf-size")
	if dash := cmd.ArgsLenAtDash(); dash >= 0 {
		if dash > 0 {
			return usageError{fmt.Errorf("unexpected argument %q before --", args[0])}
		}
		o.command = args
	} else if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q (put a command after --)", args[0])}
	}
	return nil
}

func (o commonOptions) validate() error {
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

func (o commonOptions) hostWide() bool {
	return len(o.pids) == 0 && o.comm == "" && len(o.command) == 0
}

// session is a loaded tracer, the output, and the command it started.
type session struct {
	opts   commonOptions
	tracer *loader.Tracer
	out    *os.File
	child  *child
	ctx    context.Context // done on SIGINT, SIGTERM or --duration
	stop   func()
	// interrupted: the session ended on SIGINT, which a terminal sends to
	// the command too.
	interrupted atomic.Bool
}

// notifyStop gives a context done on SIGINT or SIGTERM.
func (s *session) notifyStop(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-sigs:
			s.interrupted.Store(sig == os.Interrupt)
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

// startSession loads the tracer (cfg's target fields are filled in from
// the options), opens the output, starts the command and writes the
// ready file. what names the activity in the "tracing" notice.
func startSession(parent context.Context, o commonOptions, cfg loader.Config, what string) (_ *session, err error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	var path string
	if len(o.command) > 0 {
		if path, err = exec.LookPath(o.command[0]); err != nil {
			return nil, fmt.Errorf("command %q: %w", o.command[0], err)
		}
	}
	s := &session{opts: o, out: os.Stdout}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if o.outPath != "" {
		if s.out, err = os.Create(o.outPath); err != nil {
			return nil, err
		}
	}
	cfg.PIDs, cfg.Comm, cfg.BTFPath, cfg.VerifierLog = o.pids, o.comm, o.btfPath, o.debug
	if cfg.RingBufferBytes == 0 || o.ringbufSet {
		cfg.RingBufferBytes = o.ringbufMiB << 20
	}
	if len(o.command) > 0 {
		cfg.FollowChildrenOf = os.Getpid()
	}
	if s.tracer, err = loader.Load(cfg); err != nil {
		return nil, err
	}
	ctx, stopSignals := s.notifyStop(parent)
	s.ctx, s.stop = ctx, stopSignals
	if o.duration > 0 {
		var cancel context.CancelFunc
		s.ctx, cancel = context.WithTimeout(ctx, o.duration)
		s.stop = func() { cancel(); stopSignals() }
	}
	if len(o.command) > 0 {
		limit := s.tracer.FDLimitBefore()
		// Held at its exit, the command's stacks are symbolized while its
		// memory map still exists.
		atExit := func(pid int) { s.tracer.SymbolizeStacksOf(pid) }
		// Stopped after exec, its unwind tables are loaded before it runs.
		atExec := func(pid int) { s.tracer.LoadUnwindTables(pid) }
		if s.child, err = spawn(path, o.command, limit, atExec, atExit); err != nil {
			return nil, fmt.Errorf("starting %s: %w", o.command[0], err)
		}
		if err := s.tracer.Track(s.child.pid); err != nil {
			fmt.Fprintf(os.Stderr, "fdtrace: recording the fds of %s: %v\n", o.command[0], err)
		}
	}
	for _, n := range s.tracer.Notes() {
		fmt.Fprintf(os.Stderr, "fdtrace: %s\n", n)
	}
	fmt.Fprintf(os.Stderr, "fdtrace: %s %s%s; Ctrl-C to stop\n", what, s.describeTarget(), s.describeOutput())
	if o.readyFile != "" {
		if err := os.WriteFile(o.readyFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// run reads events until the session ends: a signal, --duration, or the
// command's exit. It returns the command's exit as an exitError.
func (s *session) run(emit loader.Handler) error {
	runCtx, stopReading := context.WithCancel(s.ctx)
	defer stopReading()
	status := make(chan error, 1)
	if s.child != nil {
		go func() {
			status <- waitChild(s.ctx, s.child, &s.interrupted)
			stopReading()
		}()
	}
	if err := s.tracer.Run(runCtx, emit); err != nil {
		return err
	}
	var childErr error
	if s.child != nil {
		// Its exit record was written before its parent could reap it.
		childErr = <-status
	}
	// Stop the programs, then read everything they wrote.
	if err := s.tracer.Detach(); err != nil {
		return err
	}
	if err := s.tracer.Drain(emit); err != nil {
		return err
	}
	return childErr
}

// onSignal calls fn on each sig until the session ends.
func (s *session) onSignal(sig os.Signal, fn func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ch:
				fn()
			case <-s.ctx.Done():
				return
			}
		}
	}()
}

func (s *session) close() error {
	var errs []error
	if s.stop != nil {
		s.stop()
	}
	if s.tracer != nil {
		errs = append(errs, s.tracer.Close())
	}
	if s.out != nil && s.out != os.Stdout {
		errs = append(errs, s.out.Close())
	}
	return errors.Join(errs...)
}

// killAfter is how long a command may take to end after SIGTERM.
const killAfter = 5 * time.Second

// waitChild waits for the command. When the session ends it gets SIGTERM
// (after killAfter if it was a Ctrl-C, which reached it already), then
// SIGKILL after killAfter more.
func waitChild(ctx context.Context, c *child, interrupted *atomic.Bool) error {
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
	}
	if interrupted.Load() {
		select {
		case err := <-c.done:
			return err
		case <-time.After(killAfter):
		}
	}
	c.signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		return err
	case <-time.After(killAfter):
	}
	fmt.Fprintf(os.Stderr, "fdtrace: %s did not end %v after SIGTERM: killing it\n", c.path, killAfter)
	c.signal(syscall.SIGKILL)
	return <-c.done
}

func (s *session) describeTarget() string {
	o := s.opts
	switch {
	case s.child != nil:
		return fmt.Sprintf("%s (pid %d) and its descendants", o.command[0], s.child.pid)
	case len(o.pids) > 0:
		p := make([]string, len(o.pids))
		for i, pid := range o.pids {
			p[i] = strconv.Itoa(pid)
		}
		return "pid " + strings.Join(p, ", ")
	case o.comm != "":
		return fmt.Sprintf("processes named %q", o.comm)
	}
	return "all processes"
}

func (s *session) describeOutput() string {
	if s.opts.outPath != "" {
		return ", writing to " + s.opts.outPath
	}
	return ""
}
