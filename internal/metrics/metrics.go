// Package metrics serves the kernel's fd counters as Prometheus metrics,
// read from the tracer's maps when Prometheus scrapes.
package metrics

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/sanitize"
)

// Source is what the collector reads: the kernel's per-process counters
// and host-wide totals (a *loader.Kernel), and the tracer's stats.
type Source interface {
	EachCounters(fn func(c *loader.Counters)) error
	Totals() (loader.Totals, error)
	Stats() (events.Stats, error)
}

// Seed is a process as /proc showed it at start: it stands for the
// process until the kernel counts it (its first fd syscall).
type Seed struct {
	PID     int
	Comm    string
	OpenFDs int64
}

// Options tune a Collector; the zero value is usable.
type Options struct {
	// Top is how many processes, the highest by utilization, get series
	// of their own (0: none).
	Top int
	// CacheFor is how long one reading of the maps answers scrapes
	// (DefaultCacheFor if 0).
	CacheFor time.Duration
	Seeds    []Seed
	System   System // nil: the real /proc
	Now      func() time.Time
}

const (
	DefaultTop      = 20
	DefaultCacheFor = time.Second
	// limitTTL: how often the limit of a top process is read again
	// (prlimit may change it); others keep the one read when first seen.
	limitTTL = 5 * time.Second
	// cgroupTTL: runtimes move a process into its cgroup after the fork.
	cgroupTTL = 10 * time.Second
)

// Collector is a prometheus.Collector over the tracer's maps: the gauges
// from the live processes' counters, the counters from the kernel's
// host-wide totals and the tracer's stats.
type Collector struct {
	src      Source
	sys      System
	top      int
	cacheFor time.Duration
	now      func() time.Time

	scrape   sync.Mutex // guards the fields below
	cached   []prometheus.Metric
	cachedAt time.Time
	seeds    map[int]Seed
	limits   map[loader.ProcKey]stamped[uint64]
	cgroups  map[loader.ProcKey]stamped[string]
}

type stamped[T any] struct {
	v  T
	at time.Time
}

// New makes a collector reading src.
func New(src Source, o Options) *Collector {
	c := &Collector{src: src, sys: o.System, top: max(o.Top, 0),
		cacheFor: cmp.Or(o.CacheFor, DefaultCacheFor), now: o.Now,
		seeds: map[int]Seed{}, limits: map[loader.ProcKey]stamped[uint64]{},
		cgroups: map[loader.ProcKey]stamped[string]{}}
	if c.sys == nil {
		c.sys = Proc{}
	}
	if c.now == nil {
		c.now = time.Now
	}
	for _, s := range o.Seeds {
		c.seeds[s.PID] = s
	}
	return c
}

// Handler serves the collector, with the Go runtime's and fdtrace's own
// process metrics, in Prometheus's exposition formats.
func Handler(c *Collector, errorLog promhttp.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, ErrorLog: errorLog})
}

var processLabels = []string{"pid", "comm", "cgroup", "container"}

// The counters of failures are the kernel's host-wide totals. Those by
// port are counted only for the processes in the kernel's maps: a refused
// accept needs its process's entry to find its port, a dropped connection
// its port's per-process entry (the drain it ends).
const (
	hostWide      = "host-wide totals since fdtrace attached, exact even when per-process maps are full or exit records are lost."
	hostWidePorts = "host-wide totals since fdtrace attached, exact even when exit records are lost; " +
		"the accepts of processes missing from full maps are not counted (fdtrace_map_full_total)."
)

// Metric describes one of the metrics fdtrace serves.
type Metric struct {
	Name   string
	Type   string // "gauge" or "counter"
	Help   string
	Labels []string
}

const (
	gaugeType   = "gauge"
	counterType = "counter"
)

// served and allDescs are the metrics in the order they are declared
// below: describe appends to them.
var (
	served   []Metric
	allDescs []*prometheus.Desc
)

