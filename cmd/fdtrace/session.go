package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/output"
	"github.com/fdtrace/fdtrace/internal/sanitize"
	"github.com/fdtrace/fdtrace/internal/top"
	"github.com/fdtrace/fdtrace/internal/tracer"
)

// sessionSpec is what a command asks of its session.
type sessionSpec struct {
	target targetFlags
	config loader.Config // the tracer's mode; the target fields come from target
	run    runFlags
	// command is started, traced with its descendants, and ends the
	// session at its exit.
	command []string
	outPath string          // the output; "" is stdout
	metrics *metricsOptions // served while the session lasts; nil: none
	// notice names the activity in the "fdtrace: tracing ..." line on
	// stderr; "" leaves the line out.
	notice       string
	stopOnHangUp bool // SIGHUP ends the session too
	// dropReading gives up reading other processes' fds and maps once
	// started (dropProcessReading): for modes that never do it again.
	dropReading bool
	// atExit, if set, runs while the command is held at its exit (its fd
	// table still whole), after its stacks are symbolized.
	atExit func(t *tracer.Tracer, pid int)
}

func (sp sessionSpec) validate() error {
	if err := sp.target.validate(); err != nil {
		return err
	}
	if len(sp.command) > 0 && len(sp.target.pids) > 0 {
		return usageError{errors.New("-p and a command cannot be combined")}
	}
	if len(sp.command) > 0 && sp.target.comm != "" {
		return usageError{errors.New("-c and a command cannot be combined")}
	}
	if err := sp.run.validate(); err != nil {
		return err
	}
	if sp.metrics != nil {
		return sp.metrics.validate()
	}
	return nil
}

func (sp sessionSpec) loaderConfig() loader.Config {
	cfg := sp.target.config(sp.config)
	if len(sp.command) > 0 {
		cfg.FollowChildrenOf = os.Getpid()
	}
	return cfg
}

// countingConfig is the tracer's counting mode, for the commands that read
// only the kernel's counters (top, serve). The ring buffer brings only
// exits and the EMFILE-class errors this mode still sends.
func countingConfig() loader.Config {
	return loader.Config{ErrorsOnly: true, CountOnly: true, RingBufferBytes: 4 << 20}
}

// session is a loaded tracer, the output, the command it started and the
// metrics it serves.
type session struct {
	spec     sessionSpec
	tracer   *tracer.Tracer
	out      *os.File
	child    *child
	listener net.Listener
	metrics  *metricsServer
	ctx      context.Context // done on a stop signal or at the end of --duration
	stop     func()
	// interrupted: the session ended on SIGINT, which a terminal sends to
	// the command too.
	interrupted atomic.Bool
	// file is trace's -o FILE, once open: it counts what it dropped.
	file atomic.Pointer[output.File]
}

// Stats are the tracer's, with the records -o FILE dropped.
func (s *session) Stats() (events.Stats, error) {
	st, err := s.tracer.Stats()
	if f := s.file.Load(); f != nil {
		st.OutputDropped = f.Dropped()
	}
	return st, err
}

// startSession checks sp, then loads the tracer, starts the command and
// the metrics, and writes the ready file: a session that runs until
// SIGINT, SIGTERM, --duration or the command's exit.
func startSession(parent context.Context, sp sessionSpec) (_ *session, err error) {
	if err := sp.validate(); err != nil {
		return nil, err
	}
	var path string
	if len(sp.command) > 0 {
		if path, err = exec.LookPath(sp.command[0]); err != nil {
			return nil, fmt.Errorf("command %q: %w", sp.command[0], err)
		}
	}
	s := &session{spec: sp, out: os.Stdout}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	// Bound before the tracer loads: a port in use fails at once.
	if sp.metrics != nil {
		if s.listener, err = sp.metrics.listen(); err != nil {
			return nil, err
		}
	}
	if sp.outPath != "" {
		if s.out, err = output.Open(sp.outPath); err != nil {
			return nil, err
		}
	}
	if s.tracer, err = tracer.Start(sp.loaderConfig()); err != nil {
		return nil, err
	}
	s.ctx, s.stop = s.notifyStop(parent)
	if path != "" {
		if err = s.startCommand(path); err != nil {
			return nil, err
		}
	}
	s.sayStarted()
	if s.listener != nil {
		s.serveMetrics()
	}
	if sp.dropReading {
		if err := dropProcessReading(); err != nil {
			fmt.Fprintf(os.Stderr, "fdtrace: keeping CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: %v\n", err)
		}
	}
	if sp.run.readyFile != "" {
		if err = os.WriteFile(sp.run.readyFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("writing --ready-file: %w", err)
		}
	}
	return s, nil
}

