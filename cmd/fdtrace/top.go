package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/output"
	"github.com/fdtrace/fdtrace/internal/top"
	"github.com/fdtrace/fdtrace/internal/tracer"
)

type topOptions struct {
	target     targetFlags
	interval   time.Duration
	iterations int
	json       bool
	outPath    string
	sort       string
}

func newTopCommand() *cobra.Command {
	var o topOptions
	cmd := &cobra.Command{
		Use:   "top [-p PID]... [-c COMM] [--cgroup PATH] [-i DUR] [-n N] [--json] [-o FILE]",
		Short: "A live view of the processes closest to their fd limit",
		Long: `Show, like top, every process with its open fds, soft fd limit (ulimit -n)
and utilization (open/limit, marked WARN from 70% and CRIT from 85%), fds
opened and closed per second, net growth per second (opened less closed),
EMFILE and ENFILE failures per second, refused connections (accepts that
failed for lack of fds or memory) and the fd type most of its fds have,
sorted by how close each is to its fd limit. The header shows the system's
side of ENFILE (the files allocated against fs.file-max) and the refused
connections of each listening port, added up over the processes shown
(see docs/design.md). The screen follows the terminal's size; with -n, as
with top -n, the last screen stays on a terminal.

Keys: u, g, e, f, p sort by utilization, growth, errors (EMFILE, ENFILE and
refused connections per second), open fds and pid; / filters by a part of
the process name (any case; Enter keeps the filter, Esc drops it); q or
Ctrl-C quits.

top loads the tracer in its counting mode (as trace --errors-only) and
reads the kernel's per-process counters at each refresh, not /proc. A
process the kernel has not seen create or close an fd since top started
has no counters yet: it shows the count /proc gave once at start
(processes with no fds, such as kernel threads, are left out unless named
with -p). The soft limit is read when a process is first seen and, for the
rows on the screen, again every few seconds (and after an exec). Rates are
per second over the last interval. A process that exited in the interval
is shown once more, as (exited), with its final counters. The top fd type:
the first time a process is shown, top classifies the fds it has from
/proc; from then on it adds the fds the kernel saw opened and closed, by
type. What this mode cannot correct is in docs/limitations.md.

Without a terminal (stdout piped, --json or -o), top writes one
"type":"process" JSON line per process at start and then every interval,
the same record as trace's, plus "rates" (per second over the interval;
absent in a process's first record) and "top_fd_type". A process that
exited gets one last record with "exited": true. Samples of both are in
docs/examples.md.`,
		Example: `  # every process on the host, refreshed every second
  fdtrace top

  # the processes of one service, by cgroup, sorted by errors
  fdtrace top --cgroup /system.slice/nginx.service -s errors

  # three samples of one process, two seconds apart, for a script
  fdtrace top -p 1234 -i 2s -n 3 --json`,
		Args: noPositionalArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTop(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	o.target.addFlags(f, "show", withCgroup)
	f.DurationVarP(&o.interval, "interval", "i", time.Second, "refresh every `DUR`")
	f.IntVarP(&o.iterations, "iterations", "n", 0, "stop after `N` refreshes (default: until q or Ctrl-C)")
	f.BoolVar(&o.json, "json", false, "write JSON lines, even to a terminal")
	f.StringVarP(&o.outPath, "output", "o", "", "write JSON lines to `FILE`")
	f.StringVarP(&o.sort, "sort", "s", "utilization", "order by `KEY`: utilization, growth, errors, fds or pid")
	f.SortFlags = false
	return cmd
}

func (o topOptions) validate() (top.SortKey, error) {
	if o.interval <= 0 {
		return 0, usageError{fmt.Errorf("--interval %v: must be positive", o.interval)}
	}
	if o.iterations < 0 {
		return 0, usageError{fmt.Errorf("--iterations %d: must not be negative", o.iterations)}
	}
	key, ok := top.ParseSortKey(o.sort)
	if !ok {
		return 0, usageError{fmt.Errorf("--sort %q: use one of %s", o.sort, strings.Join(top.SortKeys, ", "))}
	}
	return key, nil
}

func runTop(parent context.Context, o topOptions) (err error) {
	key, err := o.validate()
	if err != nil {
		return err
	}
	// SIGHUP too: the terminal top draws on has gone.
	s, err := startSession(parent, sessionSpec{target: o.target, config: countingConfig(), outPath: o.outPath, stopOnHangUp: true})
	if err != nil {
		return err
	}
	defer closeInto(&err, s.close)
	// After the screen is gone: what was lost while it showed.
	defer func() {
		var st events.Stats
		if s.tracer.Kernel().KernelStats(&st) == nil {
			say(lossNotes(st))
		}
	}()
	jsonOut := o.json || !term.IsTerminal(int(s.out.Fd()))
	src := &topSource{t: s.tracer, errors: jsonOut, runErr: make(chan error, 1)}
	runCtx, stopReading := context.WithCancel(s.ctx)
	var reading sync.WaitGroup
	reading.Go(func() { src.runErr <- s.tracer.Run(runCtx, src.handle) })
	defer func() {
		stopReading()
		reading.Wait()
	}()

	m := top.NewModel(top.Proc{})
	m.Sort = key
	m.Match = o.target.cgroupMatcher()
	m.Seed(time.Now(), o.target.seeds(m.Match))
	opts := top.Options{Interval: o.interval, Iterations: o.iterations, Target: o.target.describe()}
	if !jsonOut {
		return top.RunTerminal(s.ctx, os.Stdin, s.out, m, src, opts)
	}
	w := output.New(s.out, 0)
	defer closeInto(&err, w.Close)
	return top.RunJSON(s.ctx, func(r events.Process) error { return w.Write(r) }, w.Flush, m, src, opts)
}

// topSource reads the tracer for the model: the procs map at each
// refresh, and the exit records as the ring buffer brings them.
type topSource struct {
	t      *tracer.Tracer
	errors bool // read the errors map too (for the JSON records)
	runErr chan error

	mu    sync.Mutex
	exits []top.Sample
}

func (s *topSource) handle(r events.Record) error {
	if p, ok := r.(*events.Process); ok && p.Exited {
		e := top.Sample{PID: p.PID, Comm: p.Comm, OpenFDs: p.OpenFDs, Opened: p.Opened, Closed: p.Closed,
			EMFILE: p.EMFILE, ENFILE: p.ENFILE, Refused: p.RefusedConnections, Limit: p.FDLimit, Errors: p.Errors,
			RefusedByPort: p.RefusedByPort, DroppedByPort: p.DroppedByPort}
		fillTypes(&e.OpenedByType, p.OpenedByType)
		fillTypes(&e.ClosedByType, p.ClosedByType)
		s.mu.Lock()
		s.exits = append(s.exits, e)
		s.mu.Unlock()
	}
	return nil
}

func fillTypes(dst *[top.NumTypes]uint64, counts map[string]uint64) {
	for i := range dst {
		dst[i] = counts[events.FDType(i).String()]
	}
}

func (s *topSource) Sample() (kernel, exits []top.Sample, err error) {
	select {
	case err := <-s.runErr:
		if err == nil {
			err = errors.New("the ring buffer reader stopped")
		}
		return nil, nil, err
	default:
	}
	var errs map[loader.ProcKey]map[string]map[string]uint64
	if s.errors {
		counts, err := s.t.Kernel().Errors()
		if err != nil {
			return nil, nil, err
		}
		errs = tracer.ErrorsByProcess(counts)
	}
	counts, err := s.t.Kernel().Ports()
	if err != nil {
		return nil, nil, err
	}
	ports := tracer.PortsByProcess(counts)
	// The map first, then the exits: a process missing from the map has
	// its exit record queued already.
	err = s.t.Kernel().EachCounters(func(c *loader.Counters) {
		k := top.Sample{PID: c.PID, StartNs: c.StartNs, Comm: c.Comm, OpenFDs: c.OpenFDs,
			Opened: c.Opened, Closed: c.Closed, EMFILE: c.EMFILE, ENFILE: c.ENFILE, Refused: c.Refused,
			OpenedByType: c.OpenedByType, ClosedByType: c.ClosedByType}
		key := loader.ProcKey{PID: c.PID, StartNs: c.StartNs}
		if s.errors {
			k.Errors = errs[key]
		}
		k.RefusedByPort, k.DroppedByPort = ports[key].Refused, ports[key].Dropped
		kernel = append(kernel, k)
	})
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	exits, s.exits = s.exits, nil
	s.mu.Unlock()
	return kernel, exits, nil
}