func describe(typ, name, help string, labels []string) *prometheus.Desc {
	d := prometheus.NewDesc(name, help, labels, nil)
	served = append(served, Metric{Name: name, Type: typ, Help: help, Labels: labels})
	allDescs = append(allDescs, d)
	return d
}

// Metrics lists the metrics fdtrace serves, besides the Go runtime's
// go_* and its own process_* (docs/metrics.md is made from it).
func Metrics() []Metric { return slices.Clone(served) }

var (
	descOpen = describe(gaugeType, "fdtrace_process_open_fds",
		"Open file descriptors of a process (one of the top --metrics-top by utilization).", processLabels)
	descLimit = describe(gaugeType, "fdtrace_process_fd_limit",
		"Soft RLIMIT_NOFILE of a process (ulimit -n).", processLabels)
	descUtil = describe(gaugeType, "fdtrace_process_fd_utilization_ratio",
		"Open file descriptors of a process over its soft limit.", processLabels)
	descProcs = describe(gaugeType, "fdtrace_processes",
		"Traced processes fdtrace counts the fds of.", nil)
	descOpenAll = describe(gaugeType, "fdtrace_open_fds",
		"Open file descriptors of every traced process, summed.", nil)
	descOthers = describe(gaugeType, "fdtrace_other_processes",
		"Traced processes without series of their own (beyond the top --metrics-top).", nil)
	descOthersOpen = describe(gaugeType, "fdtrace_other_processes_open_fds",
		"Open file descriptors of the processes without series of their own, summed.", nil)
	descOthersUtil = describe(gaugeType, "fdtrace_other_processes_max_fd_utilization_ratio",
		"The highest utilization among the processes without series of their own.", nil)
	descErrors = describe(counterType, "fdtrace_fd_errors_total",
		"Failed fd-creating syscalls of the traced processes, by syscall and errno (every errno, not only EMFILE and ENFILE): "+hostWide,
		[]string{"syscall", "errno"})
	descLimitFailures = describe(counterType, "fdtrace_fd_limit_failures_total",
		"fd-creating syscalls of the traced processes that failed for lack of fds: EMFILE (a process's limit) and ENFILE (the system's): "+hostWide,
		[]string{"errno"})
	descRefused = describe(counterType, "fdtrace_refused_connections_total",
		"Accepts that failed for lack of fds or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): "+hostWide, nil)
	descPortRefused = describe(counterType, "fdtrace_listen_port_refused_connections_total",
		"Refused connections by listening port: "+hostWidePorts, []string{"port"})
	descPortDropped = describe(counterType, "fdtrace_listen_port_dropped_connections_total",
		"Connections accepted after a refusal and closed untouched (a runtime draining its listen queue), by listening port: "+hostWidePorts,
		[]string{"port"})
	descLost = describe(counterType, "fdtrace_lost_events_total",
		"Records the kernel could not write because the ring buffer was full.", nil)
	descMapFull = describe(counterType, "fdtrace_map_full_total",
		"Times a kernel map was full, by map: its counts are incomplete from then on.", []string{"map"})
	descDrift = describe(counterType, "fdtrace_kernel_drift_total",
		"fds by which a count was corrected from its process's fd table (fds whose creation or close fdtrace did not see).", nil)
	descReconciled = describe(counterType, "fdtrace_reconciled_fds_total",
		"Inherited fds of forked children read from /proc because the kernel could not copy them.", nil)
	descUnswept = describe(counterType, "fdtrace_unswept_fds_total",
		"fds beyond the bounded loops of the compat programs (kernels without bpf_loop): their records and counts may be off.", nil)
	descOutputDropped = describe(counterType, "fdtrace_output_dropped_records_total",
		"Records that writes to trace's -o FILE failed to write (a full disk): dropped while tracing went on.", nil)
	descFilesAlloc = describe(gaugeType, "fdtrace_system_files_allocated",
		"Files allocated system-wide (the first field of /proc/sys/fs/file-nr).", nil)
	descFilesMax = describe(gaugeType, "fdtrace_system_files_max",
		"System-wide file limit (fs.file-max), beyond which opens fail with ENFILE.", nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads the maps, unless it
// did less than CacheFor ago.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.reading() {
		ch <- m
	}
}

