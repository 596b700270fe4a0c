package loader

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/procfs"
)

// Memory reads fdtrace's footprint: its resident memory, the memory of its
// BPF maps and the entries of the maps that grow. Counting entries walks
// those maps: about 100 ms per million fds.
func (t *Tracer) Memory() (events.Memory, error) {
	var m events.Memory
	var err error
	if m.RSSBytes, m.PeakRSSBytes, err = selfRSS(); err != nil {
		return m, err
	}
	m.MapBytes = mapMemory()
	e := &m.MapEntries
	for _, c := range []struct {
		name string
		dst  *int
		n    func() (int, error)
	}{
		{"procs", &e.Procs, func() (int, error) { return countEntries[uint32, bpfobj.FdtraceProc](t.objs.Procs) }},
		{"fds", &e.FDs, func() (int, error) { return countEntries[bpfobj.FdtraceFdKey, bpfobj.FdtraceFdInfo](t.objs.Fds) }},
		{"errors", &e.Errors, func() (int, error) { return countEntries[bpfobj.FdtraceErrKey, uint64](t.objs.Errors) }},
		{"ports", &e.Ports, func() (int, error) {
			return countEntries[bpfobj.FdtracePortKey, bpfobj.FdtracePortCounts](t.objs.Ports)
		}},
		{"stacks", &e.Stacks, func() (int, error) { return countEntries[uint64, bpfobj.FdtraceStack](t.objs.Stacks) }},
		{"traced", &e.Traced, func() (int, error) { return countEntries[uint32, uint8](t.objs.Traced) }},
	} {
		if *c.dst, err = c.n(); err != nil {
			return m, fmt.Errorf("counting the entries of the %s map: %w", c.name, err)
		}
	}
	return m, nil
}

// countEntries counts a hash map's entries, in batches.
func countEntries[K, V any](m *ebpf.Map) (int, error) {
	keys, vals := make([]K, 256), make([]V, 256)
	var cursor ebpf.MapBatchCursor
	total := 0
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		total += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// selfRSS is VmRSS and VmHWM of fdtrace, in bytes.
func selfRSS() (rss, hwm uint64, err error) {
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

// mapMemory adds up the memlock of every BPF map fdtrace holds, as its
// fds' fdinfo gives it: maps and the ring buffer, global variables too.
func mapMemory() uint64 {
	ents, _ := os.ReadDir("/proc/self/fdinfo")
	seen := map[string]bool{}
	var total uint64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue
		}
		id, memlock, ok := procfs.BPFMapFdinfo(string(b))
		if ok && !seen[id] {
			seen[id] = true
			total += memlock
		}
	}
	return total
}
