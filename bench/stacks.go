package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// The Stacks section: fdtrace's two ways of walking user stacks (--stack-mode
// fp and dwarf) side by side, on code built with and without frame
// pointers. Correctness and depth come from testdata/workloads/leaky.c
// (and jsleaks.js when node is installed), whose leaks are known; the cost
// of a stack from bench/workload.c's open+close loop, shallow and deep.

// stackModes are the values of --stack-mode, in the order of the tables.
var stackModes = []string{"fp", "dwarf"}

// build is one way of compiling the C workloads.
type build struct {
	label  string // as shown in the tables
	cflags string
}

var builds = []build{
	{"frame pointers", "-fno-omit-frame-pointer"},
	{"no frame pointers", "-fomit-frame-pointer"},
}

// stackResult is what the Stacks section measured.
type stackResult struct {
	checks []stackCheck
	costs  []*stackCost
	ready  map[string][]time.Duration // stack mode → how long fdtrace leaks took to be ready
	err    error                      // nothing could be measured
}

// stackCheck is one run of a leaking workload under fdtrace leaks.
type stackCheck struct {
	workload, built, mode string
	found, of             int      // leaks attributed right
	unit                  string   // what found counts: "call sites" or "fds"
	rooted, rootOf        int      // stacks that reach the program's root
	root                  string   // its name, for the table
	depth                 float64  // mean frames of the reported stacks
	notes                 []string // what was wrong
	skip                  string   // why it did not run
	err                   error
}

// leakSite is a call site of leaky.c that leaks, with leakyArgs.
type leakSite struct {
	fn    string
	count int    // fds it leaks
	root  string // the outermost function its stack must reach
}

// leakyArgs are leaky's arguments: files, sockets, pipes, epolls, fopens,
// openats, dups, accepts, child.
var leakyArgs = []string{"7", "5", "3", "2", "2", "3", "4", "6", "1"}

var leakSites = []leakSite{
	{"open_config", 7, "main"},
	{"connect_db", 5, "main"},
	{"make_pipe", 6, "main"},
	{"make_epoll", 2, "main"},
	{"open_log", 2, "main"},
	{"open_relative", 3, "main"},
	{"dup_high", 4, "main"},
	{"accept_conn", 6, "start_thread"}, // in a thread of its own
	{"child_open", 1, "main"},          // in a forked child
}

// Requests sent to jsleaks.js: each /upload leaks a file, each /proxy an
// AF_UNIX socket.
const (
	jsUploads = 20
	jsProxies = 10
)

// warmup is how long, untimed, the workload runs before its timed loop in
// the cost runs: in dwarf mode a process's first stacks are unwound in user
// space, until its files' unwind tables are loaded.
func (c config) warmup() time.Duration {
	if c.quick {
		return 50 * time.Millisecond
	}
	return 300 * time.Millisecond
}

// measureStacks runs the Stacks section.
func (b *bench) measureStacks(root string, runTime time.Duration) *stackResult {
	res := &stackResult{ready: map[string][]time.Duration{}}
	if !b.tools["gcc"].ok() {
		res.err = errors.New(b.tools["gcc"].note)
		return res
	}
	// The bench's own workload is the first build: with frame pointers.
	works := map[string]string{builds[0].label: b.work}
	for _, bd := range builds[1:] {
		bin, err := b.buildVariant(bd)
		if err != nil {
			res.err = err
			return res
		}
		works[bd.label] = bin
	}
	logf("stacks: leaky.c under each stack mode")
	res.checks = append(res.checks, b.checkLeaky(root)...)
	logf("stacks: jsleaks.js under each stack mode")
	res.checks = append(res.checks, b.checkJSLeaks(root)...)
	logf("stacks: cost per stack")
	res.costs = b.measureStackCosts(works, runTime, res.ready)
	return res
}