// reading is the last reading of the maps, or a new one past CacheFor.
func (c *Collector) reading() []prometheus.Metric {
	c.scrape.Lock()
	defer c.scrape.Unlock()
	now := c.now()
	if c.cached == nil || now.Sub(c.cachedAt) >= c.cacheFor {
		c.cached, c.cachedAt = c.read(now), now
	}
	return c.cached
}

type row struct {
	key   loader.ProcKey
	comm  string
	open  int64
	limit uint64
	util  float64
}

// metricSet gathers one reading's metrics.
type metricSet struct {
	ms []prometheus.Metric
}

func (s *metricSet) gauge(d *prometheus.Desc, v float64, labels ...string) {
	s.add(d, prometheus.GaugeValue, v, labels)
}

// add appends a metric; one that cannot be made fails alone, rather than
// the scrape (its labels are sanitized: this is a bug, not input).
func (s *metricSet) add(d *prometheus.Desc, t prometheus.ValueType, v float64, labels []string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	s.ms = append(s.ms, m)
}

// counter exports a counter as read, with no guard against it going
// down: none needs one. Each comes from a count that only grows while
// fdtrace runs and that no exit takes away: the kernel's host-wide totals
// (per-CPU sums, and map entries never deleted), its stats and fdtrace's
// own.
func (s *metricSet) counter(d *prometheus.Desc, v float64, labels ...string) {
	s.add(d, prometheus.CounterValue, v, labels)
}

func (s *metricSet) fail(d *prometheus.Desc, err error) {
	s.ms = append(s.ms, prometheus.NewInvalidMetric(d, err))
}

func (c *Collector) read(now time.Time) []prometheus.Metric {
	s := &metricSet{}
	rows, err := c.rows(now)
	if err != nil {
		s.fail(descOpen, err)
	} else {
		c.processes(s, rows, now)
	}
	c.totals(s)

	if st, err := c.src.Stats(); err != nil {
		s.fail(descLost, err)
	} else {
		s.counter(descLost, float64(st.LostEvents))
		for name, v := range map[string]uint64{"fds": st.FDsMapFull, "procs": st.ProcsMapFull,
			"errors": st.ErrorsMapFull, "ports": st.PortsMapFull, "stacks": st.StacksFull} {
			s.counter(descMapFull, float64(v), name)
		}
		s.counter(descDrift, float64(st.KernelDrift))
		s.counter(descReconciled, float64(st.ReconciledFDs))
		s.counter(descUnswept, float64(st.Unswept))
		s.counter(descOutputDropped, float64(st.OutputDropped))
	}
	if alloc, maxFiles, err := c.sys.FileNr(); err != nil {
		s.fail(descFilesAlloc, err)
	} else {
		s.gauge(descFilesAlloc, float64(alloc))
		s.gauge(descFilesMax, float64(maxFiles))
	}
	return s.ms
}

