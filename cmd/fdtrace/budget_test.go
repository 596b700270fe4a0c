package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

// startBudget starts fdtrace budget and waits until it has taken its
// first sample and said so.
func startBudget(t *testing.T, args ...string) (*exec.Cmd, *testutil.LockedBuffer, *testutil.LockedBuffer) {
	t.Helper()
	cmd := exec.Command(fdtraceBin, append([]string{"budget"}, args...)...)
	var stdout, stderr testutil.LockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForLine(t, &stderr, "fdtrace: measuring the fds of ")
	return cmd, &stdout, &stderr
}

// components turns a budget record's components into "name endpoint
// baseline/peak" lines.
func components(r record) []string {
	var out []string
	for _, c := range r["components"].([]any) {
		c := c.(map[string]any)
		line := fmt.Sprintf("%s %v/%v", c["name"], c["baseline"], c["peak"])
		if ep, ok := c["endpoint"]; ok {
			line = fmt.Sprintf("%s %s %v/%v", c["name"], ep, c["baseline"], c["peak"])
		}
		if ports, ok := c["ports"]; ok {
			line += fmt.Sprint(" ", ports)
		}
		out = append(out, line)
	}
	return out
}

func TestBudgetFindsThePeakOfEachComponentDuringTheWindow(t *testing.T) {
	w := startFdmix(t, false, "1024:4096")
	cmd, stdout, stderr := startBudget(t, "-p", strconv.Itoa(w.pid), "-d", "2s", "-i", "20ms", "--json")
	// 10 files, 3 pipes, 8 connections to B (16 fds) and 4 eventfds, held
	// for 300ms, then closed: every component goes up and back down.
	w.do(t, "burst 10 3 8 4 300")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("budget: %v\n%s", err, stderr.String())
	}
	recs := readRecords(t, stdout.String())
	if len(recs) != 1 || recs[0].str("type") != "budget" {
		t.Fatalf("want one budget record, got %v", recs)
	}
	r := recs[0]
	a, b, c, d := strconv.Itoa(w.a), strconv.Itoa(w.b), strconv.Itoa(w.c), strconv.Itoa(w.d)
	// Outbound by peak, then by endpoint.
	want := []string{
		"inbound 7/15 " + fmt.Sprint(map[string]any{b: 13.0, c: 2.0}),
		"outbound 127.0.0.1:" + b + " 5/13",
		"outbound 127.0.0.1:" + a + " 3/3",
		"outbound 127.0.0.1:" + d + " 2/2",
		"outbound [::1]:" + c + " 2/2",
		"files 6/16", "pipes 7/13", "other 15/19",
	}
	if got := components(r); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("components\n got %q\nwant %q", got, want)
	}
	for k, v := range map[string]int{"baseline": 47, "peak_open_fds": 83, "peak_total": 83, "with_margin": 125,
		"recommended_limit": 16384, "current_limit": 1024, "current_limit_hard": 4096} {
		if r.num(k) != v {
			t.Errorf("%s %d, want %d", k, r.num(k), v)
		}
	}
	if r["margin"] != 1.5 || r["interval_s"] != 0.02 || r["exited"] != false || r["interrupted"] != false {
		t.Errorf("margin %v interval_s %v exited %v interrupted %v", r["margin"], r["interval_s"], r["exited"], r["interrupted"])
	}
	if d := r["duration_s"].(float64); d < 1.9 || d > 3 || r.num("samples") < 20 {
		t.Errorf("%d samples over %vs, for -d 2s -i 20ms", r.num("samples"), d)
	}
	settings := r["settings"].(map[string]any)
	for k, v := range map[string]string{"systemd": "LimitNOFILE=16384:16384", "docker": "--ulimit nofile=16384:16384",
		"docker_compose": "ulimits:\n  nofile:\n    soft: 16384\n    hard: 16384", "shell": "ulimit -n 16384"} {
		if settings[k] != v {
			t.Errorf("settings[%s] = %q, want %q", k, settings[k], v)
		}
	}
	if stderr.String() != fmt.Sprintf("fdtrace: measuring the fds of fdmix (pid %d) for 2s, every 20ms; Ctrl-C to stop early\n", w.pid) {
		t.Errorf("stderr (not a terminal: no progress line):\n%q", stderr.String())
	}
}

func TestBudgetOfASteadyProcessIsItsBaselineAndALargeMarginRoundsUp(t *testing.T) {
	w := startFdmix(t, false, "")
	res := runFdtrace(t, "", "budget", "-p", strconv.Itoa(w.pid), "-d", "300ms", "-i", "50ms", "--margin", "400")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	var text []string
	for _, line := range strings.Split(res.stdout, "\n") {
		text = append(text, strings.Join(strings.Fields(line), " "))
	}
	b := strconv.Itoa(w.b)
	for _, want := range []string{
		"inbound connections 7 7 peaks by port: :" + b + " 5, :" + strconv.Itoa(w.c) + " 2",
		"outbound to 127.0.0.1:" + b + " 5 5",
		"files 6 6", "pipes 7 7", "other fds 15 15",
		"total 47 47 (at most 47 open at once)",
		"with a 400x margin: 18800",
		"recommended limit: 32768 (a power of two, at least 16384); now",
	} {
		found := false
		for _, line := range text {
			found = found || strings.HasPrefix(line, want)
		}
		if !found {
			t.Errorf("budget text has no line %q:\n%s", want, res.stdout)
		}
	}
}

func TestBudgetStopsWhenTheProcessExitsAndSaysSo(t *testing.T) {
	w := startFdmix(t, false, "")
	cmd, stdout, stderr := startBudget(t, "-p", strconv.Itoa(w.pid), "-d", "60s", "-i", "20ms", "--json")
	start := time.Now()
	// fdmix exits, and stays a zombie until the test reaps it at the end.
	if _, err := w.in.Write([]byte("exit\n")); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("budget: %v\n%s", err, stderr.String())
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("budget took %s to see the exit", took)
	}
	recs := readRecords(t, stdout.String())
	if len(recs) != 1 || recs[0]["exited"] != true || recs[0]["interrupted"] != false || recs[0].num("baseline") != 47 {
		t.Errorf("want one budget with exited true and the 47 fds as baseline: %v", recs)
	}
	if !strings.Contains(stderr.String(), fmt.Sprintf("fdtrace: pid %d exited after ", w.pid)) {
		t.Errorf("no word of the exit on stderr:\n%s", stderr.String())
	}
}

func TestBudgetStoppedByCtrlCStillReports(t *testing.T) {
	w := startFdmix(t, false, "")
	cmd, stdout, stderr := startBudget(t, "-p", strconv.Itoa(w.pid), "-d", "60s")
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("budget after SIGINT: %v\n%s", err, stderr.String())
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("budget took %s to stop", took)
	}
	if !strings.Contains(stdout.String(), "fd budget of pid "+strconv.Itoa(w.pid)+" (fdmix)") ||
		!strings.Contains(stdout.String(), "LimitNOFILE=") {
		t.Errorf("no report after Ctrl-C:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "fdtrace: stopped after ") {
		t.Errorf("no word of the early stop on stderr:\n%s", stderr.String())
	}
}
