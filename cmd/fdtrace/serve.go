package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
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

// listen binds the address before the tracer loads: a port in use fails
// at once.
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
	collector *metrics.Collector
	srv       *http.Server
}

// serveMetrics serves /metrics on ln (nil: nothing) and says where on
// stderr.
func serveMetrics(ln net.Listener, t *loader.Tracer, o metricsOptions, seeds []metrics.Seed) *metricsServer {
	if ln == nil {
		return nil
	}
	c := metrics.New(t, metrics.Options{Top: o.top, Seeds: seeds})
	errLog := log.New(os.Stderr, "fdtrace: metrics: ", 0)
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(c, errLog))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `fdtrace: metrics at /metrics`)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	go srv.Serve(ln)
	fmt.Fprintf(os.Stderr, "fdtrace: serving metrics at http://%s/metrics\n", ln.Addr())
	return &metricsServer{collector: c, srv: srv}
}

// observe hands the records to the collector (for the counters of exited
// processes) on their way to h.
func (m *metricsServer) observe(h loader.Handler) loader.Handler {
	if m == nil {
		return h
	}
	return func(r events.Record) error {
		m.collector.Observe(r)
		return h(r)
	}
}

func (m *metricsServer) close() error {
	if m == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.srv.Shutdown(ctx)
}

// metricsSeeds are the traced processes as /proc shows them at start,
// until the kernel counts them; none for a command fdtrace starts.
func metricsSeeds(pids []int, comm string, command []string) []metrics.Seed {
	if len(command) > 0 {
		return nil
	}
	all := len(pids) > 0
	if !all {
		pids, _ = top.Proc{}.PIDs()
	}
	self := os.Getpid()
	keep := func(pid int, c string) bool { return pid != self && (comm == "" || c == comm) }
	var seeds []metrics.Seed
	for _, s := range top.SeedSamples(pids, keep, all) {
		seeds = append(seeds, metrics.Seed{PID: s.PID, Comm: s.Comm, OpenFDs: s.OpenFDs})
	}
	return seeds
}

type serveOptions struct {
	metricsOptions
	pids      []int
	comm      string
	duration  time.Duration
	readyFile string
	btfPath   string
	debug     bool
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
fdtrace's own losses and corrections, which keep the counts of processes
that exited; and /proc/sys/fs/file-nr. A process's limit is read when it is
first seen and every 5s while it is in the top N; its cgroup only while it
is in the top N, at most every 10s.

docs/metrics.md lists every metric, and deploy/prometheus has alert rules
for them; docs/deployment.md runs serve as a service. fdtrace trace
--metrics-addr serves the same metrics while it traces.`,
		Example: `  # every process on the host, for Prometheus on port 9464
  fdtrace serve

  # one service's processes, the 5 fullest with series of their own
  fdtrace serve -c nginx --metrics-addr 127.0.0.1:9464 --metrics-top 5

  # a free port, said on stderr
  fdtrace serve --metrics-addr 127.0.0.1:0`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unexpected argument %q", args[0])}
			}
			return runServe(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntSliceVarP(&o.pids, "pid", "p", nil, "serve the metrics of this process (repeatable, or comma-separated)")
	f.StringVarP(&o.comm, "comm", "c", "", "serve the metrics of processes with this name (as in /proc/PID/comm)")
	o.addFlags(f, ":9464", "listen on `ADDR` (HOST:PORT; port 0 picks a free one)")
	f.DurationVarP(&o.duration, "duration", "d", 0, "stop after this long (e.g. 30s, 5m); default: until Ctrl-C or SIGTERM")
	f.StringVar(&o.readyFile, "ready-file", "", "write fdtrace's pid to `FILE` once it serves")
	f.StringVar(&o.btfPath, "btf", "", "kernel BTF `FILE`, for kernels without /sys/kernel/btf/vmlinux")
	f.BoolVar(&o.debug, "debug", false, "print the full BPF verifier log on load errors")
	f.SortFlags = false
	return cmd
}

func (o serveOptions) validate() error {
	if o.addr == "" {
		return usageError{errors.New("--metrics-addr must not be empty")}
	}
	if o.duration < 0 {
		return usageError{errors.New("--duration must be positive")}
	}
	for _, pid := range o.pids {
		if pid <= 0 {
			return usageError{fmt.Errorf("--pid %d: not a process id", pid)}
		}
	}
	return o.metricsOptions.validate()
}

func runServe(parent context.Context, o serveOptions) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	ln, err := o.listen()
	if err != nil {
		return err
	}
	defer ln.Close()
	tr, err := loadCounting(o.pids, o.comm, o.btfPath, o.debug)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := tr.Close(); err == nil {
			err = cerr
		}
	}()
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	srv := serveMetrics(ln, tr, o.metricsOptions, metricsSeeds(o.pids, o.comm, nil))
	defer srv.close()
	if o.readyFile != "" {
		if err := os.WriteFile(o.readyFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return err
		}
	}
	return tr.Run(ctx, srv.observe(func(events.Record) error { return nil }))
}