// rows are the traced processes: the kernel's counters, and the seeds of
// the processes it has not counted yet.
func (c *Collector) rows(now time.Time) ([]row, error) {
	var rows []row
	counted := map[int]bool{}
	err := c.src.EachCounters(func(k *loader.Counters) {
		counted[k.PID] = true
		rows = append(rows, row{key: loader.ProcKey{PID: k.PID, StartNs: k.StartNs}, comm: k.Comm,
			open: k.OpenFDs})
	})
	if err != nil {
		return nil, err
	}
	for pid, seed := range c.seeds {
		switch {
		case counted[pid]:
			delete(c.seeds, pid) // the kernel's count from now on
		case !c.sys.Exists(pid):
			delete(c.seeds, pid)
		default:
			rows = append(rows, row{key: loader.ProcKey{PID: pid}, comm: seed.Comm, open: seed.OpenFDs})
		}
	}
	live := map[loader.ProcKey]bool{}
	for i := range rows {
		r := &rows[i]
		live[r.key] = true
		l, ok := c.limits[r.key]
		if !ok {
			l = c.readLimit(r.key, now)
		}
		r.limit, r.util = l.v, events.Utilization(r.open, l.v)
	}
	for k := range c.limits {
		if !live[k] {
			delete(c.limits, k)
		}
	}
	for k := range c.cgroups {
		if !live[k] {
			delete(c.cgroups, k)
		}
	}
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(b.util, a.util), cmp.Compare(b.open, a.open), cmp.Compare(a.key.PID, b.key.PID))
	})
	return rows, nil
}

func (c *Collector) readLimit(k loader.ProcKey, now time.Time) stamped[uint64] {
	v, err := c.sys.Limit(k.PID)
	if err != nil {
		v = c.limits[k].v // gone: as it was
	}
	l := stamped[uint64]{v, now}
	c.limits[k] = l
	return l
}

func (c *Collector) processes(s *metricSet, rows []row, now time.Time) {
	var total, othersOpen int64
	var othersUtil float64
	for i := range rows {
		r := &rows[i]
		total += r.open
		if i >= c.top {
			othersOpen += r.open
			othersUtil = max(othersUtil, r.util)
			continue
		}
		if now.Sub(c.limits[r.key].at) >= limitTTL {
			l := c.readLimit(r.key, now)
			r.limit, r.util = l.v, events.Utilization(r.open, l.v)
		}
		cg := c.cgroup(r.key, now)
		labels := []string{strconv.Itoa(r.key.PID), sanitize.Text(r.comm), sanitize.Text(cg), procfs.ContainerID(cg)}
		s.gauge(descOpen, float64(r.open), labels...)
		if r.limit != 0 && r.limit != ^uint64(0) {
			s.gauge(descLimit, float64(r.limit), labels...)
			s.gauge(descUtil, r.util, labels...)
		}
	}
	s.gauge(descProcs, float64(len(rows)))
	s.gauge(descOpenAll, float64(total))
	s.gauge(descOthers, float64(max(0, len(rows)-c.top)))
	s.gauge(descOthersOpen, float64(othersOpen))
	s.gauge(descOthersUtil, othersUtil)
}

func (c *Collector) cgroup(k loader.ProcKey, now time.Time) string {
	if e, ok := c.cgroups[k]; ok && now.Sub(e.at) < cgroupTTL {
		return e.v
	}
	cg, err := c.sys.Cgroup(k.PID)
	if err != nil {
		cg = c.cgroups[k].v
	}
	c.cgroups[k] = stamped[string]{cg, now}
	return cg
}

// totals exports the host-wide counters: the kernel's totals since it
// attached, which exits do not take away, exit records read or lost.
func (c *Collector) totals(s *metricSet) {
	t, err := c.src.Totals()
	if err != nil {
		for _, d := range []*prometheus.Desc{descErrors, descLimitFailures, descRefused, descPortRefused, descPortDropped} {
			s.fail(d, err)
		}
		return
	}
	for _, e := range t.Errors {
		s.counter(descErrors, float64(e.Count), e.Syscall.String(), events.ErrnoName(e.Errno))
	}
	s.counter(descLimitFailures, float64(t.EMFILE), "EMFILE")
	s.counter(descLimitFailures, float64(t.ENFILE), "ENFILE")
	s.counter(descRefused, float64(t.Refused))
	for _, p := range t.Ports {
		port := strconv.Itoa(int(p.Port))
		if p.Refused > 0 {
			s.counter(descPortRefused, float64(p.Refused), port)
		}
		if p.Dropped > 0 {
			s.counter(descPortDropped, float64(p.Dropped), port)
		}
	}
}
