package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/symbolize"
)

func frames(funcs ...string) []symbolize.Frame {
	var st []symbolize.Frame
	for _, f := range funcs {
		st = append(st, symbolize.Frame{Func: f})
	}
	return st
}

func TestLeakyMarksALineForEveryLeakingFunction(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "testdata", "workloads", "leaky.c"))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := leakMarkers(string(src))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Split(string(src), "\n")
	for _, s := range leakSites {
		if l := text[lines[s.fn]-1]; !strings.Contains(l, "/* LEAK "+s.fn+" */") {
			t.Errorf("%s: line %d is %q", s.fn, lines[s.fn], l)
		}
	}
	if _, err := leakMarkers("int main(void) { return 0; }\n"); err == nil {
		t.Error("a source without markers gave no error")
	}
}

// leakyReport is what a right report of leaky says, with the leaking
// function's frame at line 10 for each call site.
func leakyReport() ([]events.Leak, map[string]int) {
	lines := map[string]int{}
	var leaks []events.Leak
	for _, s := range leakSites {
		lines[s.fn] = 10
		st := frames("open", s.fn, s.root)
		st[1].File, st[1].Line = "testdata/workloads/leaky.c", 10
		leaks = append(leaks, events.Leak{Type: "leak", Count: s.count, Stack: st})
	}
	leaks = append(leaks, events.Leak{Type: "leak", Count: 5, Preexisting: true})
	return leaks, lines
}

func TestARightLeakyReportHasEveryCallSiteAndRoot(t *testing.T) {
	leaks, lines := leakyReport()
	found, rooted, notes := checkLeakSites(leaks, lines)
	if found != len(leakSites) || rooted != len(leakSites) || notes != nil {
		t.Errorf("found %d, rooted %d, notes %q", found, rooted, notes)
	}
	// The five pre-existing fds have no stack.
	if got := meanDepth(leaks); got != 3 {
		t.Errorf("mean depth %v, want 3", got)
	}
}

func TestLeakySitesMissingCutShortOrElsewhereAreNamed(t *testing.T) {
	leaks, lines := leakyReport()
	leaks[0].Stack[1].Line = 11                      // open_config at the wrong line
	leaks[4].Stack = frames("open", "_IO_file_open") // open_log lost
	leaks[7].Stack = leaks[7].Stack[:2]              // accept_conn without start_thread
	found, rooted, notes := checkLeakSites(leaks, lines)
	if found != len(leakSites)-2 || rooted != len(leakSites)-2 {
		t.Errorf("found %d, rooted %d", found, rooted)
	}
	want := []string{
		"open_config: 0 of 7 fds at leaky.c:10",
		"open_log is in no stack",
		"accept_conn's stack ends at accept_conn, not start_thread",
	}
	if !slices.Equal(notes, want) {
		t.Errorf("notes %q, want %q", notes, want)
	}
}

func TestJSLeaksCountFilesUnderHandleUploadAndSocketsUnderHandleProxy(t *testing.T) {
	leaks := []events.Leak{
		{Count: 15, FDTypes: map[string]int{"file": 15}, Stack: frames("open", "handleUpload", "node::Start(int, char**)")},
		{Count: 5, FDTypes: map[string]int{"file": 5}, Stack: frames("open", "saveUpload", "handleUpload", "uv__io_poll")},
		{Count: 9, FDTypes: map[string]int{"socket AF_UNIX": 9}, Stack: frames("socket", "callBackend", "handleProxy", "main")},
		{Count: 10, FDTypes: map[string]int{"socket AF_UNIX": 10}, Stack: frames("accept4", "uv__accept", "main")},
	}
	found, rooted, of, notes := checkJSLeaks(leaks)
	if found != 29 || rooted != 24 || of != 29 {
		t.Errorf("found %d, rooted %d of %d", found, rooted, of)
	}
	want := []string{"9 of 10 backend sockets under handleProxy", "5 fds' stacks end at uv__io_poll"}
	if !slices.Equal(notes, want) {
		t.Errorf("notes %q, want %q", notes, want)
	}
}

func TestTheWorkloadsStackIsWholeOnlyWithEveryCaller(t *testing.T) {
	deep := []string{"open", "open_close"}
	for range deepCalls {
		deep = append(deep, "deep_call")
	}
	deep = append(deep, "run_loop", "main", "__libc_start_call_main")
	for _, c := range []struct {
		funcs []string
		deep  int
		want  string
	}{
		{[]string{"__libc_open64", "open_close", "run_loop", "main", "__libc_start_call_main", "__libc_start_main", "_start"}, 0, "whole"},
		{[]string{"open", "open_close", "socket_close"}, 0, "wrong: socket_close"},
		{[]string{"open", "open_close", ""}, 0, "wrong: an unnamed frame"},
		{[]string{"open"}, 0, "cut short"},
		{deep, deepCalls, "whole"},
		{deep[:26], deepCalls, "cut short"},
		{slices.Concat(deep[:5], deep[6:]), deepCalls, "wrong: run_loop"},
	} {
		if got := stackShape(c.funcs, c.deep); got != c.want {
			t.Errorf("stackShape(%q, %d) = %q, want %q", c.funcs, c.deep, got, c.want)
		}
	}
}

func TestOnBinaryRunsTheOtherBuildAfterItsWarmUp(t *testing.T) {
	m := onBinary(mode{key: "baseline"}, "/b/fdbench-work", 300*time.Millisecond)
	argv := []string{"/a/fdbench-work", "open", "1000"}
	got := m.wrap(nil, argv)
	if want := []string{"/b/fdbench-work", "open", "1000", "0", "300"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if argv[0] != "/a/fdbench-work" {
		t.Error("the workload's argv was changed in place")
	}
}
