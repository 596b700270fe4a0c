package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/symbolize"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// stacksHere says whether this kernel takes user stacks; where it does
// not, it checks that leaks and trace --stacks refuse in one line that
// names what is missing, with a non-zero exit.
func stacksHere(t *testing.T) bool {
	t.Helper()
	testutil.RequireRoot(t)
	if loader.ProbeFeatures().StacksError() == nil {
		return true
	}
	for _, args := range [][]string{{"leaks", "--", "true"}, {"trace", "--stacks", "--", "true"}} {
		res := runFdtrace(t, "", args...)
		lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
		if res.code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "bpf_loop (Linux 5.17)") {
			t.Errorf("fdtrace %s on a kernel without stacks: exit %d, stderr %q; want one line naming bpf_loop", strings.Join(args, " "), res.code, res.stderr)
		}
	}
	return false
}

// leaksOf runs "fdtrace leaks --json -o FILE [extra] -- bin args", waits
// for the workload's ready line, ends its input and returns the records.
func leaksOf(t *testing.T, extra []string, bin string, args ...string) []events.Leak {
	t.Helper()
	r := startLeaks(t, "", append(append(append(extra, "--"), bin), args...)...)
	if r.first != "ready\n" {
		t.Fatalf("workload said %q; stderr:\n%s", r.first, r.stderr.String())
	}
	return r.finish(t)
}

// leaksRun is "fdtrace leaks --json -o FILE ARGS..." running a workload
// that said its first line.
type leaksRun struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *testutil.LockedBuffer
	out    string
	first  string        // the workload's first line
	stdout *bufio.Reader // the rest of what it says
}

// startLeaks starts fdtrace leaks in dir ("": the test's) and reads the
// workload's first line; the run is killed when the test ends.
func startLeaks(t *testing.T, dir string, args ...string) *leaksRun {
	t.Helper()
	r := &leaksRun{stderr: &testutil.LockedBuffer{}, out: filepath.Join(t.TempDir(), "leaks.jsonl")}
	r.cmd = exec.Command(fdtraceBin, append([]string{"leaks", "--json", "-o", r.out}, args...)...)
	r.cmd.Dir = dir
	r.stdin, _ = r.cmd.StdinPipe()
	stdout, _ := r.cmd.StdoutPipe()
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill() })
	r.stdout = bufio.NewReader(stdout)
	line, err := r.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("workload said %q (%v); stderr:\n%s", line, err, r.stderr.String())
	}
	r.first = line
	return r
}

// finish ends the workload's input, waits for fdtrace and reads its records.
func (r *leaksRun) finish(t *testing.T) []events.Leak {
	t.Helper()
	r.stdin.Close()
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("fdtrace leaks: %v\n%s", err, r.stderr.String())
	}
	return readLeaks(t, r.out)
}

// readLeaks reads the "leak" records of a leaks --json output file.
func readLeaks(t *testing.T, path string) []events.Leak {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var leaks []events.Leak
	for _, l := range readRecords(t, string(b)) {
		if l.str("type") != "leak" {
			t.Fatalf("unexpected record %v", l)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var l events.Leak
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		leaks = append(leaks, l)
	}
	return leaks
}

// byFunc adds up the fds of the groups whose stack has fn, and says at
// which file:line fn is and in how many groups.
func byFunc(leaks []events.Leak, fn string) (count int, types map[string]int, where string, groups int) {
	types = map[string]int{}
	for _, l := range leaks {
		for _, f := range l.Stack {
			if f.Func != fn {
				continue
			}
			count += l.Count
			groups++
			for k, v := range l.FDTypes {
				types[k] += v
			}
			where = filepath.Base(f.File) + ":" + itoa(f.Line)
			break
		}
	}
	return count, types, where, groups
}

func hasFunc(stack []symbolize.Frame, fn string) bool {
	return slices.ContainsFunc(stack, func(f symbolize.Frame) bool { return f.Func == fn })
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// markerLine is the line of a source file holding marker.
func markerLine(t *testing.T, src, marker string) int {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, marker) {
			return i + 1
		}
	}
	t.Fatalf("%s has no %q", src, marker)
	return 0
}

