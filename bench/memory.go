package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	if why := b.unavailable(modeByKey("leaks")); why != "" {
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

// raiseOpenFileLimit raises RLIMIT_NOFILE so that a holder, which
// inherits it, can open fdsPerHolder fds: the soft limit to the hard one,
// and the hard one too if needed (as root).
func raiseOpenFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return
	}
	lim.Max = max(lim.Max, fdsPerHolder+64)
	lim.Cur = lim.Max
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		// Not root: the soft limit up to the hard one is still allowed.
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

func openFileLimit() int64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	return int64(lim.Cur)
}

// systemFDRoom is how many more files the system allows (fs.file-max less
// those allocated), with a margin for everything else.
func systemFDRoom() int64 {
	f := strings.Fields(readFile("/proc/sys/fs/file-nr"))
	if len(f) != 3 {
		return 0
	}
	used, _ := strconv.ParseInt(f[0], 10, 64)
	limit, _ := strconv.ParseInt(f[2], 10, 64)
	return limit - used - 100000
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

// cpuTicks is utime+stime of pid, in clock ticks.
func cpuTicks(pid int) int64 {
	s := readFile(fmt.Sprintf("/proc/%d/stat", pid))
	// The command name may hold spaces: fields start after its ')'.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

func processMemKiB(pid int) (hwm, rss int64) {
	s := readFile(fmt.Sprintf("/proc/%d/status", pid))
	return procStatusKiB(s, "VmHWM"), procStatusKiB(s, "VmRSS")
}

// procStatusKiB reads "Key:  N kB" from a /proc status-like text.
func procStatusKiB(text, key string) int64 {
	for _, l := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// bpfMapMemory sums the memlock of the BPF maps pid holds fds of, each map
// counted once.
func bpfMapMemory(pid int) (bytes int64, maps int) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, _ := os.ReadDir(dir)
	seen := map[string]bool{}
	for _, e := range ents {
		id, memlock, ok := parseMapFdinfo(readFile(filepath.Join(dir, e.Name())))
		if ok && !seen[id] {
			seen[id] = true
			bytes += memlock
		}
	}
	return bytes, len(seen)
}

// parseMapFdinfo reads map_id and memlock from the fdinfo of a BPF map fd;
// ok is false for other fds.
func parseMapFdinfo(text string) (id string, memlock int64, ok bool) {
	for _, l := range strings.Split(text, "\n") {
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "map_id":
			id, ok = v, true
		case "memlock":
			memlock, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return id, memlock, ok
}
