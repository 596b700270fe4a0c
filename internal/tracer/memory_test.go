package tracer

import (
	"testing"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

func TestMemoryCountsTheEntriesAProcessAddsAndItsExitRemoves(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	before, err := tr.Kernel().Memory()
	if err != nil {
		t.Fatal(err)
	}
	if before.RSSBytes == 0 || before.PeakRSSBytes < before.RSSBytes || before.MapBytes == 0 {
		t.Errorf("memory %+v: want rss, peak >= rss and map bytes", before)
	}
	if _, ok, _ := tr.Process(w.PID); !ok {
		t.Fatal("fdops has no counters")
	}
	fds := len(testutil.ProcFDs(t, w.PID))
	for range 3 {
		w.Do(t, "open /dev/null")
	}
	rec.drain(t, tr)
	during, err := tr.Kernel().Memory()
	if err != nil {
		t.Fatal(err)
	}
	if got := during.MapEntries.FDs - before.MapEntries.FDs; got != 3 {
		t.Errorf("fds entries grew by %d after 3 opens, want 3", got)
	}
	w.Close(t)
	rec.drain(t, tr)
	after, err := tr.Kernel().Memory()
	if err != nil {
		t.Fatal(err)
	}
	e, b := after.MapEntries, before.MapEntries
	if e.Procs != b.Procs-1 || e.FDs != b.FDs-fds || e.Traced != b.Traced-1 {
		t.Errorf("after fdops (%d fds) exited: entries %+v, before %+v: want one process, its fds and its traced entry gone", fds, e, b)
	}
}
