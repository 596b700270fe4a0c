package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

// topLines runs fdtrace top with args and hands its JSON lines over one
// by one, validated and decoded.
type topLines struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *testutil.LockedBuffer
}

func startTop(t *testing.T, args ...string) *topLines {
	t.Helper()
	cmd := exec.Command(fdtraceBin, append([]string{"top"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	tl := &topLines{cmd: cmd, lines: make(chan string, 1024), stderr: &testutil.LockedBuffer{}}
	cmd.Stderr = tl.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		defer close(tl.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			tl.lines <- sc.Text()
		}
	}()
	return tl
}

// next is the next record, nil when top ended its output.
func (tl *topLines) next(t *testing.T) record {
	t.Helper()
	select {
	case line, ok := <-tl.lines:
		if !ok {
			return nil
		}
		return readRecords(t, line)[0]
	case <-time.After(30 * time.Second):
		t.Fatalf("no record from fdtrace top within 30s; stderr:\n%s", tl.stderr.String())
	}
	return nil
}

// wait waits for top to exit by itself, successfully.
func (tl *topLines) wait(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- tl.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fdtrace top: %v\n%s", err, tl.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("fdtrace top did not exit within 30s")
	}
}

func (r record) float(k string) float64 { f, _ := r[k].(float64); return f }

func (r record) rates() record {
	m, _ := r["rates"].(map[string]any)
	return record(m)
}

func recordTime(t *testing.T, r record) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, r.str("time"))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// near compares a rate with one computed from the records' times: those
// are wall-clock, the rates' interval is monotonic, and the wall clock
// may be slewed (by NTP, up to 500 ppm) between the two.
func near(a, b float64) bool { return math.Abs(a-b) <= 1e-3*math.Max(1, math.Abs(b)) }

func TestTopJSONCountsWhatAProcessDidBetweenTwoRefreshes(t *testing.T) {
	testutil.RequireRoot(t)
	w := testutil.StartFdops(t, testutil.BuildC(t, "fdops", "-static", "-pthread"))
	w.Do(t, "limit 64")
	for range 4 {
		w.Do(t, "open /dev/null")
	}
	// Its stdin, stdout and stderr, the 4 files, and whatever else it
	// inherited.
	base := len(testutil.ProcFDs(t, w.PID))
	tl := startTop(t, "--json", "-n", "2", "-i", "1s", "-p", strconv.Itoa(w.PID))

	first := tl.next(t)
	if got := first.num("open_fds"); got != base {
		t.Errorf("first record: open_fds %d, /proc has %d", got, base)
	}
	if first.num("pid") != w.PID || first.num("fd_limit") != 64 || first.float("utilization") != float64(base)/64 ||
		first.num("opened") != 0 || first.num("closed") != 0 || first["exited"] != false {
		t.Errorf("first record %v", first)
	}
	if first["rates"] != nil || first.str("top_fd_type") != "file" {
		t.Errorf("first record: rates %v, top_fd_type %q; want no rates yet and file", first["rates"], first.str("top_fd_type"))
	}

	// Before the next refresh, a second later: 5 opens, 2 closes, a
	// listener and a connection, a fill to the limit, then EMFILE from
	// the fill's last open, an accept (a refused connection) and a socket.
	var fds []int
	for range 5 {
		fds = append(fds, w.Do(t, "open /dev/null")[0])
	}
	w.Do(t, "close %d", fds[0])
	w.Do(t, "close %d", fds[1])
	listener := w.Do(t, "listen")
	w.Do(t, "connect %d", listener[1])
	filled := w.Do(t, "fill")[0]
	if _, errno := w.Try(t, "accept %d", listener[0]); errno != int(syscall.EMFILE) {
		t.Fatalf("accept: errno %d, want EMFILE", errno)
	}
	if _, errno := w.Try(t, "socket inet stream"); errno != int(syscall.EMFILE) {
		t.Fatalf("socket: errno %d, want EMFILE", errno)
	}
	procFDs := len(testutil.ProcFDs(t, w.PID))

	second := tl.next(t)
	if end := tl.next(t); end != nil {
		t.Errorf("a third record with -n 2: %v", end)
	}
	tl.wait(t)
	opened := 5 + 2 + filled
	if got, want := second.num("open_fds"), base+opened-2; got != want || got != procFDs {
		t.Errorf("second record: open_fds %d, want %d, /proc has %d", got, want, procFDs)
	}
	for field, want := range map[string]int{"opened": opened, "closed": 2, "emfile": 3, "enfile": 0,
		"refused_connections": 1, "fd_limit": 64} {
		if got := second.num(field); got != want {
			t.Errorf("second record: %s %d, want %d", field, got, want)
		}
	}
	if got, want := second.float("utilization"), float64(procFDs)/64; got != want || second.str("top_fd_type") != "file" {
		t.Errorf("second record: utilization %v, top_fd_type %q; want %v and file", got, second.str("top_fd_type"), want)
	}
	wantErrors := map[string]any{"openat": map[string]any{"EMFILE": 1.0}, "accept4": map[string]any{"EMFILE": 1.0},
		"socket": map[string]any{"EMFILE": 1.0}}
	if !reflect.DeepEqual(second["errors"], wantErrors) {
		t.Errorf("second record: errors %v, want %v", second["errors"], wantErrors)
	}
	if got, want := second["refused_by_port"], map[string]any{strconv.Itoa(listener[1]): 1.0}; !reflect.DeepEqual(got, want) {
		t.Errorf("second record: refused_by_port %v, want %v", got, want)
	}
	// Per second over the interval between the two records.
	dt := recordTime(t, second).Sub(recordTime(t, first)).Seconds()
	rates := second.rates()
	for field, count := range map[string]float64{"opened": float64(opened), "closed": 2, "growth": float64(opened - 2),
		"emfile": 3, "enfile": 0, "refused_connections": 1} {
		if got := rates.float(field); !near(got, count/dt) {
			t.Errorf("rates.%s %v, want %d/%.6fs = %v", field, got, int(count), dt, count/dt)
		}
	}
}