// notifyStop gives a context done on SIGINT, SIGTERM (SIGHUP too, if
// asked for) or at the end of --duration.
func (s *session) notifyStop(parent context.Context) (context.Context, func()) {
	ctx, cancel := withDuration(parent, s.spec.run.duration)
	stopOn := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if s.spec.stopOnHangUp {
		stopOn = append(stopOn, syscall.SIGHUP)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, stopOn...)
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

// withDuration gives a context done after d; never if d is 0.
func withDuration(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(parent, d)
	}
	return context.WithCancel(parent)
}

// startCommand starts the command at path under the tracer.
func (s *session) startCommand(path string) (err error) {
	name := s.spec.command[0]
	limit := s.tracer.Kernel().FDLimitBefore()
	// Held at its exit, the command's stacks are symbolized while its
	// memory map still exists.
	atExit := func(pid int) {
		s.tracer.SymbolizeStacksOf(pid)
		if s.spec.atExit != nil {
			s.spec.atExit(s.tracer, pid)
		}
	}
	// Stopped after exec, its unwind tables are loaded before it runs.
	atExec := func(pid int) { s.tracer.Stacks().LoadTables(pid) }
	if s.child, err = spawn(path, s.spec.command, limit, atExec, atExit); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	if err := s.tracer.Track(s.child.pid); err != nil {
		fmt.Fprintf(os.Stderr, "fdtrace: recording the fds of %s: %v\n", name, err)
	}
	return nil
}

// sayStarted prints the tracer's notes and the notice on stderr.
func (s *session) sayStarted() {
	say(s.tracer.Kernel().Notes())
	if s.spec.notice != "" {
		fmt.Fprintf(os.Stderr, "fdtrace: %s %s%s; Ctrl-C to stop\n", s.spec.notice, s.describeTarget(), s.describeOutput())
	}
}

// say prints lines on stderr, as fdtrace's.
func say(lines []string) {
	for _, l := range lines {
		fmt.Fprintf(os.Stderr, "fdtrace: %s\n", sanitize.Text(l)) // may name a traced process's files
	}
}

// serveMetrics serves the metrics on the listener, with the processes
// as /proc shows them now until the kernel counts them; a command's
// processes are all counted from their start.
func (s *session) serveMetrics() {
	var seeds []top.Sample
	if len(s.spec.command) == 0 {
		seeds = s.spec.target.seeds(nil)
	}
	s.metrics = serveMetrics(s.listener, s, *s.spec.metrics, metricsSeeds(seeds))
}

// run reads events until the session ends: a signal, --duration, or the
// command's exit. It returns the command's exit as an exitError.
func (s *session) run(emit tracer.Handler) error {
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
	if err := s.tracer.Kernel().Detach(); err != nil {
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

// every calls fn every interval (never if it is 0) until stop, which
// waits for a call under way.
func every(interval time.Duration, fn func()) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				fn()
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

func (s *session) close() error {
	var errs []error
	if s.stop != nil {
		s.stop()
	}
	errs = append(errs, s.metrics.close())
	if s.listener != nil {
		s.listener.Close() // closed already if the metrics were served
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
	if s.child != nil {
		return fmt.Sprintf("%s (pid %d) and its descendants", s.spec.command[0], s.child.pid)
	}
	return s.spec.target.describe()
}

func (s *session) describeOutput() string {
	if s.spec.outPath != "" {
		return ", writing to " + s.spec.outPath
	}
	return ""
}
