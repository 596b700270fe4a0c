package loader

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
)

// PortCounts are the refused and dropped connections of one listening
// port of one process.
type PortCounts struct {
	PID int
	// StartNs is when the process started (CLOCK_MONOTONIC): it tells a
	// reused pid apart.
	StartNs uint64
	Port    uint16
	// Refused counts the accepts on the port that failed for lack of fds
	// or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).
	Refused uint64
	// Dropped counts the connections accepted after a refusal and closed
	// untouched: the clients a runtime's drain of its queue reset.
	Dropped uint64
	// Draining: a refused accept began a drain that has not ended yet.
	Draining bool
}

// portBatch is how many ports map entries one syscall reads.
const portBatch = 256

// Ports lists the per-port counts of the processes the kernel counts,
// ordered by pid and port: cheap enough to read at every refresh of a live
// view. The counts of an exited process go with its last record.
func (t *Tracer) Ports() ([]PortCounts, error) {
	var out []PortCounts
	err := t.eachPort(func(k bpfobj.FdtracePortKey, c *bpfobj.FdtracePortCounts) {
		out = append(out, PortCounts{PID: int(k.Tgid), StartNs: k.StartNs, Port: k.Port,
			Refused: c.Refused, Dropped: c.Dropped, Draining: c.Draining != 0})
	})
	slices.SortFunc(out, func(a, b PortCounts) int {
		return cmp.Or(cmp.Compare(a.PID, b.PID), cmp.Compare(a.Port, b.Port))
	})
	return out, err
}

func (t *Tracer) eachPort(fn func(bpfobj.FdtracePortKey, *bpfobj.FdtracePortCounts)) error {
	keys := make([]bpfobj.FdtracePortKey, portBatch)
	vals := make([]bpfobj.FdtracePortCounts, portBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := t.objs.Ports.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading ports map: %w", err)
		}
	}
}

// byPort is one process's refused and dropped connections by port, nil
// where there are none (the process record leaves them out).
type byPort struct {
	refused, dropped map[uint16]uint64
}

func (b *byPort) add(k bpfobj.FdtracePortKey, c *bpfobj.FdtracePortCounts) {
	if c.Refused > 0 {
		if b.refused == nil {
			b.refused = map[uint16]uint64{}
		}
		b.refused[k.Port] += c.Refused
	}
	if c.Dropped > 0 {
		if b.dropped == nil {
			b.dropped = map[uint16]uint64{}
		}
		b.dropped[k.Port] += c.Dropped
	}
}

// portCounts reads the ports map by process.
func (t *Tracer) portCounts() (map[procKey]*byPort, error) {
	out := map[procKey]*byPort{}
	err := t.eachPort(func(k bpfobj.FdtracePortKey, c *bpfobj.FdtracePortCounts) {
		pk := procKey{k.Tgid, k.StartNs}
		if out[pk] == nil {
			out[pk] = &byPort{}
		}
		out[pk].add(k, c)
	})
	return out, err
}

// takePorts collects and removes the per-port counts of an exited process.
func (t *Tracer) takePorts(tgid uint32, startNs uint64) *byPort {
	b := &byPort{}
	var done []bpfobj.FdtracePortKey
	t.eachPort(func(k bpfobj.FdtracePortKey, c *bpfobj.FdtracePortCounts) {
		if k.Tgid == tgid && k.StartNs == startNs {
			b.add(k, c)
			done = append(done, k)
		}
	})
	for _, k := range done {
		t.objs.Ports.Delete(k)
	}
	return b
}
