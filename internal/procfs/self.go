package procfs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SelfRSS is VmRSS and VmHWM of this process, in bytes.
func SelfRSS() (rss, hwm uint64, err error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		var dst *uint64
		switch k {
		case "VmRSS":
			dst = &rss
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		kib, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/self/status: %s: %w", k, err)
		}
		*dst = kib << 10
	}
	return rss, hwm, sc.Err()
}

// SelfBPFMapMemory adds up the memlock of every BPF map this process
// holds, as its fds' fdinfo gives it: maps and the ring buffer, global
// variables too.
func SelfBPFMapMemory() uint64 {
	ents, _ := os.ReadDir("/proc/self/fdinfo")
	seen := map[string]bool{}
	var total uint64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue
		}
		id, memlock, ok := BPFMapFdinfo(string(b))
		if ok && !seen[id] {
			seen[id] = true
			total += memlock
		}
	}
	return total
}

// SelfSeccomp is this process's seccomp mode (the Seccomp line of
// /proc/self/status): 0 none, 1 strict, 2 a filter; -1 if unknown.
func SelfSeccomp() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return n
			}
		}
	}
	return -1
}
