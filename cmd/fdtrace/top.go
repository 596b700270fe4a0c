package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/output"
	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/top"
)

type topOptions struct {
	pids       []int
	comm       string
	cgroup     string
	interval   time.Duration
	iterations int
	json       bool
	outPath    string
	sort       string
	btfPath    string
	debug      bool
}

// topRingBufferBytes: top reads only exits (and the EMFILE-class errors
// the counting mode still sends) from the ring buffer.
const topRingBufferBytes = 4 << 20

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
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unexpected argument %q", args[0])}
			}
			return runTop(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntSliceVarP(&o.pids, "pid", "p", nil, "show this process (repeatable, or comma-separated)")
	f.StringVarP(&o.comm, "comm", "c", "", "show processes with this name (as in /proc/PID/comm)")
	f.StringVar(&o.cgroup, "cgroup", "", "show processes whose cgroup starts with `PATH` (as in /proc/PID/cgroup, or under /sys/fs/cgroup)")
	f.DurationVarP(&o.interval, "interval", "i", time.Second, "refresh every `DUR`")
	f.IntVarP(&o.iterations, "iterations", "n", 0, "stop after `N` refreshes (default: until q or Ctrl-C)")
	f.BoolVar(&o.json, "json", false, "write JSON lines, even to a terminal")
	f.StringVarP(&o.outPath, "output", "o", "", "write JSON lines to `FILE`")
	f.StringVarP(&o.sort, "sort", "s", "utilization", "order by `KEY`: utilization, growth, errors, fds or pid")
	f.StringVar(&o.btfPath, "btf", "", "kernel BTF `FILE`, for kernels without /sys/kernel/btf/vmlinux")
	f.BoolVar(&o.debug, "debug", false, "print the full BPF verifier log on load errors")
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
	for _, pid := range o.pids {
		if pid <= 0 {
			return 0, usageError{fmt.Errorf("--pid %d: not a process id", pid)}
		}
	}
	key, ok := top.ParseSortKey(o.sort)
	if !ok {
		return 0, usageError{fmt.Errorf("--sort %q: use one of %s", o.sort, strings.Join(top.SortKeys, ", "))}
	}
	return key, nil
}

// loadCounting loads the tracer in its counting mode, for commands that
// read only the kernel's counters (top, serve), and prints its notes.
func loadCounting(pids []int, comm, btfPath string, debug bool) (*loader.Tracer, error) {
	tr, err := loader.Load(loader.Config{PIDs: pids, Comm: comm, BTFPath: btfPath, VerifierLog: debug,
		ErrorsOnly: true, CountOnly: true, RingBufferBytes: topRingBufferBytes})
	if err != nil {
		return nil, err
	}
	for _, n := range tr.Notes() {
		fmt.Fprintf(os.Stderr, "fdtrace: %s\n", n)
	}
	return tr, nil
}

func runTop(parent context.Context, o topOptions) (err error) {
	key, err := o.validate()
	if err != nil {
		return err
	}
	tr, err := loadCounting(o.pids, o.comm, o.btfPath, o.debug)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := tr.Close(); err == nil {
			err = cerr
		}
	}()
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	out := os.Stdout
	if o.outPath != "" {
		if out, err = os.Create(o.outPath); err != nil {
			return err
		}
		defer out.Close()
	}
	jsonOut := o.json || !term.IsTerminal(int(out.Fd()))
	src := &topSource{t: tr, errors: jsonOut, runErr: make(chan error, 1)}
	runCtx, stopReading := context.WithCancel(ctx)
	var reading sync.WaitGroup
	reading.Go(func() { src.runErr <- tr.Run(runCtx, src.handle) })
	defer func() {
		stopReading()
		reading.Wait()
	}()

	m := top.NewModel(top.Proc{})
	m.Sort = key
	if o.cgroup != "" {
		m.Match = top.CgroupMatcher(o.cgroup)
	}
	m.Seed(time.Now(), seedTop(o, m.Match))
	opts := top.Options{Interval: o.interval, Iterations: o.iterations, Target: o.describe()}
	if !jsonOut {
		return top.RunTerminal(ctx, os.Stdin, out, m, src, opts)
	}
	w := output.New(out, 0)
	defer func() {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}()
	return top.RunJSON(ctx, func(r events.Process) error { return w.Write(r) }, w.Flush, m, src, opts)
}

