package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/symbolize"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// Node's C++ parts are built without frame pointers: the stacks must go
// from libc through libuv, node and V8's builtins into the JavaScript
// frames (named from the perf map) and back out to _start.
func TestLeaksOfANodeServerNameTheJavaScriptFunctions(t *testing.T) {
	if !stacksHere(t) {
		return
	}
	node := testutil.RequireNode(t)
	const uploads, proxies = 20, 10
	script := filepath.Join(testutil.RepoRoot(t), "testdata", "workloads", "jsleaks.js")
	// V8 writes isolate-*-v8.log files in its working directory.
	r := startLeaks(t, t.TempDir(), "--top", "0", "--",
		node, "--perf-basic-prof", "--interpreted-frames-native-stack", script)
	port, ok := strings.CutPrefix(strings.TrimSpace(r.first), "ready ")
	if !ok {
		t.Fatalf("server said %q; stderr:\n%s", r.first, r.stderr.String())
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	get := func(path string) {
		resp, err := client.Get("http://127.0.0.1:" + port + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
	}
	for range uploads {
		get("/upload")
	}
	for range proxies {
		get("/proxy")
	}
	leaks := r.finish(t)
	for _, pid := range pidsOf(leaks) {
		os.Remove(fmt.Sprintf("/tmp/perf-%d.map", pid))
	}

	for _, tc := range []struct {
		handler, leaker, native string
		count                   int
		fdType                  string
	}{
		{"handleUpload", "saveUpload", "uv_fs_open", uploads, "file"},
		{"handleProxy", "callBackend", "uv_pipe_connect2", proxies, "socket AF_UNIX"},
	} {
		n, types, where, _ := byFunc(leaks, tc.handler)
		want := tc.count
		if n != want || types[tc.fdType] != want {
			t.Errorf("%s: %d fds %v, want %d %s", tc.handler, n, types, want, tc.fdType)
			for _, l := range leaks {
				if l.FDTypes[tc.fdType] > 0 && !hasFunc(l.Stack, tc.handler) {
					t.Logf("%d fds %v without %s: %s", l.Count, l.Syscalls, tc.handler, frameNames(l.Stack))
				}
			}
		}
		if where != "jsleaks.js:"+itoa(markerLine(t, script, "function "+tc.handler)) {
			t.Errorf("%s is at %s, want the line that defines it", tc.handler, where)
		}
		for _, l := range leaks {
			if !hasFunc(l.Stack, tc.handler) {
				continue
			}
			// From the syscall in libc through libuv and node's C++
			// (no frame pointers) and V8's builtins (frame pointers, no
			// CFI) to the leaking function, called by the handler.
			i, j := funcIndex(l.Stack, tc.leaker), funcIndex(l.Stack, tc.handler)
			if i < 0 || i > j || funcIndex(l.Stack, tc.native) < 0 || funcIndex(l.Stack, tc.native) > i {
				t.Errorf("%s: want %s < %s < %s: %s", tc.handler, tc.native, tc.leaker, tc.handler, frameNames(l.Stack))
			}
		}
	}
}

func pidsOf(leaks []events.Leak) []int {
	var pids []int
	for _, l := range leaks {
		if !slices.Contains(pids, l.PID) {
			pids = append(pids, l.PID)
		}
	}
	return pids
}

func funcIndex(stack []symbolize.Frame, fn string) int {
	return slices.IndexFunc(stack, func(f symbolize.Frame) bool { return f.Func == fn })
}

func frameNames(stack []symbolize.Frame) string {
	names := make([]string, len(stack))
	for i, f := range stack {
		names[i] = f.Func
		if f.Func == "" {
			names[i] = fmt.Sprintf("%#x", f.Addr)
		}
	}
	return strings.Join(names, " < ")
}
