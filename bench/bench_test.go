package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// These test the parsers of what the workload, fdtrace, bpftrace and /proc
// print, and the arithmetic of the tables; the measurements themselves
// need root and run only in make bench.

func TestWorkloadOutputIsParsedFromItsLastLine(t *testing.T) {
	r, err := parseWorkOutput("warming up\nns_per_op=2526.5 ops=160000 elapsed_ns=404240000\n")
	if err != nil {
		t.Fatal(err)
	}
	want := workResult{nsPerOp: 2526.5, ops: 160000, elapsed: 404240 * time.Microsecond}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	for _, bad := range []string{"", "ns_per_op=1 ops=2", "ns_per_op=x ops=2 elapsed_ns=3"} {
		if _, err := parseWorkOutput(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	r, err = parseWorkOutput("ns_per_op=919.0 ops=100 elapsed_ns=91905 fd_events=19152\n")
	if err != nil || r.fdEvents != 19152 {
		t.Errorf("fd_events: got %+v, %v", r, err)
	}
}

func TestWrkOutputGivesRequestsAndTheirRate(t *testing.T) {
	out := `Running 2s test @ http://127.0.0.1:18080/f
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.90ms    8.22ms  81.18ms   96.14%
    Req/Sec    25.53k     5.07k   28.50k    90.00%
  51010 requests in 2.02s, 61.25MB read
Requests/sec:  25194.38
Transfer/sec:     30.25MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.ops != 51010 || int(r.nsPerOp) != 39691 {
		t.Errorf("got %+v", r)
	}
	for _, bad := range []string{"", "unable to connect to 127.0.0.1:1 Connection refused",
		strings.Replace(out, "Transfer", "  Non-2xx or 3xx responses: 51010\nTransfer", 1)} {
		if _, err := parseWrk(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestRecordsAreCountedByTheirLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	long := `{"type":"open","comm":"` + strings.Repeat("x", 2<<20) + `"}`
	lines := []string{`{"type":"open","pid":1}`, `{"type":"close","pid":1}`, long,
		`{"type":"process","comm":"{\"type\":\"open\","}`, `{"type":"stats"}`}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := countRecords(path); err != nil || n != 3 {
		t.Errorf("counted %d, %v; want 3", n, err)
	}
}

func TestProcStatusValuesAreReadInKiB(t *testing.T) {
	status := "Name:\tfdtrace\nVmHWM:\t   60448 kB\nVmRSS:\t   59000 kB\n"
	if got := procStatusKiB(status, "VmHWM"); got != 60448 {
		t.Errorf("VmHWM %d", got)
	}
	if got := procStatusKiB(status, "VmSwap"); got != 0 {
		t.Errorf("missing key gave %d", got)
	}
}

func TestMedianOfOddAndEvenCountsAndNothing(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {nil, 0}} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

func TestIterationsKeepTwoSignificantDigitsAndAtLeast1000(t *testing.T) {
	for in, want := range map[float64]int64{12.0: 1000, 158_334: 160_000, 13_654: 14_000} {
		if got := roundIterations(in); got != want {
			t.Errorf("roundIterations(%v) = %d, want %d", in, got, want)
		}
	}
}

func TestRotationStartsEachRoundAtTheNextMode(t *testing.T) {
	if got := rotate([]int{1, 2, 3}, 4); !slices.Equal(got, []int{2, 3, 1}) {
		t.Errorf("got %v", got)
	}
}

func TestFdtraceStatsComeFromTheLastRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	lines := `{"type":"open","fd":3}
{"type":"stats","lost_events":7,"events_delivered":600006,"fds_map_full":0}
`
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := readFdtraceStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.LostEvents != 7 || st.EventsDelivered != 600006 {
		t.Errorf("got %+v", st)
	}
	if err := os.WriteFile(path, []byte(`{"type":"open","fd":3}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readFdtraceStats(path); err == nil {
		t.Error("output without a stats record gave no error")
	}
}

func TestBpftraceLostLinesAreSummed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	out := "Attaching 6 probes...\n1 2 3 fdbench-work close 3\nLost 120 events\nLost 5 events\nLost track\n"
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := bpftraceLost(path); err != nil || n != 125 {
		t.Errorf("got %d, %v", n, err)
	}
}

func TestAddedCostIsTheMedianOfEachRoundsDifference(t *testing.T) {
	errs := &cell{ratios: map[int]float64{0: 1.69, 1: 1.45, 2: 1.46, 3: 1.49}}
	floor := &cell{ratios: map[int]float64{0: 1.25, 1: 1.08, 2: 1.33, 4: 1.26}}
	// Rounds 0-2 ran both: differences 0.44, 0.37, 0.13.
	if got := errs.addedBeyond(floor); got < 0.369 || got > 0.371 {
		t.Errorf("got %v, want 0.37", got)
	}
}

func TestProgramCostsAreTheMedianOfTheRounds(t *testing.T) {
	floor, errs := modeByKey("floor"), modeByKey("errors")
	round := func(emptyNs, closeNs, openNs int64, missing error) []progCosts {
		return []progCosts{
			{mode: floor, ops: 1000, progs: []progStat{{Name: "fdbench_floor", RunCnt: 2000, RunTimeNs: 2000 * emptyNs}}},
			{mode: errs, ops: 1000, err: missing, progs: []progStat{
				{Name: "close", RunCnt: 1000, RunTimeNs: 1000 * closeNs},
				{Name: "openat", RunCnt: 1000, RunTimeNs: 1000 * openNs},
			}},
		}
	}
	got := medianProgCosts([][]progCosts{round(30, 64, 50, nil), round(34, 58, 90, nil), round(31, 61, 55, nil)})
	if len(got) != 2 || got[0].err != nil || got[1].err != nil {
		t.Fatalf("got %+v", got)
	}
	if p := got[0].progs[0]; p.nsPerRun() != 31 || p.minNs != 30 || p.maxNs != 34 || nsSpreadText(p) != "31 (30–34)" {
		t.Errorf("floor: %+v, %q", p, nsSpreadText(p))
	}
	// Most expensive first, by the medians: close 61, openat 55.
	if names := []string{got[1].progs[0].Name, got[1].progs[1].Name}; !slices.Equal(names, []string{"close", "openat"}) {
		t.Errorf("order %v", names)
	}
	if p := got[1].progs[1]; p.nsPerRun() != 55 || p.minNs != 50 || p.maxNs != 90 {
		t.Errorf("openat: %+v", p)
	}
	if one := medianProgCosts([][]progCosts{round(30, 64, 50, nil)}); nsSpreadText(one[1].progs[0]) != "64" {
		t.Errorf("one round: %q", nsSpreadText(one[1].progs[0]))
	}
	failed := medianProgCosts([][]progCosts{round(30, 64, 50, nil), round(30, 64, 50, os.ErrNotExist)})
	if failed[0].err != nil || failed[1].err != os.ErrNotExist {
		t.Errorf("a failed round: %v, %v", failed[0].err, failed[1].err)
	}
}

func TestErrorsOnlysProgramsAreHeldToTheEmptyProgramOnTheirHook(t *testing.T) {
	floor := progCosts{mode: modeByKey("floor"), ops: 1000, progs: []progStat{
		{Name: "sys_enter_close", RunCnt: 3000, RunTimeNs: 3000 * 50},
		{Name: "sys_exit_accept4", RunCnt: 1000, RunTimeNs: 1000 * 70},
	}}
	errs := progCosts{mode: modeByKey("errors"), ops: 1000, progs: []progStat{
		{Name: "tracepoint__syscalls__sys_exit_accept4", RunCnt: 1000, RunTimeNs: 1000 * 130},
		{Name: "tracepoint__syscalls__sys_enter_close", RunCnt: 3000, RunTimeNs: 3000 * 95},
		{Name: "tracepoint__syscalls__sys_exit_dup", RunCnt: 1000, RunTimeNs: 1000 * 100},
	}}
	if ns, text := floor.onHook("sys_exit_accept4"); ns != 70 || text != "empty 70" {
		t.Errorf("accept4's empty program: %v %q", ns, text)
	}
	// No empty program on dup: the floor's over all its runs, 55.
	if ns, text := floor.onHook("sys_exit_dup"); ns != 55 || text != "empty 55 (all hooks)" {
		t.Errorf("dup's: %v %q", ns, text)
	}
	r := &results{countingProgs: [][]progCosts{{floor, errs}}}
	text, known, pass := r.countingProgsText(workloads[0])
	// accept4 1.86x its own hook's, close 1.9x, dup 1.82x the floor's:
	// all pass, where against close's empty program accept4 would not.
	if !known || !pass || !strings.Contains(text, "sys_exit_accept4 130 vs empty 70 (1.86×)") {
		t.Errorf("%q known %v pass %v", text, known, pass)
	}
	errs.progs[1].RunTimeNs = 3000 * 101
	if _, _, pass := r.countingProgsText(workloads[0]); pass {
		t.Error("close at 2.02x its hook's empty program passed")
	}
}
