package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// metricsEndpoint is a running fdtrace serving metrics.
type metricsEndpoint struct {
	cmd    *exec.Cmd
	url    string
	stderr *testutil.LockedBuffer
}

var servingAt = regexp.MustCompile(`fdtrace: serving metrics at (http://\S+/metrics)\n`)

// startMetrics runs fdtrace with args (which bind port 0) and waits for
// the address it says it serves at.
func startMetrics(t *testing.T, args ...string) *metricsEndpoint {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(fdtraceBin, append(args, "--ready-file", ready)...)
	m := &metricsEndpoint{cmd: cmd, stderr: &testutil.LockedBuffer{}}
	cmd.Stderr = m.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForFile(t, ready)
	waitForLine(t, m.stderr, "fdtrace: serving metrics at ")
	match := servingAt.FindStringSubmatch(m.stderr.String())
	if match == nil {
		t.Fatalf("no address on stderr:\n%s", m.stderr.String())
	}
	m.url = match[1]
	return m
}

// scrape reads the endpoint with Prometheus's own parser.
func (m *metricsEndpoint) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(m.url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", m.url, resp.Status, m.stderr.String())
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", m.url, err)
	}
	return families
}

// sample is the value of the series of name whose labels include want,
// false if there is none.
func sample(families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := families[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

// expect is one series and the value it must reach.
type expect struct {
	name   string
	labels map[string]string
	value  func() float64
}

// waitFor scrapes until every expected series has its value: a scrape
// answers from a reading of the maps up to a second old.
func (m *metricsEndpoint) waitFor(t *testing.T, what string, want []expect) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		families := m.scrape(t)
		var wrong []string
		for _, e := range want {
			v, ok := sample(families, e.name, e.labels)
			if w := e.value(); !ok || v != w {
				wrong = append(wrong, fmt.Sprintf("%s%v = %v (present: %v), want %v", e.name, e.labels, v, ok, w))
			}
		}
		if len(wrong) == 0 {
			return families
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s, after 10s:\n%s", what, strings.Join(wrong, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestServeExposesOpenFDsLimitAndEMFILEsAsProcSeesThem(t *testing.T) {
	testutil.RequireRoot(t)
	w := testutil.StartFdops(t, testutil.BuildC(t, "fdops", "-static", "-pthread"))
	const limit = 32
	w.Do(t, "limit %d", limit)
	w.Do(t, "open /dev/null")
	m := startMetrics(t, "serve", "-p", strconv.Itoa(w.PID), "--metrics-addr", "127.0.0.1:0")

	pid := map[string]string{"pid": strconv.Itoa(w.PID), "comm": "fdops"}
	open := func() float64 { return float64(len(testutil.ProcFDs(t, w.PID))) }
	soft, _, err := procfs.FDLimit(w.PID)
	if err != nil || soft != limit {
		t.Fatalf("/proc says limit %d (%v), want %d", soft, err, limit)
	}
	perProcess := []expect{
		{"fdtrace_process_open_fds", pid, open},
		{"fdtrace_process_fd_limit", pid, func() float64 { return limit }},
		{"fdtrace_process_fd_utilization_ratio", pid, func() float64 { return open() / limit }},
	}
	// Before its first fd syscall, /proc's count at start stands for it.
	m.waitFor(t, "idle", perProcess)
	w.Do(t, "open /dev/null")
	w.Do(t, "socket inet stream")
	m.waitFor(t, "after an open and a socket", perProcess)

	// fill opens /dev/null until it fails with EMFILE, once.
	w.Do(t, "fill")
	for range 3 {
		if _, errno := w.Try(t, "socket inet stream"); errno != int(syscall.EMFILE) {
			t.Fatalf("socket: errno %d, want EMFILE", errno)
		}
	}
	for range 2 {
		if _, errno := w.Try(t, "open /dev/null"); errno != int(syscall.EMFILE) {
			t.Fatalf("open: errno %d, want EMFILE", errno)
		}
	}
	count := func(n float64) func() float64 { return func() float64 { return n } }
	// Exact counts: the workload is the only process traced.
	failures := []expect{
		{"fdtrace_fd_errors_total", map[string]string{"syscall": "socket", "errno": "EMFILE"}, count(3)},
		{"fdtrace_fd_errors_total", map[string]string{"syscall": "openat", "errno": "EMFILE"}, count(3)},
		{"fdtrace_fd_limit_failures_total", map[string]string{"errno": "EMFILE"}, count(6)},
		{"fdtrace_fd_limit_failures_total", map[string]string{"errno": "ENFILE"}, count(0)},
	}
	families := m.waitFor(t, "at the limit", append(append(perProcess, failures...),
		expect{"fdtrace_processes", nil, count(1)},
		expect{"fdtrace_other_processes", nil, count(0)},
		expect{"fdtrace_lost_events_total", nil, count(0)},
		expect{"fdtrace_refused_connections_total", nil, count(0)},
	))
	// fill stopped at the lowest free fd reaching the limit; fds above
	// it, inherited, count too (as in /proc), so open may exceed it.
	if v, _ := sample(families, "fdtrace_process_fd_utilization_ratio", pid); v < 1 {
		t.Errorf("utilization %v at the limit, want at least 1", v)
	}
	for _, name := range []string{"fdtrace_system_files_allocated", "fdtrace_system_files_max", "process_open_fds"} {
		if v, ok := sample(families, name, nil); !ok || v <= 0 {
			t.Errorf("%s = %v (present: %v)", name, v, ok)
		}
	}

	// Its counters stay once it exits.
	w.Close(t)
	m.waitFor(t, "after the exit", append(failures, expect{"fdtrace_processes", nil, count(0)}))
	if _, ok := sample(m.scrape(t), "fdtrace_process_open_fds", pid); ok {
		t.Error("an exited process still has its series")
	}

	m.cmd.Process.Signal(syscall.SIGTERM)
	if err := m.cmd.Wait(); err != nil {
		t.Fatalf("fdtrace serve: %v\n%s", err, m.stderr.String())
	}
}

// The counters are the kernel's host-wide totals: a process's EMFILEs stay
// counted after it exits, even when its exit record, which carries its
// own counts, is lost to a full ring buffer, and the failures of others
// add to them.
func TestTheMetricsKeepAProcesssEMFILEsExactlyWhenItsExitRecordIsLost(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fdops", "-static", "-pthread")
	w, other := testutil.StartFdops(t, bin), testutil.StartFdops(t, bin)
	w.Do(t, "limit 16")
	other.Do(t, "limit 16")
	out := filepath.Join(t.TempDir(), "trace.jsonl")
	// The smallest ring buffer the flag allows, 1 MiB.
	m := startMetrics(t, "trace", "-p", strconv.Itoa(w.PID)+","+strconv.Itoa(other.PID), "-o", out,
		"--ringbuf-size", "1", "--metrics-addr", "127.0.0.1:0")
	spare := w.Do(t, "open /dev/null")[0]
	w.Do(t, "fill") // one EMFILE, from openat
	for range 4 {
		if _, errno := w.Try(t, "open /dev/null"); errno != int(syscall.EMFILE) {
			t.Fatalf("open: errno %d, want EMFILE", errno)
		}
	}
	for range 3 {
		if _, errno := w.Try(t, "socket inet stream"); errno != int(syscall.EMFILE) {
			t.Fatalf("socket: errno %d, want EMFILE", errno)
		}
	}
	count := func(n float64) func() float64 { return func() float64 { return n } }
	failures := []expect{
		{"fdtrace_fd_limit_failures_total", map[string]string{"errno": "EMFILE"}, count(8)},
		{"fdtrace_fd_limit_failures_total", map[string]string{"errno": "ENFILE"}, count(0)},
		{"fdtrace_fd_errors_total", map[string]string{"syscall": "openat", "errno": "EMFILE"}, count(5)},
		{"fdtrace_fd_errors_total", map[string]string{"syscall": "socket", "errno": "EMFILE"}, count(3)},
	}
	m.waitFor(t, "at the limit", append(failures, expect{"fdtrace_processes", nil, count(2)},
		expect{"fdtrace_lost_events_total", nil, count(0)}))

	// With fdtrace stopped, nothing reads the ring buffer: the workload
	// fills it with opens and closes, then exits, its exit record lost.
	if err := m.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	w.Do(t, "close %d", spare) // room for the busy thread's opens
	w.Do(t, "busy")
	time.Sleep(500 * time.Millisecond)
	w.Do(t, "stop")
	w.Close(t)
	if err := m.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	families := m.waitFor(t, "after the exit, its record lost", append(failures,
		expect{"fdtrace_processes", nil, count(1)}))
	if lost, _ := sample(families, "fdtrace_lost_events_total", nil); lost == 0 {
		t.Fatal("no events lost: the ring buffer did not fill")
	}

	// Another process's EMFILEs add to the exited one's.
	other.Do(t, "fill")
	if _, errno := other.Try(t, "open /dev/null"); errno != int(syscall.EMFILE) {
		t.Fatalf("open: errno %d, want EMFILE", errno)
	}
	failures[0].value, failures[2].value = count(10), count(7)
	m.waitFor(t, "after another process's EMFILEs", failures)

	m.cmd.Process.Signal(syscall.SIGTERM)
	if err := m.cmd.Wait(); err != nil {
		t.Fatalf("fdtrace trace: %v\n%s", err, m.stderr.String())
	}
	for _, r := range ofPID(readRecords(t, readFileT(t, out)), "process", w.PID) {
		if exited, _ := r["exited"].(bool); exited {
			t.Fatalf("the workload's exit record was written, not lost: %v", r)
		}
	}
}

func TestServeGivesOnlyTheTopProcessesSeriesOfTheirOwn(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fdops", "-static", "-pthread")
	var ws []*testutil.Workload
	var pids []string
	for _, limit := range []int{64, 16, 32} {
		w := testutil.StartFdops(t, bin)
		w.Do(t, "limit %d", limit)
		ws = append(ws, w)
		pids = append(pids, strconv.Itoa(w.PID))
	}
	m := startMetrics(t, "serve", "-p", strings.Join(pids, ","), "--metrics-addr", "127.0.0.1:0", "--metrics-top", "1")
	for _, w := range ws {
		w.Do(t, "open /dev/null")
	}
	open := func(w *testutil.Workload) float64 { return float64(len(testutil.ProcFDs(t, w.PID))) }
	fullest := map[string]string{"pid": pids[1]}
	families := m.waitFor(t, "three processes, one with series", []expect{
		{"fdtrace_process_fd_limit", fullest, func() float64 { return 16 }},
		{"fdtrace_processes", nil, func() float64 { return 3 }},
		{"fdtrace_other_processes", nil, func() float64 { return 2 }},
		{"fdtrace_other_processes_open_fds", nil, func() float64 { return open(ws[0]) + open(ws[2]) }},
		{"fdtrace_other_processes_max_fd_utilization_ratio", nil, func() float64 { return open(ws[2]) / 32 }},
	})
	if n := len(families["fdtrace_process_open_fds"].GetMetric()); n != 1 {
		t.Errorf("%d processes with series, want 1", n)
	}
}

func TestTraceServesMetricsWhileItTraces(t *testing.T) {
	testutil.RequireRoot(t)
	w := testutil.StartFdops(t, testutil.BuildC(t, "fdops", "-static", "-pthread"))
	w.Do(t, "limit 16")
	m := startMetrics(t, "trace", "-p", strconv.Itoa(w.PID), "-o", os.DevNull, "--metrics-addr", "127.0.0.1:0")
	w.Do(t, "fill")
	pid := map[string]string{"pid": strconv.Itoa(w.PID)}
	open := func() float64 { return float64(len(testutil.ProcFDs(t, w.PID))) }
	m.waitFor(t, "after fill", []expect{
		{"fdtrace_process_open_fds", pid, open},
		{"fdtrace_process_fd_utilization_ratio", pid, func() float64 { return open() / 16 }},
		{"fdtrace_fd_errors_total", map[string]string{"syscall": "openat", "errno": "EMFILE"}, func() float64 { return 1 }},
	})
}

func TestServeRefusesBadInput(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	inUse := busy.Addr().String()
	assertRefused(t, []badInput{
		{"an address without a port", []string{"serve", "--metrics-addr", "localhost"}, 2,
			"fdtrace: --metrics-addr \"localhost\": want HOST:PORT, :PORT or 127.0.0.1:0\n"},
		{"a port out of range", []string{"serve", "--metrics-addr", ":70000"}, 2,
			"fdtrace: --metrics-addr \":70000\": want HOST:PORT, :PORT or 127.0.0.1:0\n"},
		{"a port in use", []string{"serve", "--metrics-addr", inUse}, 1,
			"fdtrace: --metrics-addr " + inUse + ": bind: address already in use\n"},
		{"a negative top", []string{"serve", "--metrics-top", "-1"}, 2, "fdtrace: --metrics-top -1: must not be negative\n"},
		{"an argument", []string{"serve", "extra"}, 2, "fdtrace: unexpected argument \"extra\"\n"},
		{"a bad address for trace", []string{"trace", "--metrics-addr", "::1"}, 2,
			"fdtrace: --metrics-addr \"::1\": want HOST:PORT, :PORT or 127.0.0.1:0\n"},
		{"a negative top for trace", []string{"trace", "--metrics-addr", ":0", "--metrics-top", "-5"}, 2,
			"fdtrace: --metrics-top -5: must not be negative\n"},
	})
}

// serve reads nothing of other processes that needs CAP_SYS_PTRACE or
// CAP_DAC_READ_SEARCH once it serves: it holds neither.
func TestServeGivesUpReadingOtherProcessesOnceItServes(t *testing.T) {
	testutil.RequireRoot(t)
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(fdtraceBin, "serve", "--metrics-addr", "127.0.0.1:0", "--ready-file", ready)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every thread's: capabilities are per thread.
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", cmd.Process.Pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of serve: %v", err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue // gone
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			name, hex, ok := strings.Cut(line, ":\t")
			if !ok || (name != "CapEff" && name != "CapPrm") {
				continue
			}
			caps, _ := strconv.ParseUint(hex, 16, 64)
			for _, c := range []uint{unix.CAP_SYS_PTRACE, unix.CAP_DAC_READ_SEARCH} {
				if caps&(1<<c) != 0 {
					t.Errorf("%s: %s holds capability %d", task, name, c)
				}
			}
			if caps&(1<<unix.CAP_BPF) == 0 && caps&(1<<unix.CAP_SYS_ADMIN) == 0 {
				t.Errorf("%s: %s lost what it needs to read the maps", task, name)
			}
		}
	}
}
