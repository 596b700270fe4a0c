package metrics

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
)

type fakeSource struct {
	procs     []loader.Counters
	totals    loader.Totals
	stats     events.Stats
	reads     int
	broken    error // of EachCounters
	totalsErr error
}

func (f *fakeSource) EachCounters(fn func(*loader.Counters)) error {
	f.reads++
	if f.broken != nil {
		return f.broken
	}
	for i := range f.procs {
		c := f.procs[i]
		fn(&c)
	}
	return nil
}

func (f *fakeSource) Totals() (loader.Totals, error) { return f.totals, f.totalsErr }

// errCount is a host-wide count of a syscall's failures with an errno, by
// name.
func errCount(syscall, errno string, n uint64) loader.ErrorCount {
	e := loader.ErrorCount{Count: n}
	for i := range events.NumSyscalls {
		if events.Syscall(i).String() == syscall {
			e.Syscall = events.Syscall(i)
		}
	}
	for n := range 200 {
		if events.ErrnoName(n) == errno {
			e.Errno = n
		}
	}
	return e
}

func (f *fakeSource) Stats() (events.Stats, error) { return f.stats, nil }

type fakeSystem struct {
	limits     map[int]uint64
	limitReads map[int]int
	cgroups    map[int]string
	alive      map[int]bool
}

func newSystem() *fakeSystem {
	return &fakeSystem{limits: map[int]uint64{}, limitReads: map[int]int{}, cgroups: map[int]string{}, alive: map[int]bool{}}
}

func (f *fakeSystem) Limit(pid int) (uint64, error) {
	f.limitReads[pid]++
	l, ok := f.limits[pid]
	if !ok {
		return 0, errors.New("gone")
	}
	return l, nil
}

func (f *fakeSystem) Cgroup(pid int) (string, error)  { return f.cgroups[pid], nil }
func (f *fakeSystem) FileNr() (uint64, uint64, error) { return 1234, 99999, nil }
func (f *fakeSystem) Exists(pid int) bool             { return f.alive[pid] }

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func proc(pid int, comm string, open int64) loader.Counters {
	return loader.Counters{PID: pid, StartNs: uint64(pid) * 1000, Comm: comm, OpenFDs: open}
}

