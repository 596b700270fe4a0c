package main

import (
	"fmt"
	"io"
	"os"
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

// requireUring skips where io_uring's fds are not seen (before 6.1: the
// leaks test of the fallback covers those kernels).
func requireUring(t *testing.T) {
	t.Helper()
	if !stacksHere(t) {
		t.Skip("no stacks on this kernel")
	}
	if !loader.ProbeFeatures().UringComplete {
		t.Skip("io_uring's tracepoints do not give the request on this kernel (before 6.1)")
	}
}

// io_uring workloads that leak what they open and accept: leaks has a
// group of exactly those fds, made by io_uring, whose stack names the
// function that submitted them, whether the requests completed inline, in
// an io-wq worker or as a multishot accept's completions.
func TestLeaksNamesTheFunctionsThatSubmittedIOUringAcceptsAndOpens(t *testing.T) {
	requireUring(t)
	accepts := testutil.BuildC(t, "uring_accept", "-static")
	for _, mode := range []string{"single", "async", "multi"} {
		t.Run("accept "+mode, func(t *testing.T) {
			r := startLeaks(t, "", "--min-age", "0", "-i", "100ms", "--", accepts, mode)
			var fds [3]int
			if _, err := fmt.Sscanf(r.first, "accepted %d %d %d\n", &fds[0], &fds[1], &fds[2]); err != nil {
				t.Fatalf("workload said %q; stderr:\n%s", r.first, r.stderr.String())
			}
			assertUringGroup(t, r, fds[:], "submit_accepts")
		})
	}
	t.Run("openat", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "opened-by-io_uring")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		r := startLeaks(t, "", "--min-age", "0", "-i", "100ms", "--", testutil.BuildC(t, "uring_open", "-static"), path)
		io.WriteString(r.stdin, "go\n")
		var fd int
		line, err := r.stdout.ReadString('\n')
		if _, err2 := fmt.Sscanf(line, "ready %d\n", &fd); err != nil || err2 != nil {
			t.Fatalf("workload said %q, then %q; stderr:\n%s", r.first, line, r.stderr.String())
		}
		assertUringGroup(t, r, []int{fd}, "uring_openat")
	})
}

// assertUringGroup waits for a report with a group of exactly fds, made by
// io_uring with fn in their stack, then checks the report at the exit.
func assertUringGroup(t *testing.T, r *leaksRun, fds []int, fn string) {
	t.Helper()
	isGroup := func(l events.Leak) bool { return l.Syscalls["io_uring"] > 0 }
	check := func(name string, report []events.Leak) {
		i := slices.IndexFunc(report, isGroup)
		if i < 0 {
			t.Fatalf("%s: no group of io_uring's fds in %+v", name, report)
		}
		l := report[i]
		if l.Count != len(fds) || !slices.Equal(l.FDs, fds) || l.Syscalls["io_uring"] != len(fds) {
			t.Errorf("%s: io_uring's group has %d fds %v made by %v, want %v", name, l.Count, l.FDs, l.Syscalls, fds)
		}
		if !slices.ContainsFunc(l.Stack, func(f symbolize.Frame) bool { return f.Func == fn }) {
			t.Errorf("%s: io_uring's group's stack %v does not name %s", name, l.Stack, fn)
		}
	}
	now := time.Now()
	check("a report while it runs", r.waitReport(t, now, func(report []events.Leak) bool {
		return symbolized(report) && slices.ContainsFunc(report, isGroup)
	}))
	var atExit []events.Leak
	for _, l := range r.finish(t) {
		if l.AtExit {
			atExit = append(atExit, l)
		}
	}
	check("the report at its exit", atExit)
	if strings.Contains(r.stderr.String(), "lost") {
		t.Errorf("stderr says events were lost:\n%s", r.stderr.String())
	}
}
