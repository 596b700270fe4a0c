package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/metrics"
	"github.com/fdtrace/fdtrace/internal/top"
)

// metricsOptions are the flags of the Prometheus endpoint.
type metricsOptions struct {
	addr string
	top  int
}

func (m *metricsOptions) addFlags(f *pflag.FlagSet, defaultAddr, addrUsage string) {
	f.StringVar(&m.addr, "metrics-addr", defaultAddr, addrUsage)
	f.IntVar(&m.top, "metrics-top", metrics.DefaultTop, "give series of their own to the `N` processes highest in fd utilization; the rest are summed (0: none)")
}

func (m metricsOptions) validate() error {
	if m.top < 0 {
		return usageError{fmt.Errorf("--metrics-top %d: must not be negative", m.top)}
	}
	if m.addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(m.addr)
	if err == nil {
		var n uint64
		if n, err = strconv.ParseUint(port, 10, 16); err == nil && port != strconv.FormatUint(n, 10) {
			err = errors.New("bad port")
		}
	}
	if err != nil {
		return usageError{fmt.Errorf("--metrics-addr %q: want HOST:PORT, :PORT or 127.0.0.1:0", m.addr)}
	}
	return nil
}

// listen binds --metrics-addr; nil without one.
func (m metricsOptions) listen() (net.Listener, error) {
	if m.addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", m.addr, errors.Unwrap(err))
	}
	return ln, nil
}

// metricsServer serves a tracer's metrics over HTTP.
type metricsServer struct {
	srv *http.Server
}

// metricsSource is what the collector reads: the kernel's counters and
// totals, and the session's stats.
type metricsSource struct {
	*loader.Kernel
	s *session
}

func (m metricsSource) Stats() (events.Stats, error) { return m.s.Stats() }

// serveMetrics serves /metrics on ln (nil: nothing) and says where on
// stderr.
func serveMetrics(ln net.Listener, s *session, o metricsOptions, seeds []metrics.Seed) *metricsServer {
	if ln == nil {
		return nil
	}
	c := metrics.New(metricsSource{s.tracer.Kernel(), s}, metrics.Options{Top: o.top, Seeds: seeds})
	errLog := log.New(os.Stderr, "fdtrace: metrics: ", 0)
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(c, errLog))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `fdtrace: metrics at /metrics`)
	})
	srv := metrics.Serve(ln, mux, metrics.DefaultLimits, errLog)
	fmt.Fprintf(os.Stderr, "fdtrace: serving metrics at http://%s/metrics\n", ln.Addr())
	return &metricsServer{srv: srv}
}

func (m *metricsServer) close() error {
	if m == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.srv.Shutdown(ctx)
}

// metricsSeeds are the processes as /proc showed them at start, for the
// metrics until the kernel counts them.
func metricsSeeds(samples []top.Sample) []metrics.Seed {
	var seeds []metrics.Seed
	for _, s := range samples {
		seeds = append(seeds, metrics.Seed{PID: s.PID, Comm: s.Comm, OpenFDs: s.OpenFDs})
	}
	return seeds
}

type serveOptions struct {
	target  targetFlags
	metrics metricsOptions
	run     runFlags
}

func newServeCommand() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [-p PID]... [-c COMM] [--metrics-addr ADDR] [--metrics-top N]",
		Short: "Serve Prometheus metrics of fd usage, errors and refused connections",
		Long: `Serve Prometheus metrics at http://ADDR/metrics, read from the kernel's
counters when Prometheus scrapes: there is no polling loop, and one reading
answers the scrapes of the next second. The tracer runs in its cheapest
mode, counting only, as fdtrace top does; no records are written. The
address in use is printed on stderr.

The N processes highest in fd utilization (--metrics-top) get series of
their own, labelled pid, comm, cgroup (from /proc/PID/cgroup) and
container (the short id a container runtime put in the cgroup's name):

    fdtrace_process_open_fds
    fdtrace_process_fd_limit                (soft, ulimit -n)
    fdtrace_process_fd_utilization_ratio    (open fds / limit)

The rest are summed, so the number of series stays bounded:

    fdtrace_other_processes
    fdtrace_other_processes_open_fds
    fdtrace_other_processes_max_fd_utilization_ratio

Host-wide, without process labels: fdtrace_processes and fdtrace_open_fds;
the counters of failed syscalls (by syscall and errno), of refused
connections (in all, and refused and dropped by listening port) and of
fdtrace's own losses and corrections: the kernel's counts since fdtrace
attached, which keep those of the processes that exited, their exit
records read or lost; and /proc/sys/fs/file-nr. A process's limit is read
when it is first seen and every 5s while it is in the top N; its cgroup
only while it is in the top N, at most every 10s.

docs/metrics.md lists every metric, and deploy/prometheus has alert rules
for them; docs/deployment.md runs serve as a service. fdtrace trace
--metrics-addr serves the same metrics while it traces.`,
		Example: `  # every process on the host, on 127.0.0.1:9464
  fdtrace serve

  # for a Prometheus on another host: every interface, port 9464
  fdtrace serve --metrics-addr :9464

  # one service's processes, the 5 fullest with series of their own
  fdtrace serve -c nginx --metrics-top 5

  # a free port, said on stderr
  fdtrace serve --metrics-addr 127.0.0.1:0`,
		Args: noPositionalArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	o.target.addFlags(f, "serve the metrics of", !withCgroup)
	o.metrics.addFlags(f, "127.0.0.1:9464", "listen on `ADDR` (HOST:PORT; port 0 picks a free one; :9464 for every interface)")
	o.run.addFlags(f, "once it serves")
	f.SortFlags = false
	return cmd
}

func runServe(parent context.Context, o serveOptions) (err error) {
	if o.metrics.addr == "" {
		return usageError{errors.New("--metrics-addr must not be empty")}
	}
	s, err := startSession(parent, sessionSpec{target: o.target, config: countingConfig(), run: o.run, metrics: &o.metrics,
		dropReading: true})
	if err != nil {
		return err
	}
	defer closeInto(&err, s.close)
	return s.run(func(events.Record) error { return nil })
}