func TestLeaksOfACProgramNameTheFunctionsThatLeaked(t *testing.T) {
	if !stacksHere(t) {
		return
	}
	withFP := testutil.BuildC(t, "leaky", "-fno-omit-frame-pointer", "-pthread")
	// As distributions build: no frame pointers. Only DWARF unwinding
	// gets its stacks right (the fp mode's recovery of frames from the
	// top of the stack is a heuristic).
	noFP := testutil.BuildC(t, "leaky", "-O2", "-fomit-frame-pointer", "-pthread")
	// Linked statically: libc's code in the binary itself, no ld.so.
	static := testutil.BuildC(t, "leaky", "-O2", "-fomit-frame-pointer", "-pthread", "-static")
	for _, tc := range []struct {
		name, bin, mode string
	}{
		{"frame pointers, fp mode", withFP, "fp"},
		{"frame pointers, dwarf mode", withFP, "dwarf"},
		{"-O2 without frame pointers, dwarf mode", noFP, "dwarf"},
		{"static, -O2 without frame pointers, dwarf mode", static, "dwarf"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkLeakyReport(t, tc.bin, tc.mode) })
	}
}

func checkLeakyReport(t *testing.T, bin, mode string) {
	src := filepath.Join(testutil.RepoRoot(t), "testdata", "workloads", "leaky.c")
	// files sockets pipes epolls fopens openats dups accepts child
	leaks := leaksOf(t, []string{"--stack-mode", mode}, bin, "7", "5", "3", "2", "2", "3", "4", "6", "1")

	for _, tc := range []struct {
		fn    string
		count int
		types map[string]int
	}{
		{"open_config", 7, map[string]int{"file": 7}},
		{"connect_db", 5, map[string]int{"socket AF_INET": 5}},
		{"make_pipe", 6, map[string]int{"pipe": 6}},
		{"make_epoll", 2, map[string]int{"epoll": 2}},
		// Through libc functions that set up no frame and use rbp or
		// the stack for their own data.
		{"open_log", 2, map[string]int{"file": 2}},
		{"open_relative", 3, map[string]int{"file": 3}},
		{"dup_high", 4, map[string]int{"pipe": 4}}, // stdin is a pipe
		{"accept_conn", 6, map[string]int{"socket AF_INET": 6}},
		// Its own file only: what it inherited is its parent's.
		{"child_open", 1, map[string]int{"file": 1}},
	} {
		count, types, where, groups := byFunc(leaks, tc.fn)
		if count != tc.count || itoa(len(types)) != itoa(len(tc.types)) || types[firstKey(tc.types)] != tc.count {
			t.Errorf("%s: %d fds %v, want %d %v", tc.fn, count, types, tc.count, tc.types)
		}
		// The first fd's stack is searched for, the others' recalled
		// (walk_memos): all must be the same stack.
		if groups != 1 {
			t.Errorf("%s: its fds are in %d groups, want 1: %+v", tc.fn, groups, leaks)
		}
		if want := "leaky.c:" + itoa(markerLine(t, src, "LEAK "+tc.fn)); where != want {
			t.Errorf("%s is at %s, want %s", tc.fn, where, want)
		}
		// DWARF unwinding goes through libc's start code or its threads'.
		if mode == "dwarf" {
			for _, l := range leaks {
				if hasFunc(l.Stack, tc.fn) && !hasFunc(l.Stack, "__libc_start_main") && !hasFunc(l.Stack, "start_thread") {
					t.Errorf("%s: the stack ends before libc's start code: %+v", tc.fn, l.Stack)
				}
			}
		}
	}
	pids := map[int]int{}
	for _, l := range leaks {
		pids[l.PID] += l.Count
	}
	if len(pids) != 2 {
		t.Errorf("fds of %d processes, want the workload's and its child's: %v", len(pids), pids)
	}
	for pid, n := range pids {
		if n == 1 {
			continue
		}
		// 7+5+6+2+2+3+4 leaked, both ends of 6 connections, stdio.
		if n < 44 {
			t.Errorf("pid %d: %d fds, want at least 44", pid, n)
		}
	}
	if n, _, _, _ := byFunc(leaks, "balanced"); n != 0 {
		t.Errorf("%d fds attributed to balanced, which closes all it opens", n)
	}
	var pre int
	for _, l := range leaks {
		if !l.AtExit {
			t.Errorf("group %+v is not marked at_exit", l)
		}
		if l.Preexisting {
			pre += l.Count
			if len(l.Stack) != 0 {
				t.Errorf("pre-existing fds with a stack: %+v", l)
			}
		}
	}
	if pre < 3 {
		t.Errorf("%d pre-existing fds, want at least stdin, stdout and stderr", pre)
	}
}

func TestLeaksOfAGoProgramNameTheGoFunctions(t *testing.T) {
	if !stacksHere(t) {
		return
	}
	bin := filepath.Join(t.TempDir(), "goleak")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testutil.RepoRoot(t), "testdata", "workloads", "goleak")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	leaks := leaksOf(t, nil, bin, "6", "4")
	if n, types, _, _ := byFunc(leaks, "main.leakFiles"); n != 6 || types["file"] != 6 {
		t.Errorf("main.leakFiles: %d fds %v, want 6 files", n, types)
	}
	if n, types, _, _ := byFunc(leaks, "main.leakListeners"); n != 4 || types["socket AF_INET"] != 4 {
		t.Errorf("main.leakListeners: %d fds %v, want 4 AF_INET sockets", n, types)
	}
	// The first os.Open starts the runtime's poller (an epoll fd and its
	// wakeup fd): those stay, under whoever opened first. No file may.
	if _, types, _, _ := byFunc(leaks, "main.balanced"); types["file"] != 0 {
		t.Errorf("files attributed to main.balanced, which closes all it opens: %v", types)
	}
}