// scrape gathers the collector: metric name → labels ("k=v,...") → value.
func scrape(t *testing.T, c *Collector) map[string]map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range families {
		out[mf.GetName()] = map[string]float64{}
		for _, m := range mf.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[mf.GetName()][strings.Join(labels, ",")] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestTheTopProcessesByUtilizationGetSeriesAndTheRestIsSummed(t *testing.T) {
	src := &fakeSource{procs: []loader.Counters{
		proc(10, "quiet", 5), proc(11, "busy", 900), proc(12, "tight", 60), proc(13, "big", 5000),
	}}
	sys := newSystem()
	sys.limits = map[int]uint64{10: 1024, 11: 1024, 12: 64, 13: 1 << 20}
	sys.cgroups[12] = "/system.slice/docker-" + strings.Repeat("ab", 32) + ".scope"
	got := scrape(t, New(src, Options{Top: 2, System: sys}))

	tight := "cgroup=/system.slice/docker-" + strings.Repeat("ab", 32) + ".scope,comm=tight,container=abababababab,pid=12"
	busy := "cgroup=,comm=busy,container=,pid=11"
	want := map[string]map[string]float64{
		"fdtrace_process_open_fds":                         {tight: 60, busy: 900},
		"fdtrace_process_fd_limit":                         {tight: 64, busy: 1024},
		"fdtrace_process_fd_utilization_ratio":             {tight: 60.0 / 64, busy: 900.0 / 1024},
		"fdtrace_processes":                                {"": 4},
		"fdtrace_open_fds":                                 {"": 5965},
		"fdtrace_other_processes":                          {"": 2},
		"fdtrace_other_processes_open_fds":                 {"": 5005},
		"fdtrace_other_processes_max_fd_utilization_ratio": {"": 5.0 / 1024},
		"fdtrace_system_files_allocated":                   {"": 1234},
		"fdtrace_system_files_max":                         {"": 99999},
	}
	for name, series := range want {
		if !maps.Equal(got[name], series) {
			t.Errorf("%s = %v, want %v", name, got[name], series)
		}
	}
	// Every other process's limit is read once, when first seen.
	for pid, n := range sys.limitReads {
		if n != 1 {
			t.Errorf("limit of pid %d read %d times", pid, n)
		}
	}
}

func TestOnlyTheTopProcessesLimitsAreReadAgain(t *testing.T) {
	src := &fakeSource{procs: []loader.Counters{proc(10, "a", 900), proc(11, "b", 10)}}
	sys := newSystem()
	sys.limits = map[int]uint64{10: 1024, 11: 1024}
	clk := &clock{time.Unix(1000, 0)}
	c := New(src, Options{Top: 1, System: sys, Now: clk.now})
	scrape(t, c)
	clk.add(limitTTL)
	sys.limits[10] = 2048
	got := scrape(t, c)
	if n := sys.limitReads[10]; n != 2 {
		t.Errorf("top process's limit read %d times, want 2", n)
	}
	if n := sys.limitReads[11]; n != 1 {
		t.Errorf("other process's limit read %d times, want 1", n)
	}
	if v := got["fdtrace_process_fd_limit"]["cgroup=,comm=a,container=,pid=10"]; v != 2048 {
		t.Errorf("limit %v after prlimit, want 2048", v)
	}
}

func TestScrapesWithinTheCacheTimeReadTheMapsOnce(t *testing.T) {
	src := &fakeSource{procs: []loader.Counters{proc(10, "a", 3)}}
	clk := &clock{time.Unix(1000, 0)}
	c := New(src, Options{System: newSystem(), Now: clk.now, CacheFor: time.Second})
	scrape(t, c)
	clk.add(999 * time.Millisecond)
	scrape(t, c)
	if src.reads != 1 {
		t.Fatalf("%d reads of the maps within the cache time, want 1", src.reads)
	}
	clk.add(time.Millisecond)
	scrape(t, c)
	if src.reads != 2 {
		t.Fatalf("%d reads of the maps after the cache time, want 2", src.reads)
	}
}

// The counters are the kernel's host-wide totals, not a sum over the
// processes in the maps: a process that leaves the maps without an exit
// record (the ring buffer was full) takes nothing away from them.
func TestCountersAreTheKernelsTotalsAndStayWhenProcessesLeaveTheMapsWithoutAnExitRecord(t *testing.T) {
	a, b := proc(10, "a", 3), proc(11, "b", 1)
	a.Refused, a.EMFILE, b.EMFILE = 2, 2, 1 // what the maps still hold of them
	src := &fakeSource{procs: []loader.Counters{a, b},
		totals: loader.Totals{EMFILE: 7, ENFILE: 1, Refused: 4,
			Errors: []loader.ErrorCount{errCount("accept4", "EMFILE", 4), errCount("openat", "EMFILE", 3),
				errCount("openat", "ENFILE", 1), errCount("openat", "ENOENT", 9)},
			Ports: []loader.PortCounts{{Port: 8080, Refused: 4, Dropped: 1}, {Port: 9090, Refused: 0, Dropped: 0}}},
		stats: events.Stats{LostEvents: 5, ProcsMapFull: 1, KernelDrift: 3}}
	clk := &clock{time.Unix(1000, 0)}
	c := New(src, Options{System: newSystem(), Now: clk.now})
	want := map[string]map[string]float64{
		"fdtrace_fd_errors_total": {"errno=EMFILE,syscall=accept4": 4, "errno=EMFILE,syscall=openat": 3,
			"errno=ENFILE,syscall=openat": 1, "errno=ENOENT,syscall=openat": 9},
		"fdtrace_fd_limit_failures_total":               {"errno=EMFILE": 7, "errno=ENFILE": 1},
		"fdtrace_refused_connections_total":             {"": 4},
		"fdtrace_listen_port_refused_connections_total": {"port=8080": 4},
		"fdtrace_listen_port_dropped_connections_total": {"port=8080": 1},
		"fdtrace_lost_events_total":                     {"": 5},
		"fdtrace_kernel_drift_total":                    {"": 3},
		"fdtrace_processes":                             {"": 2},
	}
	check := func(when string) {
		t.Helper()
		got := scrape(t, c)
		for name, series := range want {
			if !maps.Equal(got[name], series) {
				t.Errorf("%s: %s = %v, want %v", when, name, got[name], series)
			}
		}
		if v := got["fdtrace_map_full_total"]["map=procs"]; v != 1 {
			t.Errorf("%s: procs map full %v, want 1", when, v)
		}
		clk.add(time.Second)
	}
	check("live")

	// Both exit and their records are lost: they leave the maps, and
	// nothing is observed.
	src.procs = nil
	want["fdtrace_processes"][""] = 0
	check("after the exits")

	// The kernel counts on: the counters follow its totals.
	src.totals.EMFILE++
	src.totals.Errors[1].Count++
	want["fdtrace_fd_limit_failures_total"]["errno=EMFILE"] = 8
	want["fdtrace_fd_errors_total"]["errno=EMFILE,syscall=openat"] = 4
	check("after one more failure")
}

func TestAFailedTotalsReadFailsOnlyTheCounters(t *testing.T) {
	src := &fakeSource{procs: []loader.Counters{proc(10, "a", 3)}, totalsErr: errors.New("reading totals map: boom")}
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(src, Options{System: newSystem()}))
	families, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("gather error %v, want the map's", err)
	}
	var names []string
	for _, mf := range families {
		names = append(names, mf.GetName())
	}
	for _, name := range []string{"fdtrace_open_fds", "fdtrace_lost_events_total"} {
		if !slices.Contains(names, name) {
			t.Errorf("%s went too: %v", name, names)
		}
	}
	if slices.Contains(names, "fdtrace_fd_limit_failures_total") {
		t.Errorf("limit failures served without the totals: %v", names)
	}
}

