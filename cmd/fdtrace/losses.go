package main

import (
	"fmt"

	"github.com/fdtrace/fdtrace/internal/events"
)

// lossNotes says, in words, what the stats count as lost or unrecorded:
// every command that reads the kernel says it, at least at its end.
func lossNotes(st events.Stats) []string {
	var notes []string
	say := func(n uint64, format string) {
		if n > 0 {
			notes = append(notes, fmt.Sprintf(format, n))
		}
	}
	say(st.LostEvents, "%d events were lost (ring buffer full): raise --ringbuf-size or use --errors-only (lost_events)")
	say(st.FDsMapFull, "the fd record map was full: %d fds were not recorded (fds_map_full)")
	say(st.ProcsMapFull, "the process map was full: %d processes went uncounted (procs_map_full)")
	say(st.ErrorsMapFull, "the error map was full: %d failed syscalls are in no per-errno count (errors_map_full)")
	say(st.PortsMapFull, "the port map was full: %d refusals or drains are in no per-port count (ports_map_full)")
	say(st.StacksFull, "the stack store was full: %d fds have no stack (stacks_full)")
	say(st.StacksNoTables, "%d stacks were walked by frame pointers: taken before the unwind tables of their process were loaded (stacks_without_unwind_tables)")
	say(st.Unswept, "%d fds lay beyond the bounded loops of the programs for this kernel: their records and counts may be off (unswept_fds)")
	return notes
}

// losses adds up what lossNotes speaks of: it grows when there is more to
// say.
func losses(st events.Stats) uint64 {
	return st.LostEvents + st.FDsMapFull + st.ProcsMapFull + st.ErrorsMapFull + st.PortsMapFull +
		st.StacksFull + st.StacksNoTables + st.Unswept
}