// buildVariant builds the workload with bd's flags, as dir/fdbench-work so
// that the tracers' comm filter sees it.
func (b *bench) buildVariant(bd build) (string, error) {
	dir := filepath.Join(b.tmp, strings.ReplaceAll(bd.label, " ", "-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, workComm)
	return bin, gcc(bin, "-O2", "-g", bd.cflags, "-Wall", filepath.Join(b.tmp, "workload.c"))
}

func gcc(out string, args ...string) error {
	args = append([]string{"-o", out}, args...)
	if msg, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("gcc %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return nil
}

// checkLeaky builds leaky.c both ways and runs it under fdtrace leaks in
// each stack mode.
func (b *bench) checkLeaky(root string) []stackCheck {
	src := filepath.Join(root, "testdata", "workloads", "leaky.c")
	text, err := os.ReadFile(src)
	var lines map[string]int
	if err == nil {
		lines, err = leakMarkers(string(text))
	}
	var checks []stackCheck
	for _, bd := range builds {
		bin := filepath.Join(b.tmp, "leaky-"+strings.ReplaceAll(bd.label, " ", "-"))
		berr := err
		if berr == nil {
			berr = gcc(bin, "-O2", "-g", "-pthread", bd.cflags, src)
		}
		for _, mode := range stackModes {
			c := stackCheck{workload: "leaky.c", built: "gcc -O2, " + bd.label, mode: mode,
				of: len(leakSites), unit: "call sites", rootOf: len(leakSites), root: "main"}
			if berr != nil {
				c.err = berr
				checks = append(checks, c)
				continue
			}
			leaks, err := b.runLeaks(mode, append([]string{bin}, leakyArgs...), nil)
			if err != nil {
				c.err = err
			} else {
				c.found, c.rooted, c.notes = checkLeakSites(leaks, lines)
				c.depth = meanDepth(leaks)
			}
			logf("stacks: leaky, %s, %s: %d/%d at the right line, %d/%d reach the root, %.1f frames",
				bd.label, mode, c.found, c.of, c.rooted, c.rootOf, c.depth)
			checks = append(checks, c)
		}
	}
	return checks
}

// leakMarkers finds the lines marked /* LEAK name */ in leaky.c.
func leakMarkers(src string) (map[string]int, error) {
	lines := map[string]int{}
	for i, l := range strings.Split(src, "\n") {
		if _, rest, ok := strings.Cut(l, "/* LEAK "); ok {
			name, _, _ := strings.Cut(rest, " */")
			lines[name] = i + 1
		}
	}
	for _, s := range leakSites {
		if lines[s.fn] == 0 {
			return nil, fmt.Errorf("leaky.c has no /* LEAK %s */ line", s.fn)
		}
	}
	return lines, nil
}

// checkLeakSites counts the call sites whose fds all have a stack with the
// leaking function at its marked line, and those whose stacks reach their
// root; notes say what was wrong with the others.
func checkLeakSites(leaks []events.Leak, lines map[string]int) (found, rooted int, notes []string) {
	for _, s := range leakSites {
		atLine, groups, whole := 0, 0, true
		end := ""
		for _, l := range leaks {
			i := slices.IndexFunc(l.Stack, func(f symbolize.Frame) bool { return f.Func == s.fn })
			if i < 0 {
				continue
			}
			groups++
			if f := l.Stack[i]; filepath.Base(f.File) == "leaky.c" && f.Line == lines[s.fn] {
				atLine += l.Count
			}
			if !slices.ContainsFunc(l.Stack, func(f symbolize.Frame) bool { return f.Func == s.root }) {
				whole = false
				end = lastFunc(l.Stack)
			}
		}
		switch {
		case groups == 0:
			notes = append(notes, s.fn+" is in no stack")
		case atLine != s.count:
			notes = append(notes, fmt.Sprintf("%s: %d of %d fds at leaky.c:%d", s.fn, atLine, s.count, lines[s.fn]))
		default:
			found++
		}
		switch {
		case groups > 0 && whole:
			rooted++
		case groups > 0:
			notes = append(notes, fmt.Sprintf("%s's stack ends at %s, not %s", s.fn, end, s.root))
		}
	}
	return found, rooted, notes
}

// meanDepth is the mean number of frames walked (inlined calls not
// counted) of the stacks reported.
func meanDepth(leaks []events.Leak) float64 {
	var frames, stacks int
	for _, l := range leaks {
		if len(l.Stack) == 0 {
			continue
		}
		stacks++
		frames += len(walked(l.Stack))
	}
	if stacks == 0 {
		return 0
	}
	return float64(frames) / float64(stacks)
}

// walked is the function names of the frames the unwinder found, innermost
// first: frames inlined into the next one are left out.
func walked(stack []symbolize.Frame) []string {
	var funcs []string
	for _, f := range stack {
		if !f.Inlined {
			funcs = append(funcs, f.Func)
		}
	}
	return funcs
}

func lastFunc(stack []symbolize.Frame) string {
	if f := walked(stack); len(f) > 0 && f[len(f)-1] != "" {
		return f[len(f)-1]
	}
	return "an unnamed frame"
}

// checkJSLeaks runs jsleaks.js under fdtrace leaks in each stack mode and
// sends it the requests that leak.
func (b *bench) checkJSLeaks(root string) []stackCheck {
	script := filepath.Join(root, "testdata", "workloads", "jsleaks.js")
	node := b.tools["node"]
	var checks []stackCheck
	for _, mode := range stackModes {
		c := stackCheck{workload: "jsleaks.js", built: "Node.js " + node.version, mode: mode,
			of: jsUploads + jsProxies, unit: "fds", root: "node::Start"}
		if !node.ok() {
			c.built, c.skip = "Node.js", "not measured: "+node.note
			checks = append(checks, c)
			continue
		}
		argv := []string{node.path, "--perf-basic-prof", "--interpreted-frames-native-stack", script}
		leaks, err := b.runLeaks(mode, argv, sendJSRequests)
		removePerfMaps(leaks)
		if err != nil {
			c.err = err
			checks = append(checks, c)
			continue
		}
		c.found, c.rooted, c.rootOf, c.notes = checkJSLeaks(leaks)
		c.depth = meanDepth(leaks)
		logf("stacks: jsleaks, %s: %d/%d fds found, %d/%d reach node::Start, %.1f frames",
			mode, c.found, c.of, c.rooted, c.rootOf, c.depth)
		checks = append(checks, c)
	}
	return checks
}

// sendJSRequests reads the port from jsleaks' "ready PORT" and sends it
// the requests that leak, one connection each.
func sendJSRequests(ready string) error {
	port, ok := strings.CutPrefix(ready, "ready ")
	if !ok {
		return fmt.Errorf("jsleaks.js said %q, want ready PORT", ready)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string, n int) error {
		for range n {
			resp, err := client.Get("http://127.0.0.1:" + port + path)
			if err != nil {
				return fmt.Errorf("GET %s: %w", path, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", path, resp.Status)
			}
		}
		return nil
	}
	if err := get("/upload", jsUploads); err != nil {
		return err
	}
	return get("/proxy", jsProxies)
}

// checkJSLeaks counts the leaked files of the groups whose stack has
// handleUpload and the AF_UNIX sockets of those with handleProxy or
// callBackend, and how many of those reach node::Start.
func checkJSLeaks(leaks []events.Leak) (found, rooted, of int, notes []string) {
	has := func(l events.Leak, fns ...string) bool {
		return slices.ContainsFunc(l.Stack, func(f symbolize.Frame) bool { return slices.Contains(fns, f.Func) })
	}
	var uploads, proxies int
	ends := map[string]int{} // where the stacks that miss the root end
	for _, l := range leaks {
		n := 0
		switch {
		case has(l, "handleUpload"):
			n = l.FDTypes["file"]
			uploads += n
		case has(l, "handleProxy", "callBackend"):
			n = l.FDTypes["socket AF_UNIX"]
			proxies += n
		default:
			continue
		}
		of += n
		if slices.ContainsFunc(l.Stack, isNodeRoot) {
			rooted += n
		} else {
			ends[lastFunc(l.Stack)] += n
		}
	}
	if uploads != jsUploads {
		notes = append(notes, fmt.Sprintf("%d of %d uploaded files under handleUpload", uploads, jsUploads))
	}
	if proxies != jsProxies {
		notes = append(notes, fmt.Sprintf("%d of %d backend sockets under handleProxy", proxies, jsProxies))
	}
	for _, end := range slices.Sorted(maps.Keys(ends)) {
		notes = append(notes, fmt.Sprintf("%d fds' stacks end at %s", ends[end], end))
	}
	return uploads + proxies, rooted, of, notes
}

// isNodeRoot is node's main, which calls node::Start and may be inlined.
func isNodeRoot(f symbolize.Frame) bool {
	return f.Func == "main" || strings.HasPrefix(f.Func, "node::Start(")
}

// removePerfMaps deletes the perf maps node --perf-basic-prof left in /tmp.
func removePerfMaps(leaks []events.Leak) {
	for _, l := range leaks {
		if l.Comm == "node" {
			os.Remove(fmt.Sprintf("/tmp/perf-%d.map", l.PID))
		}
	}
}

// runLeaks runs `fdtrace leaks --json --top 0 --stack-mode MODE -- argv`,
// waits for the workload's first line and hands it to drive (if not nil),
// then closes the workload's stdin and returns the leaks it had at exit.
func (b *bench) runLeaks(mode string, argv []string, drive func(first string) error) ([]events.Leak, error) {
	out := filepath.Join(b.tmp, "stacks.jsonl")
	os.Remove(out)
	args := append([]string{"leaks", "--json", "--top", "0", "--stack-mode", mode, "-o", out, "--"}, argv...)
	cmd := exec.Command(b.fdtrace, args...)
	cmd.Dir = b.tmp // node --perf-basic-prof writes a V8 log where it runs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = w, &stderr
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, err
	}
	first := make(chan string, 1)
	go func() {
		br := bufio.NewReader(r)
		l, _ := br.ReadString('\n')
		first <- strings.TrimSpace(l)
		_, _ = io.Copy(io.Discard, br)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fail := func(what string) ([]events.Leak, error) {
		_ = cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("fdtrace leaks --stack-mode %s -- %s: %s: %s", mode, filepath.Base(argv[len(argv)-1]), what, lastLine(stderr.String()))
	}
	var derr error
	select {
	case l := <-first:
		if l == "" {
			return fail("the workload printed nothing")
		}
		if drive != nil {
			derr = drive(l)
		}
	case <-time.After(time.Minute):
		return fail("the workload was not ready after a minute")
	}
	stdin.Close()
	select {
	case err = <-exited:
	case <-time.After(time.Minute):
		return fail("still running a minute after its input closed")
	}
	if err != nil {
		return nil, fmt.Errorf("fdtrace leaks --stack-mode %s: %v: %s", mode, err, lastLine(stderr.String()))
	}
	if derr != nil {
		return nil, derr
	}
	return readLeaks(out)
}

func readLeaks(path string) ([]events.Leak, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var leaks []events.Leak
	for _, line := range strings.Split(strings.TrimSpace(string(text)), "\n") {
		var l events.Leak
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			return nil, fmt.Errorf("leak record %q: %w", line, err)
		}
		if l.Type == "leak" {
			leaks = append(leaks, l)
		}
	}
	return leaks, nil
}
