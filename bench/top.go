package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// topResult is fdtrace top's own CPU use, refreshing every second on a
// busy host.
type topResult struct {
	window     time.Duration // CPU is measured over this long
	idle       int           // idle processes started for the run
	fdsEach    int64         // fds each of them holds
	processes  int           // records in top's last refresh
	cpuPercent float64       // user+sys, % of one core
	err        error
}

// Sizes of the fdtrace top run.
const (
	topIdleProcs      = 1000
	topIdleProcsQuick = 100
	topFDsEach        = 16
	topWindow         = 10 * time.Second
	topWindowQuick    = 3 * time.Second
)

// measureTop runs `fdtrace top --json -i 1s` host-wide while the mixed
// workload runs flat out and many idle processes hold fds, and reads its
// CPU time over a window that starts after its first refresh.
func (b *bench) measureTop() (r topResult) {
	n, window := topIdleProcs, topWindow
	if b.cfg.quick {
		n, window = topIdleProcsQuick, topWindowQuick
	}
	r.window, r.idle, r.fdsEach = window, n, topFDsEach
	var holders []*holder
	defer func() {
		for _, h := range holders {
			h.release()
		}
	}()
	for range n {
		h, err := startHolder(b.work, topFDsEach)
		if err != nil {
			r.err = err
			return r
		}
		holders = append(holders, h)
	}
	busy := exec.Command(b.work, "mixed", "1000000000000")
	if err := busy.Start(); err != nil {
		r.err = err
		return r
	}
	defer func() {
		busy.Process.Kill()
		busy.Wait()
	}()

	out := filepath.Join(b.tmp, "top.jsonl")
	t, err := startTracer("fdtrace top", []string{b.fdtrace, "top", "--json", "-i", "1s", "-o", out}, out,
		filepath.Join(b.tmp, "top.log"))
	if err != nil {
		r.err = err
		return r
	}
	// Ready once the first refresh is written; the second shows it at its
	// steady pace (the first reads each process's fd types from /proc).
	if err := t.waitReady(func() bool { return refreshes(out) >= 2 }, time.Minute); err != nil {
		r.err = err
		return r
	}
	startCPU, start := cpuTicks(t.pid()), time.Now()
	time.Sleep(window)
	endCPU, end := cpuTicks(t.pid()), time.Now()
	if err := t.stop(time.Minute); err != nil {
		r.err = err
		return r
	}
	r.cpuPercent = 100 * float64(endCPU-startCPU) / clockTicksPerSec / end.Sub(start).Seconds()
	r.processes = lastRefreshRecords(out)
	return r
}

// refreshes counts the refreshes top wrote: the distinct record times.
func refreshes(path string) int {
	seen := map[string]bool{}
	eachTime(path, func(t string) { seen[t] = true })
	return len(seen)
}

// lastRefreshRecords counts the records of the last refresh.
func lastRefreshRecords(path string) int {
	last, n := "", 0
	eachTime(path, func(t string) {
		if t != last {
			last, n = t, 0
		}
		n++
	})
	return n
}

// eachTime calls fn with the "time" of each whole line of a JSON-lines file.
func eachTime(path string, fn func(string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	for sc.Scan() {
		if t, ok := recordTime(sc.Text()); ok {
			fn(t)
		}
	}
}

// recordTime cuts the "time" field out of a record line.
func recordTime(line string) (string, bool) {
	_, rest, ok := strings.Cut(line, `"time":"`)
	if !ok || !strings.HasSuffix(line, "}") {
		return "", false
	}
	t, _, ok := strings.Cut(rest, `"`)
	return t, ok
}

func (r topResult) text() string {
	if r.err != nil {
		return "not measured: " + oneLine(r.err)
	}
	return fmt.Sprintf("%.1f%% of one core (user+sys over %v; %d processes in each refresh)",
		r.cpuPercent, r.window, r.processes)
}