func TestTraceWithStacksPutsTheCallerInOpenRecords(t *testing.T) {
	if !stacksHere(t) {
		return
	}
	bin := testutil.BuildC(t, "leaky", "-fno-omit-frame-pointer", "-pthread")
	out := filepath.Join(t.TempDir(), "trace.jsonl")
	res := runFdtrace(t, "", "trace", "--stacks", "-o", out, "--", bin, "2", "0", "0", "0")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	b, _ := os.ReadFile(out)
	n := 0
	for _, r := range readRecords(t, string(b)) {
		if r.str("type") != "open" || r.str("path") != "/etc/hostname" {
			continue
		}
		stack, _ := r["stack"].([]any)
		for _, f := range stack {
			if fn, _ := f.(map[string]any)["func"].(string); fn == "open_config" {
				n++
			}
		}
	}
	if n != 2 {
		t.Errorf("%d opens of /etc/hostname from open_config, want 2", n)
	}
}

func firstKey(m map[string]int) string {
	for k := range m {
		return k
	}
	return ""
}

// An fd made by io_uring's IORING_OP_OPENAT where io_uring is not hooked
// (before 6.1; forced here) has no record: leaks lists it apart, with its
// type and path from /proc, in the reports made while the workload runs
// and in the one at its exit (read while it is held there); the fds
// fdtrace saw created keep their groups and stacks.
func TestLeaksListsAnFDNoTracedSyscallCreatedApart(t *testing.T) {
	if !stacksHere(t) {
		return
	}
	t.Setenv("FDTRACE_FORCE_FALLBACK", "no-uring")
	bin := testutil.BuildC(t, "uring_open", "-static")
	path := filepath.Join(t.TempDir(), "opened-by-io_uring")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := startLeaks(t, "", "--min-age", "0", "-i", "100ms", "--", bin, path)
	if strings.HasPrefix(r.first, "no io_uring") {
		t.Skipf("io_uring is not available here (%s): see /proc/sys/kernel/io_uring_disabled", strings.TrimSpace(r.first))
	}
	started := time.Now()
	var w uringFDs
	if _, err := fmt.Sscanf(r.first, "started %d %d %d\n", &w.pid, &w.ring, &w.plain); err != nil {
		t.Fatalf("workload said %q; stderr:\n%s", r.first, r.stderr.String())
	}
	w.path = path
	// The fds a command has at its exec are recorded from /proc when the
	// reader reads that it exec'd, a moment later: an fd made before then
	// that has no record is taken for one of those (pre-existing). The
	// stacks named in a report came after in the ring buffer: once they
	// are, the io_uring fd is made.
	r.waitReport(t, started, func(report []events.Leak) bool { return len(report) == 3 && symbolized(report) })
	io.WriteString(r.stdin, "go\n")
	line, err := r.stdout.ReadString('\n')
	if _, err2 := fmt.Sscanf(line, "ready %d\n", &w.uring); err != nil || err2 != nil {
		t.Fatalf("workload said %q (%v); stderr:\n%s", line, err, r.stderr.String())
	}
	ready := time.Now()

	w.check(t, "a report while it runs", r.waitReport(t, ready, symbolized), false)
	var atExit []events.Leak
	for _, l := range r.finish(t) {
		if l.AtExit {
			atExit = append(atExit, l)
		}
	}
	w.check(t, "the report at its exit", atExit, true)
}

