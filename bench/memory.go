package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// memResult is fdtrace leaks' memory while the workload holds fds open.
type memResult struct {
	fds      int64 // fds held open by the holder processes
	procs    int
	hwmKiB   int64 // fdtrace's VmHWM, read just before stopping it
	rssKiB   int64
	maxRSS   int64 // KiB, from wait4: the peak including the final report
	mapBytes int64 // memlock of fdtrace's BPF maps
	maps     int
	settle   time.Duration // from the last fd opened until fdtrace went idle
	report   time.Duration // from SIGINT to exit: the final report
	warnings string        // what fdtrace said on stderr
	err      error
}

// fdsPerHolder is how many fds one holder process opens.
const fdsPerHolder = 10000

// measureMemory starts fdtrace leaks, then processes that open total fds
// between them and hold them, and reads fdtrace's memory once it is idle.
func (b *bench) measureMemory(total int64) (r memResult) {
	perProc := min(int64(fdsPerHolder), openFileLimit()-16)
	r.fds = total
	if why := b.unavailable(modeByKey("leaks"), workloads[0]); why != "" {
		r.err = errors.New(why)
		return r
	}
	t, err := b.startFdtrace("leaks", "--json")
	if err != nil {
		r.err = err
		return r
	}
	var holders []*holder
	defer func() {
		for _, h := range holders {
			h.release()
		}
	}()
	for left := total; left > 0; left -= perProc {
		h, err := startHolder(b.work, min(left, perProc))
		if err != nil {
			t.kill()
			r.err = err
			return r
		}
		holders = append(holders, h)
	}
	r.procs = len(holders)
	opened := time.Now()
	waitIdle(t.pid(), time.Minute)
	r.settle = time.Since(opened)
	r.hwmKiB, r.rssKiB = processMemKiB(t.pid())
	r.mapBytes, r.maps = bpfMapMemory(t.pid())
	stopping := time.Now()
	r.err = t.stop(10 * time.Minute)
	r.report = time.Since(stopping)
	r.maxRSS = t.maxRSSKiB()
	r.warnings = strings.TrimSpace(strings.ReplaceAll(t.log(), "\n", " "))
	return r
}

// holder is a workload process holding fds open until released.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startHolder(work string, n int64) (*holder, error) {
	cmd := exec.Command(work, "hold", strconv.FormatInt(n, 10))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &holder{cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		h.release()
		return nil, fmt.Errorf("holder of %d fds did not get ready: %q %v", n, line, err)
	}
	return h, nil
}

// release closes the holder's stdin, on which it exits.
func (h *holder) release() {
	h.stdin.Close()
	_ = h.cmd.Wait()
}

// waitIdle waits until pid has used at most one clock tick of CPU in each of
// two consecutive 200 ms windows: fdtrace has caught up with the events.
func waitIdle(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	last, quiet := cpuTicks(pid), 0
	for quiet < 2 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		now := cpuTicks(pid)
		if now-last <= 1 {
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
}
