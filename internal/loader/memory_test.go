package loader

import (
	"testing"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

func TestEveryKernelStatHasItsOwnStatsField(t *testing.T) {
	var s events.Stats
	fields := statFields(&s)
	seen := map[*uint64]bool{}
	for id := range bpfobj.FdtraceStatIdSTAT_MAX {
		dst, ok := fields[id]
		if !ok {
			t.Errorf("stat id %d has no field in the stats record", id)
		}
		if seen[dst] {
			t.Errorf("stat id %d shares its field with another", id)
		}
		seen[dst] = true
	}
	if len(fields) != int(bpfobj.FdtraceStatIdSTAT_MAX) {
		t.Errorf("%d stats fields for %d kernel stats", len(fields), bpfobj.FdtraceStatIdSTAT_MAX)
	}
}

func TestMemoryCountsTheEntriesAProcessAddsAndItsExitRemoves(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	before, err := tr.Memory()
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
	during, err := tr.Memory()
	if err != nil {
		t.Fatal(err)
	}
	if got := during.MapEntries.FDs - before.MapEntries.FDs; got != 3 {
		t.Errorf("fds entries grew by %d after 3 opens, want 3", got)
	}
	w.Close(t)
	rec.drain(t, tr)
	after, err := tr.Memory()
	if err != nil {
		t.Fatal(err)
	}
	e, b := after.MapEntries, before.MapEntries
	if e.Procs != b.Procs-1 || e.FDs != b.FDs-fds || e.Traced != b.Traced-1 {
		t.Errorf("after fdops (%d fds) exited: entries %+v, before %+v: want one process, its fds and its traced entry gone", fds, e, b)
	}
}