func TestASeedStandsForAnIdleProcessUntilTheKernelCountsIt(t *testing.T) {
	src := &fakeSource{}
	sys := newSystem()
	sys.limits = map[int]uint64{20: 100, 21: 100}
	sys.alive = map[int]bool{20: true, 21: true}
	clk := &clock{time.Unix(1000, 0)}
	c := New(src, Options{Top: 5, System: sys, Now: clk.now,
		Seeds: []Seed{{PID: 20, Comm: "idle", OpenFDs: 80}, {PID: 21, Comm: "gone", OpenFDs: 9}}})
	got := scrape(t, c)
	if v := got["fdtrace_process_fd_utilization_ratio"]["cgroup=,comm=idle,container=,pid=20"]; v != 0.8 {
		t.Errorf("seeded utilization %v, want 0.8", v)
	}
	clk.add(time.Second)
	delete(sys.alive, 21)
	src.procs = []loader.Counters{proc(20, "idle", 81)}
	got = scrape(t, c)
	want := map[string]float64{"cgroup=,comm=idle,container=,pid=20": 81}
	if !maps.Equal(got["fdtrace_process_open_fds"], want) {
		t.Errorf("open fds %v, want %v", got["fdtrace_process_open_fds"], want)
	}
}

func TestAFailedMapReadFailsOnlyItsMetrics(t *testing.T) {
	src := &fakeSource{broken: errors.New("reading procs map: boom")}
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(src, Options{System: newSystem()}))
	families, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("gather error %v, want the map's", err)
	}
	var names []string
	for _, mf := range families {
		names = append(names, mf.GetName())
	}
	if !slices.Contains(names, "fdtrace_lost_events_total") {
		t.Errorf("the other metrics went too: %v", names)
	}
}

func TestTheMetricsFollowPrometheusNamingRules(t *testing.T) {
	src := &fakeSource{procs: []loader.Counters{proc(10, "a", 3)},
		totals: loader.Totals{EMFILE: 1, Errors: []loader.ErrorCount{errCount("socket", "EMFILE", 1)},
			Ports: []loader.PortCounts{{Port: 80, Refused: 1, Dropped: 1}}}}
	sys := newSystem()
	sys.limits[10] = 10
	problems, err := testutil.CollectAndLint(New(src, Options{System: sys}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
