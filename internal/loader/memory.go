package loader

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/procfs"
)

// Memory reads fdtrace's footprint: its resident memory, the memory of its
// BPF maps and the entries of the maps that grow. Counting entries walks
// those maps: about 100 ms per million fds.
func (k *Kernel) Memory() (events.Memory, error) {
	var m events.Memory
	var err error
	if m.RSSBytes, m.PeakRSSBytes, err = procfs.SelfRSS(); err != nil {
		return m, err
	}
	m.MapBytes = procfs.SelfBPFMapMemory()
	e := &m.MapEntries
	for _, c := range []struct {
		name string
		dst  *int
		n    func() (int, error)
	}{
		{"procs", &e.Procs, k.countProcs},
		{"fds", &e.FDs, func() (int, error) { return countEntries[bpfobj.FdtraceFdKey, bpfobj.FdtraceFdInfo](k.objs.Fds) }},
		{"errors", &e.Errors, func() (int, error) { return countEntries[bpfobj.FdtraceErrKey, uint64](k.objs.Errors) }},
		{"ports", &e.Ports, func() (int, error) {
			return countEntries[bpfobj.FdtracePortKey, bpfobj.FdtracePortCounts](k.objs.Ports)
		}},
		{"stacks", &e.Stacks, func() (int, error) { return countEntries[uint64, bpfobj.FdtraceStack](k.objs.Stacks) }},
		{"traced", &e.Traced, func() (int, error) { return countEntries[uint32, uint8](k.objs.Traced) }},
	} {
		if *c.dst, err = c.n(); err != nil {
			return m, fmt.Errorf("counting the entries of the %s map: %w", c.name, err)
		}
	}
	return m, nil
}

// countEntries counts a hash map's entries, in batches.
func countEntries[K, V any](m *ebpf.Map) (int, error) {
	total := 0
	err := eachEntry(m, func(K, *V) { total++ })
	return total, err
}

// countProcs counts the processes the kernel has counters for.
func (k *Kernel) countProcs() (int, error) {
	total := 0
	err := k.eachProc(func(uint32, *bpfobj.FdtraceProc) { total++ })
	return total, err
}