func TestTopHostWideShowsIdleProcessesFromTheFirstRefresh(t *testing.T) {
	testutil.RequireRoot(t)
	w := testutil.StartFdops(t, testutil.BuildC(t, "fdops", "-static", "-pthread"))
	w.Do(t, "limit 500")
	for range 4 {
		w.Do(t, "open /dev/null")
	}
	tl := startTop(t, "-n", "1") // stdout is a pipe: JSON
	var mine []record
	n := 0
	for r := tl.next(t); r != nil; r = tl.next(t) {
		n++
		if r.num("pid") == w.PID {
			mine = append(mine, r)
		}
	}
	tl.wait(t)
	if len(mine) != 1 {
		t.Fatalf("%d records of the idle workload among %d, want 1", len(mine), n)
	}
	r := mine[0]
	want := len(testutil.ProcFDs(t, w.PID))
	if r.num("open_fds") != want || r.num("fd_limit") != 500 || r.str("comm") != "fdops" || r.str("top_fd_type") != "file" {
		t.Errorf("record of the idle workload: %v; want %d fds (as /proc) of 500, file", r, want)
	}
}

func TestTopWritesAnExitOnceWithTheFinalCounters(t *testing.T) {
	testutil.RequireRoot(t)
	w := testutil.StartFdops(t, testutil.BuildC(t, "fdops", "-static", "-pthread"))
	base := len(testutil.ProcFDs(t, w.PID))
	tl := startTop(t, "--json", "-n", "3", "-i", "700ms", "-p", strconv.Itoa(w.PID))
	if r := tl.next(t); r.num("pid") != w.PID || r["exited"] != false {
		t.Fatalf("first record %v", r)
	}
	w.Do(t, "open /dev/null")
	w.Do(t, "open /dev/null")
	w.Close(t)
	r := tl.next(t)
	if r == nil || r.num("pid") != w.PID || r["exited"] != true || r.num("opened") != 2 || r.num("open_fds") != base+2 {
		t.Errorf("record after the exit: %v; want exited with 2 opened and %d open", r, base+2)
	}
	if end := tl.next(t); end != nil {
		t.Errorf("a record after the exit record: %v", end)
	}
	tl.wait(t)
}

func TestTopByCommOrCgroupShowsOnlyThoseProcesses(t *testing.T) {
	testutil.RequireRoot(t)
	fdops := testutil.BuildC(t, "fdops", "-static", "-pthread")
	inside, outside := testutil.StartFdops(t, fdops), testutil.StartFdops(t, fdops)
	mount := cgroup2Mount(t)
	name := fmt.Sprintf("fdtrace-test-%d", os.Getpid())
	dir := filepath.Join(mount, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A cgroup goes once its processes have: kill ours first.
		inside.Cmd.Process.Kill()
		inside.Cmd.Wait()
		for i := 0; i < 100 && os.Remove(dir) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(inside.PID)), 0o644); err != nil {
		t.Fatal(err)
	}
	pidsOf := func(args ...string) (pids []int, comms []string) {
		tl := startTop(t, append([]string{"--json", "-n", "1"}, args...)...)
		for r := tl.next(t); r != nil; r = tl.next(t) {
			pids = append(pids, r.num("pid"))
			comms = append(comms, r.str("comm"))
		}
		tl.wait(t)
		slices.Sort(pids)
		return pids, slices.Compact(comms)
	}
	if pids, _ := pidsOf("--cgroup", "/"+name); !slices.Equal(pids, []int{inside.PID}) {
		t.Errorf("--cgroup /%s: pids %v, want only %d", name, pids, inside.PID)
	}
	// The same cgroup by its directory.
	if pids, _ := pidsOf("--cgroup", dir); !slices.Equal(pids, []int{inside.PID}) {
		t.Errorf("--cgroup %s: pids %v, want only %d", dir, pids, inside.PID)
	}
	pids, comms := pidsOf("-c", "fdops")
	if !slices.Contains(pids, inside.PID) || !slices.Contains(pids, outside.PID) || !slices.Equal(comms, []string{"fdops"}) {
		t.Errorf("-c fdops: pids %v (want %d and %d among them), names %v", pids, inside.PID, outside.PID, comms)
	}
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	t.Fatal("no cgroup2 mount")
	return ""
}

