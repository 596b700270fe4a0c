package tracer

import (
	"time"

	"github.com/fdtrace/fdtrace/internal/loader"
)

// The compat programs' exit sweep reaches the first 4096 fds of a table: a
// process exiting with fds past them leaves their records, which would
// stay for good, and pass for the fds of the next process with its pid.
// User space deletes them (loader.Kernel.DeleteLeftRecords).

// leftWait is how long left records may wait to go: a burst of exits (the
// children of a process with a big table) costs one walk of the fds map,
// not one each.
const leftWait = 50 * time.Millisecond

// noteLeftRecords queues the records the exit e left, if any.
func (t *Tracer) noteLeftRecords(e *loader.Event) {
	if e.UnsweptFrom == 0 {
		return
	}
	if len(t.left) == 0 {
		t.leftSince = time.Now()
	}
	l, ok := t.left[e.PID]
	if !ok || e.UnsweptFrom < l.From {
		l.From = e.UnsweptFrom
	}
	l.Before = max(l.Before, e.Time)
	t.left[e.PID] = l
}

// deleteLeftRecords deletes the queued records: now, or once the first
// has waited leftWait.
func (t *Tracer) deleteLeftRecords(now bool) {
	if len(t.left) == 0 || (!now && time.Since(t.leftSince) < leftWait) {
		return
	}
	t.k.DeleteLeftRecords(t.left)
	clear(t.left)
}

// deleteLeftRecordsOf deletes the queued records now if pid's are among
// them: before records from /proc, which have no time, go in for pid.
func (t *Tracer) deleteLeftRecordsOf(pid int) {
	if _, ok := t.left[pid]; ok {
		t.deleteLeftRecords(true)
	}
}
