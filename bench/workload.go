package main

import (
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// workload is one loop of bench/workload.c, or a server under load.
type workload struct {
	arg   string  // the mode argument of fdbench-work
	label string  // as shown in the tables
	fdOps float64 // fd events (creations + closes) per op
	// server: the server the workload loads, instead of fdbench-work;
	// its runs last as many seconds as its iterations say.
	server *server
	// unseen: why the comparison tracers' syscall probes do not see its
	// fds ("": they do).
	unseen string
	// floorHooks: what the floor hooks besides the syscalls', as fdtrace
	// does for this workload (see runFloor).
	floorHooks []string
}

var workloads = []workload{
	{arg: "open", label: "open+close /dev/null", fdOps: 2},
	{arg: "socket", label: "socket+close", fdOps: 2},
	{arg: "pipe", label: "pipe2+close×2", fdOps: 4},
	{arg: "accept", label: "loopback connect+accept4+close×2", fdOps: 4},
	{arg: "mixed", label: "mixed (openat/socket/pipe2, 64-fd window)", fdOps: 8.0 / 3},
	{arg: "uring", label: "io_uring openat+close", fdOps: 2,
		unseen:     "its probes are syscalls', and io_uring opens and closes without one",
		floorHooks: []string{floorUring}},
	{arg: "read", label: "read(2) of a byte, a fanotify group open (fdtrace hooks every read then)", fdOps: 0,
		unseen:     "its probes do not see the fds a read installs (a fanotify group's events), so they hook no read",
		floorHooks: []string{floorRead}},
	{arg: "nginx", label: "nginx, wrk -c16, a connection per request (seconds; ns/op: nginx's CPU)", fdOps: 4, server: nginx},
}

// comm is the name of the workload's processes.
func (w workload) comm() string {
	if w.server != nil {
		return w.server.comm
	}
	return workComm
}

// The syscalls every comparison tracer hooks: the fd creators the workloads
// call, at sys_exit, and close at sys_enter (as fdtrace does).
var (
	creatorSyscalls = []string{"openat", "socket", "pipe2", "accept4"}
	straceSyscalls  = "openat,socket,pipe2,accept4,close"
)

// workResult is what one run of the workload printed.
type workResult struct {
	nsPerOp  float64
	ops      int64
	elapsed  time.Duration
	fdEvents int64 // fds the workload created and closed
}

// opsPerSec is the workload's rate during its run.
func (w workResult) opsPerSec() float64 {
	if w.elapsed <= 0 {
		return 0
	}
	return float64(w.ops) / w.elapsed.Seconds()
}

// parseWorkOutput reads "ns_per_op=F ops=N elapsed_ns=N".
func parseWorkOutput(out string) (workResult, error) {
	var r workResult
	fields := strings.Fields(lastLine(out))
	seen := 0
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		var err error
		switch k {
		case "ns_per_op":
			r.nsPerOp, err = strconv.ParseFloat(v, 64)
		case "ops":
			r.ops, err = strconv.ParseInt(v, 10, 64)
		case "elapsed_ns":
			var ns int64
			ns, err = strconv.ParseInt(v, 10, 64)
			r.elapsed = time.Duration(ns)
		case "fd_events": // not from every workload
			r.fdEvents, err = strconv.ParseInt(v, 10, 64)
		default:
			continue
		}
		if err != nil {
			return r, fmt.Errorf("workload output %q: %w", out, err)
		}
		if k != "fd_events" {
			seen++
		}
	}
	if seen != 3 {
		return r, fmt.Errorf("workload output %q: want ns_per_op, ops and elapsed_ns", strings.TrimSpace(out))
	}
	return r, nil
}

// runWorkload runs argv (the workload, maybe under a wrapper like strace)
// and parses what the workload printed.
func runWorkload(argv []string) (workResult, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return workResult{}, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, lastLine(stderr.String()))
	}
	return parseWorkOutput(string(out))
}

// workArgv is the command line of n ops of w, at rate ops/s (0: flat out).
func (b *bench) workArgv(w workload, n int64, rate float64) []string {
	argv := []string{b.work, w.arg, strconv.FormatInt(n, 10)}
	if rate > 0 {
		argv = append(argv, strconv.FormatInt(int64(rate), 10))
	}
	return argv
}

// calibrate picks, per workload, the iterations that make an untraced run
// last about target.
func (b *bench) calibrate(target time.Duration) (map[string]int64, error) {
	iters := map[string]int64{}
	for _, w := range workloads {
		if w.server != nil {
			iters[w.arg] = serverSeconds(b.cfg.quick)
			continue
		}
		if b.cfg.iterations > 0 {
			iters[w.arg] = int64(b.cfg.iterations)
			continue
		}
		r, err := runWorkload(b.workArgv(w, 5000, 0))
		if err != nil {
			return nil, err
		}
		iters[w.arg] = roundIterations(float64(target) / r.nsPerOp)
		logf("calibrated %-7s %7.0f ns/op untraced: %d iterations per run", w.arg, r.nsPerOp, iters[w.arg])
	}
	return iters, nil
}

// serverSeconds is how long a server workload's run lasts.
func serverSeconds(quick bool) int64 {
	if quick {
		return 1
	}
	return 3
}

// roundIterations keeps two significant digits, and at least 1000.
func roundIterations(n float64) int64 {
	if n < 1000 {
		return 1000
	}
	p := math.Pow(10, math.Floor(math.Log10(n))-1)
	return int64(math.Round(n/p) * p)
}