// waitReport waits for a whole report made after t that satisfies ok.
func (r *leaksRun) waitReport(t *testing.T, after time.Time, ok func([]events.Leak) bool) []events.Leak {
	t.Helper()
	var report []events.Leak
	for deadline := time.Now().Add(10 * time.Second); !ok(report); {
		if time.Now().After(deadline) {
			t.Fatalf("no report as wanted after %s: the last is %+v; stderr:\n%s",
				after.Format(time.TimeOnly), report, r.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
		report = lastReportAfter(leaksSoFar(t, r.out), after)
	}
	return report
}

// uringFDs are the fds uring_open made, and the path it opened by io_uring.
type uringFDs struct {
	pid, ring, plain, uring int
	path                    string
}

// check asserts that report has exactly the workload's four groups: its
// ring and /dev/null with their stacks, its stdio as pre-existing, and the
// io_uring fd as outside the traced syscalls.
func (w uringFDs) check(t *testing.T, name string, report []events.Leak, atExit bool) {
	t.Helper()
	want := []struct {
		what         string
		match        func(l events.Leak) bool
		fds          []int
		types        map[string]int
		syscalls     map[string]int
		samples      []string // nil: not checked
		fn           string   // a function of its stack ("": no stack)
		pre, outside bool
	}{
		{"the ring", func(l events.Leak) bool { return l.Syscalls["io_uring_setup"] > 0 },
			[]int{w.ring}, map[string]int{"other": 1}, map[string]int{"io_uring_setup": 1}, nil, "setup_ring", false, false},
		{"/dev/null", func(l events.Leak) bool { return l.Syscalls["openat"] > 0 },
			[]int{w.plain}, map[string]int{"file": 1}, map[string]int{"openat": 1}, nil, "open_plain", false, false},
		{"stdio", func(l events.Leak) bool { return l.Preexisting },
			[]int{0, 1, 2}, map[string]int{"pipe": 3}, map[string]int{"preexisting": 3}, nil, "", true, false},
		{"the io_uring fd", func(l events.Leak) bool { return l.OutsideTracedSyscalls },
			[]int{w.uring}, map[string]int{"file": 1}, map[string]int{}, []string{w.path}, "", false, true},
	}
	if len(report) != len(want) {
		t.Errorf("%s: %d groups, want %d: %+v", name, len(report), len(want), report)
	}
	for _, g := range want {
		var found []events.Leak
		for _, l := range report {
			if g.match(l) {
				found = append(found, l)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s: %d groups of %s, want 1: %+v", name, len(found), g.what, report)
			continue
		}
		l := found[0]
		count := len(g.fds)
		if g.pre && l.Count > 3 && len(l.FDs) > 3 && slices.Equal(l.FDs[:3], g.fds) && l.FDTypes["pipe"] >= 3 {
			// More than stdio: what the test inherited from whatever
			// started it, which the workload inherits too.
			count, g.fds, g.types, g.syscalls = l.Count, l.FDs, l.FDTypes, map[string]int{"preexisting": l.Count}
		}
		if l.PID != w.pid || l.Count != count || !slices.Equal(l.FDs, g.fds) ||
			!maps.Equal(l.FDTypes, g.types) || !maps.Equal(l.Syscalls, g.syscalls) ||
			l.Preexisting != g.pre || l.OutsideTracedSyscalls != g.outside || l.Unattributed || l.AtExit != atExit ||
			(g.samples != nil && !slices.Equal(l.Samples, g.samples)) {
			t.Errorf("%s: %s: %+v; want pid %d, fds %v, types %v, syscalls %v, samples %q, pre-existing %v, outside %v, at exit %v",
				name, g.what, l, w.pid, g.fds, g.types, g.syscalls, g.samples, g.pre, g.outside, atExit)
		}
		if g.fn == "" && len(l.Stack) != 0 || g.fn != "" && !hasFunc(l.Stack, g.fn) {
			t.Errorf("%s: %s: stack %+v, want %q in it", name, g.what, l.Stack, g.fn)
		}
		if g.outside && l.OldestAgeS != 0 {
			t.Errorf("%s: %s: oldest %vs, want 0 (unknown)", name, g.what, l.OldestAgeS)
		}
	}
}

// symbolized says whether report has groups, and every one with a stack
// has its functions named.
func symbolized(report []events.Leak) bool {
	for _, l := range report {
		if !l.Preexisting && !l.OutsideTracedSyscalls && (len(l.Stack) == 0 || !slices.ContainsFunc(l.Stack, func(f symbolize.Frame) bool { return f.Func != "" })) {
			return false
		}
	}
	return len(report) > 0
}

// leaksSoFar reads the whole lines of a leaks --json output still being
// written.
func leaksSoFar(t *testing.T, path string) []events.Leak {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []events.Leak
	for {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			return out
		}
		var l events.Leak
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		out = append(out, l)
		b = rest
	}
}

// lastReportAfter is the groups of the last report made after t (its
// records share a time), nil if none; a report is whole once the next
// has begun.
func lastReportAfter(leaks []events.Leak, t time.Time) []events.Leak {
	var times []time.Time
	for _, l := range leaks {
		if lt := time.Time(l.Time); lt.After(t) && !slices.ContainsFunc(times, lt.Equal) {
			times = append(times, lt)
		}
	}
	if len(times) < 2 {
		return nil
	}
	var out []events.Leak
	for _, l := range leaks {
		if time.Time(l.Time).Equal(times[len(times)-2]) {
			out = append(out, l)
		}
	}
	return out
}