func TestTopBadInputGetsOneLineAndANonZeroExit(t *testing.T) {
	testutil.RequireRoot(t) // unknown pids are only checked past the privilege check
	assertRefused(t, []badInput{
		{"a zero interval", []string{"top", "-i", "0s"}, 2, "fdtrace: --interval 0s: must be positive\n"},
		{"negative iterations", []string{"top", "-n", "-1"}, 2, "fdtrace: --iterations -1: must not be negative\n"},
		{"an unknown sort key", []string{"top", "-s", "size"}, 2, "fdtrace: --sort \"size\": use one of utilization, growth, errors, fds, pid\n"},
		{"an argument", []string{"top", "1234"}, 2, "fdtrace: unexpected argument \"1234\"\n"},
		{"a pid that is not one", []string{"top", "-p", "0"}, 2, "fdtrace: --pid 0: not a process id\n"},
		{"an unknown pid", []string{"top", "-p", "999999999"}, 1, "fdtrace: pid 999999999: no such process\n"},
	})
}

// tmuxSession drives a shell in a tmux pane of 160x40.
type tmuxSession struct {
	t      *testing.T
	socket string
}

func newTmux(t *testing.T) *tmuxSession {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is not installed: the terminal tests must run on CI")
		}
		t.Skip("tmux is not installed")
	}
	s := &tmuxSession{t: t, socket: fmt.Sprintf("fdtrace-test-%d", os.Getpid())}
	s.run("-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "40", "env", "PS1=$ ", "sh")
	t.Cleanup(func() { exec.Command("tmux", "-L", s.socket, "kill-server").Run() })
	return s
}

func (s *tmuxSession) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", s.socket}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// typeLine types text into the pane and presses Enter.
func (s *tmuxSession) typeLine(text string) {
	s.run("send-keys", "-l", text)
	s.run("send-keys", "Enter")
}

func (s *tmuxSession) screen() string { return s.run("capture-pane", "-p") }

