package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/snapshot"
)

type budgetOptions struct {
	pids     []int
	duration time.Duration
	interval time.Duration
	margin   float64
	json     bool
}

func newBudgetCommand() *cobra.Command {
	var o budgetOptions
	cmd := &cobra.Command{
		Use:   "budget -p PID [--duration DUR] [--interval DUR] [--margin X] [--json]",
		Short: "Measure the fds a process needs and recommend its RLIMIT_NOFILE",
		Long: `budget watches one process for a window and fills in its fd budget from
what it measured:

    inbound connections    the peak of connections on ports that listeners
                           of its network namespace have, and per port
    outbound to HOST:PORT  the peak per remote endpoint: each database
                           pool, cache and upstream on a line of its own
    files, pipes           the peak of each
    other fds              the peak of the rest (listeners, unix and UDP
                           sockets, epoll, eventfd, ...)

PEAK is the most fds of the component in one sample; BASELINE the part of
it open through the whole window (the same fd in every sample). The total
adds up the peaks, as if they all came at once, so it is at least the most
fds open at once. The total times the margin (--margin, 1.5 by default),
rounded up to a power of two and at least 16384, is the recommended limit,
shown next to the current one, with settings for systemd, docker,
docker-compose and a shell. The settings raise the soft limit to it and
keep the hard limit where it is when that is higher; ulimit -n (rather
than -Sn) raises the hard limit too, which needs root.

budget reads /proc/PID/fd and /proc/PID/net/tcp and tcp6 every --interval,
as fdtrace snapshot does: a peak shorter than the interval can be missed.
Watch the process under real load, for long enough to see its busiest
moment. On a terminal, a progress line on stderr shows the samples so far.
No BPF is needed.

If the process exits, budget stops, says so on stderr and reports the
window up to then ("exited": true). Ctrl-C (or SIGTERM) ends the window
early and still reports ("interrupted": true); both exit with status 0. A
sample report is in docs/examples.md; --json writes a "type":"budget"
record (docs/records.md).`,
		Example: `  # a minute of pid 1234 under load
  fdtrace budget -p 1234

  # ten minutes, twice the measured peak, as JSON
  fdtrace budget -p 1234 -d 10m --margin 2 --json`,
		Args: noPositionalArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBudget(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.IntSliceVarP(&o.pids, "pid", "p", nil, "the process")
	f.DurationVarP(&o.duration, "duration", "d", time.Minute, "watch for `DUR` (e.g. 30s, 10m)")
	f.DurationVarP(&o.interval, "interval", "i", 200*time.Millisecond, "sample every `DUR`; shorter peaks can be missed")
	f.Float64Var(&o.margin, "margin", 1.5, "multiply the measured total by `X` (at least 1)")
	f.BoolVar(&o.json, "json", false, `write a "type":"budget" JSON line instead of text`)
	f.SortFlags = false
	return cmd
}

func (o budgetOptions) validate() error {
	if err := requirePIDs(o.pids); err != nil {
		return err
	}
	switch {
	case len(o.pids) > 1:
		return usageError{errors.New("budget measures one process: give one -p")}
	case o.duration <= 0:
		return usageError{errors.New("--duration must be positive")}
	case o.interval <= 0:
		return usageError{errors.New("--interval must be positive")}
	case !(o.margin >= 1) || math.IsInf(o.margin, 0):
		return usageError{fmt.Errorf("--margin %g: must be a number, at least 1", o.margin)}
	}
	return nil
}

func runBudget(parent context.Context, w io.Writer, o budgetOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	pid := o.pids[0]
	comm, err := procfs.Comm(pid)
	if err != nil {
		return err
	}
	soft, hard, err := procfs.FDLimit(pid)
	if err != nil {
		return fmt.Errorf("pid %d: reading its fd limit: %w", pid, err)
	}
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var b snapshot.Budget
	open := 0
	sample := func() error {
		t := time.Now()
		fds, err := snapshot.ReadFDs(pid)
		if err == nil {
			fds, err = snapshot.ClassifySockets(pid, fds, "tcp", "tcp6")
		}
		if err != nil {
			if errors.Is(err, procfs.ErrNoProcess) || procfs.Gone(pid) {
				return procfs.ErrNoProcess
			}
			return err
		}
		b.Add(t, fds)
		open = len(fds)
		return nil
	}
	if err := sample(); err != nil {
		if errors.Is(err, procfs.ErrNoProcess) {
			return fmt.Errorf("pid %d: %w", pid, err)
		}
		return err
	}
	start := time.Now()
	fmt.Fprintf(os.Stderr, "fdtrace: measuring the fds of %s (pid %d) for %s, every %s; Ctrl-C to stop early\n",
		comm, pid, o.duration, o.interval)
	tty := budgetIsTerminal(os.Stderr)
	progress := func() {
		if tty {
			fmt.Fprintf(os.Stderr, "\r\033[K%s of %s: %d samples, %d fds open, at most %d",
				min(time.Since(start), o.duration).Truncate(100*time.Millisecond), o.duration, b.Samples(), open, b.PeakOpen())
		}
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	end := time.NewTimer(o.duration)
	defer end.Stop()
	exited, interrupted := false, false
loop:
	for {
		var err error
		select {
		case <-ctx.Done():
			interrupted = true
			break loop
		case <-end.C:
			if err = sample(); err == nil {
				break loop
			}
		case <-tick.C:
			err = sample()
			progress()
		}
		if errors.Is(err, procfs.ErrNoProcess) {
			exited = true
			break loop
		}
		if err != nil {
			return err
		}
	}
	if tty {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
	stop()
	elapsed := time.Since(start).Round(100 * time.Millisecond)
	switch {
	case exited:
		fmt.Fprintf(os.Stderr, "fdtrace: pid %d exited after %s: the budget covers that time only\n", pid, elapsed)
	case interrupted:
		fmt.Fprintf(os.Stderr, "fdtrace: stopped after %s: the budget covers that time only\n", elapsed)
	}
	if !exited {
		if s, h, err := procfs.FDLimit(pid); err == nil {
			soft, hard = s, h
		}
	}
	rec := b.Record(pid, comm, o.interval, o.margin, snapshot.Limits{Soft: soft, Hard: hard})
	rec.Exited, rec.Interrupted = exited, interrupted
	if o.json {
		line, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", line)
		return err
	}
	return snapshot.WriteBudgetText(w, rec)
}

func budgetIsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