// seedTop counts once, from /proc, the fds of the processes top shows.
func seedTop(o topOptions, match func(int, string) bool) []top.Sample {
	pids := o.pids
	if len(pids) == 0 {
		pids, _ = procfs.PIDs()
	}
	self := os.Getpid()
	keep := func(pid int, comm string) bool {
		return pid != self && (o.comm == "" || comm == o.comm) && (match == nil || match(pid, comm))
	}
	return top.SeedSamples(pids, keep, len(o.pids) > 0)
}

func (o topOptions) describe() string {
	var s string
	switch {
	case len(o.pids) > 0:
		p := make([]string, len(o.pids))
		for i, pid := range o.pids {
			p[i] = strconv.Itoa(pid)
		}
		s = "pid " + strings.Join(p, ", ")
		if o.comm != "" {
			s += fmt.Sprintf(" named %q", o.comm)
		}
	case o.comm != "":
		s = fmt.Sprintf("processes named %q", o.comm)
	default:
		s = "all processes"
	}
	if o.cgroup != "" {
		s += " in cgroup " + procfs.CgroupPrefix(o.cgroup)
	}
	return s
}

// topSource reads the tracer for the model: the procs map at each
// refresh, and the exit records as the ring buffer brings them.
type topSource struct {
	t      *loader.Tracer
	errors bool // read the errors map too (for the JSON records)
	runErr chan error

	mu    sync.Mutex
	exits []top.Sample
}

func (s *topSource) handle(r events.Record) error {
	if p, ok := r.(events.Process); ok && p.Exited {
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
		if errs, err = s.t.ErrorCounts(); err != nil {
			return nil, nil, err
		}
	}
	ports, err := s.portsByProcess()
	if err != nil {
		return nil, nil, err
	}
	// The map first, then the exits: a process missing from the map has
	// its exit record queued already.
	err = s.t.EachCounters(func(c *loader.Counters) {
		k := top.Sample{PID: c.PID, StartNs: c.StartNs, Comm: c.Comm, OpenFDs: c.OpenFDs,
			Opened: c.Opened, Closed: c.Closed, EMFILE: c.EMFILE, ENFILE: c.ENFILE, Refused: c.Refused,
			OpenedByType: c.OpenedByType, ClosedByType: c.ClosedByType}
		key := loader.ProcKey{PID: c.PID, StartNs: c.StartNs}
		if s.errors {
			k.Errors = errs[key]
		}
		if p := ports[key]; p != nil {
			k.RefusedByPort, k.DroppedByPort = p.refused, p.dropped
		}
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

type portMaps struct{ refused, dropped map[uint16]uint64 }

// portsByProcess reads the refused and drained connections by port.
func (s *topSource) portsByProcess() (map[loader.ProcKey]*portMaps, error) {
	counts, err := s.t.Ports()
	if err != nil {
		return nil, err
	}
	out := map[loader.ProcKey]*portMaps{}
	for _, c := range counts {
		key := loader.ProcKey{PID: c.PID, StartNs: c.StartNs}
		p := out[key]
		if p == nil {
			p = &portMaps{}
			out[key] = p
		}
		if c.Refused > 0 {
			if p.refused == nil {
				p.refused = map[uint16]uint64{}
			}
			p.refused[c.Port] += c.Refused
		}
		if c.Dropped > 0 {
			if p.dropped == nil {
				p.dropped = map[uint16]uint64{}
			}
			p.dropped[c.Port] += c.Dropped
		}
	}
	return out, nil
}
