package procfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// selfStatus is /proc/self/status, its values by name.
func selfStatus() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out, nil
}

// SelfRSS is VmRSS and VmHWM of this process, in bytes.
func SelfRSS() (rss, hwm uint64, err error) {
	status, err := selfStatus()
	if err != nil {
		return 0, 0, err
	}
	kib := func(k string) uint64 {
		v, ok := status[k]
		if !ok {
			return 0
		}
		n, e := strconv.ParseUint(strings.TrimSuffix(v, " kB"), 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("/proc/self/status: %s: %w", k, e)
		}
		return n << 10
	}
	return kib("VmRSS"), kib("VmHWM"), err
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
	status, err := selfStatus()
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(status["Seccomp"])
	if err != nil {
		return -1
	}
	return n
}
