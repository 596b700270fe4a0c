package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fdtrace/fdtrace/internal/procfs"
)

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

// clockTicksPerSec is USER_HZ, the unit of /proc/PID/stat times: 100 on
// every Linux architecture fdtrace supports.
const clockTicksPerSec = 100

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

// processCPU is the CPU time the threads of pid have run for, summed from
// their schedstat (nanoseconds, where stat has clock ticks).
func processCPU(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var ns int64
	for _, path := range tasks {
		if f := strings.Fields(readFile(path)); len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			ns += n
		}
	}
	return time.Duration(ns)
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
		id, memlock, ok := procfs.BPFMapFdinfo(readFile(filepath.Join(dir, e.Name())))
		if ok && !seen[id] {
			seen[id] = true
			bytes += int64(memlock)
		}
	}
	return bytes, len(seen)
}
