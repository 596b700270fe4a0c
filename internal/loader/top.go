package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
)

// NumFDTypes is how many fd types the kernel counts (events.FDType).
const NumFDTypes = len(bpfobj.FdtraceProc{}.OpenedByType)

// The kernel's by-type arrays are indexed by events.FDType.
var _ [NumFDTypes - events.NumFDTypes]struct{}
var _ [events.NumFDTypes - NumFDTypes]struct{}

// Counters are one process's counters as the kernel keeps them, read
// without looking at /proc: what a live view refreshes from.
type Counters struct {
	PID int
	// StartNs is when the process started (CLOCK_MONOTONIC): it tells a
	// reused pid apart.
	StartNs        uint64
	Comm           string
	OpenFDs        int64
	Opened, Closed uint64
	Errors         uint64 // every failed fd-creating syscall, any errno
	EMFILE, ENFILE uint64
	Refused        uint64
	// Indexed by events.FDType.
	OpenedByType, ClosedByType [NumFDTypes]uint64
}

// procBatch is how many procs map entries one syscall reads.
const procBatch = 256

// EachCounters calls fn with the counters of every process the kernel has
// counters for, each once, as it reads the procs map in batches. fn must
// not keep c.
func (t *Tracer) EachCounters(fn func(c *Counters)) error {
	keys := make([]uint32, procBatch)
	vals := make([]bpfobj.FdtraceProc, procBatch)
	var c Counters
	var cursor ebpf.MapBatchCursor
	for {
		n, err := t.objs.Procs.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			p := &vals[i]
			c = Counters{PID: int(keys[i]), StartNs: p.StartNs, Comm: cString(p.Comm[:]),
				OpenFDs: p.OpenFds, Opened: p.Opened, Closed: p.Closed, Errors: p.Errors,
				EMFILE: p.Emfile, ENFILE: p.Enfile, Refused: p.Refused,
				OpenedByType: p.OpenedByType, ClosedByType: p.ClosedByType}
			fn(&c)
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading procs map: %w", err)
		}
	}
}

// ProcKey names one process instance: its pid and start time.
type ProcKey struct {
	PID     int
	StartNs uint64
}

// ErrorCounts are the failed fd-creating syscalls of the live processes:
// process → syscall → errno → count.
func (t *Tracer) ErrorCounts() (map[ProcKey]map[string]map[string]uint64, error) {
	errs, err := t.errorCounts()
	if err != nil {
		return nil, err
	}
	out := make(map[ProcKey]map[string]map[string]uint64, len(errs))
	for k, v := range errs {
		out[ProcKey{int(k.tgid), k.startNs}] = v
	}
	return out, nil
}
