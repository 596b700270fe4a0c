package main

import (
	"fmt"

	"github.com/fdtrace/fdtrace/internal/events"
)

// lossCounts are the counts of what was lost or unrecorded, with what to
// say of each.
func lossCounts(st events.Stats) []struct {
	n      uint64
	format string
} {
	return []struct {
		n      uint64
		format string
	}{
		{st.LostEvents, "%d events were lost (ring buffer full): raise --ringbuf-size or use --errors-only (lost_events)"},
		{st.FDsMapFull, "the fd record map was full: %d fds were not recorded (fds_map_full)"},
		{st.ProcsMapFull, "the process map was full: %d processes went uncounted (procs_map_full)"},
		{st.ErrorsMapFull, "the error map was full: %d failed syscalls are in no per-errno count (errors_map_full)"},
		{st.PortsMapFull, "the port map was full: %d refusals or drains are in no per-port count (ports_map_full)"},
		{st.StacksFull, "the stack store was full: %d fds have no stack (stacks_full)"},
		{st.StacksNoTables, "%d stacks were walked by frame pointers: taken before the unwind tables of their process were loaded (stacks_without_unwind_tables)"},
		{st.StacksLate, "%d records went out before their stacks were symbolized, which took over 5 s: their frames are missing (stacks_late)"},
		{st.StacksQueueFull, "%d stacks were not symbolized: the symbolizer was too far behind (stacks_queue_full)"},
		{st.Unswept, "%d fds lay beyond the bounded loops of the programs for this kernel: their records and counts may be off (unswept_fds)"},
	}
}

// lossNotes says, in words, what the stats count as lost or unrecorded:
// every command that reads the kernel says it, at least at its end.
func lossNotes(st events.Stats) []string {
	var notes []string
	for _, c := range lossCounts(st) {
		if c.n > 0 {
			notes = append(notes, fmt.Sprintf(c.format, c.n))
		}
	}
	return notes
}

// losses adds up what lossNotes speaks of: it grows when there is more to
// say.
func losses(st events.Stats) uint64 {
	var sum uint64
	for _, c := range lossCounts(st) {
		sum += c.n
	}
	return sum
}