// waitFor polls the screen until ok accepts it.
func (s *tmuxSession) waitFor(what string, ok func(screen string) bool) string {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		screen := s.screen()
		if ok(screen) {
			return screen
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the screen did not show %s within 30s:\n%s", what, screen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sttyState is the pane's terminal settings, as stty -g prints them.
func (s *tmuxSession) sttyState(file string) string {
	s.t.Helper()
	os.Remove(file)
	s.typeLine("stty -g > " + file + ".tmp && mv " + file + ".tmp " + file)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("stty -g wrote nothing; screen:\n%s", s.screen())
	return ""
}

// startTopload starts testdata/workloads/topload.c and waits until it is
// ready; closing its stdin ends it.
func startTopload(t *testing.T, bin string, args ...string) int {
	t.Helper()
	cmd := exec.Command(bin, args...)
	_, out := testutil.StartPiped(t, cmd)
	line, err := out.ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("topload %v: %q, %v", args, line, err)
	}
	go io.Copy(io.Discard, out)
	return cmd.Process.Pid
}

// screenRows are the rows of the workloads, named tl-*, in screen order.
func screenRows(screen string) []string {
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^\s*\d+ (tl-\w+) `).FindAllStringSubmatch(screen, -1) {
		names = append(names, m[1])
	}
	return names
}

func TestTopOnATerminalSortsFiltersAndRestoresTheTerminal(t *testing.T) {
	testutil.RequireRoot(t)
	tm := newTmux(t)
	bin := testutil.BuildC(t, "topload", "-static")
	// name, open fds, soft limit, what it does every 20ms
	pids := map[string]int{}
	for _, w := range [][4]string{
		{"tl-over", "40", "32", "idle"}, // limit lowered below its fds: 125%
		{"tl-fail", "32", "32", "fail"}, // at its limit, EMFILE 50/s
		{"tl-crit", "90", "100", "idle"},
		{"tl-warn", "75", "100", "idle"},
		{"tl-grow", "10", "4096", "grow"}, // +50 fds/s
	} {
		pids[w[0]] = startTopload(t, bin, w[:]...)
	}
	var list []string
	for _, pid := range pids {
		list = append(list, strconv.Itoa(pid))
	}
	dir := t.TempDir()
	before := tm.sttyState(filepath.Join(dir, "stty-before"))
	launch := fmt.Sprintf("printf '\\033[2J\\033[H'; echo before-top; sh -c 'echo $$ > %s/pid; exec %s top -i 300ms -p %s'",
		dir, fdtraceBin, strings.Join(list, ","))
	allRows := func(screen string) bool { return len(screenRows(screen)) == 5 }

	tm.typeLine(launch)
	screen := tm.waitFor("the five workloads", allRows)
	fileNr := strings.Fields(readFileT(t, "/proc/sys/fs/file-nr"))
	if !regexp.MustCompile(`(?m)^files: \d+ allocated of fs.file-max ` + fileNr[2] + ` `).MatchString(screen) {
		t.Errorf("no header line with fs.file-max %s:\n%s", fileNr[2], screen)
	}
	for name, want := range map[string]string{
		"tl-over": `40\s+32\s+125\.0% CRIT`,
		"tl-fail": `32\s+32\s+100\.0% CRIT`,
		"tl-crit": `90\s+100\s+90\.0% CRIT`,
		"tl-warn": `75\s+100\s+75\.0% WARN`,
		"tl-grow": `\d+\s+4096\s+\d+\.\d%\s`,
	} {
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^\s*%d %s\s+%s`, pids[name], name, want))
		if !re.MatchString(screen) {
			t.Errorf("no row matching %s:\n%s", re, screen)
		}
	}
	if got, want := screenRows(screen), []string{"tl-over", "tl-fail", "tl-crit", "tl-warn", "tl-grow"}; !slices.Equal(got, want) {
		t.Errorf("sorted by utilization: %v, want %v", got, want)
	}

	for _, tc := range []struct{ key, sort, first string }{
		{"g", "growth", "tl-grow"}, {"e", "errors", "tl-fail"}, {"u", "utilization", "tl-over"},
	} {
		tm.run("send-keys", "-l", tc.key)
		tm.waitFor(fmt.Sprintf("%s first once sorted by %s", tc.first, tc.sort), func(screen string) bool {
			rows := screenRows(screen)
			return strings.Contains(screen, "sorted by "+tc.sort) && len(rows) == 5 && rows[0] == tc.first
		})
	}

	tm.run("send-keys", "-l", "/crit")
	tm.run("send-keys", "Enter")
	tm.waitFor("only tl-crit once filtered", func(screen string) bool {
		return strings.Contains(screen, `filter "crit"`) && slices.Equal(screenRows(screen), []string{"tl-crit"})
	})
	tm.run("send-keys", "Escape")
	tm.waitFor("every row once the filter is dropped", allRows)

	// A smaller terminal: the screen is drawn again to its size.
	tm.run("resize-window", "-x", "90", "-y", "20")
	tm.waitFor("the keys on the last of 20 lines, cut at 90 columns", func(screen string) bool {
		lines := strings.Split(strings.TrimSuffix(screen, "\n"), "\n")
		for _, l := range lines {
			if len(l) > 90 {
				return false
			}
		}
		return len(lines) == 20 && strings.HasPrefix(lines[19], "q quit") && allRows(screen)
	})
	tm.run("resize-window", "-x", "160", "-y", "40")

	// q, Ctrl-C and SIGTERM each leave the shell's screen and settings as
	// they were.
	for _, quit := range []string{"q", "C-c", "SIGTERM"} {
		if quit != "q" {
			tm.typeLine(launch)
			tm.waitFor("the five workloads", allRows)
		}
		switch quit {
		case "SIGTERM":
			pid, err := strconv.Atoi(strings.TrimSpace(readFileT(t, filepath.Join(dir, "pid"))))
			if err != nil {
				t.Fatal(err)
			}
			syscall.Kill(pid, syscall.SIGTERM)
		default:
			tm.run("send-keys", quit)
		}
		screen := tm.waitFor("the shell again after "+quit, func(screen string) bool {
			return strings.Contains(screen, "before-top") && !strings.Contains(screen, "fdtrace top -")
		})
		if strings.Contains(screen, "tl-") {
			t.Errorf("after %s, the screen still shows rows:\n%s", quit, screen)
		}
		if after := tm.sttyState(filepath.Join(dir, "stty-after")); after != before {
			t.Errorf("after %s, the terminal settings are %s, were %s", quit, after, before)
		}
	}
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSpace(b))
}
