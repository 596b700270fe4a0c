package tracer

import (
	"slices"
	"testing"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
)

// readOnly hands rec the records of what the kernel wrote, without
// waiting for the stacks being symbolized (as the reader does while it
// runs, unlike Drain at the end).
func readOnly(t *testing.T, tr *Tracer, rec *recorder) {
	t.Helper()
	r := newRecords()
	if err := tr.k.Drain(func(b []loader.Event) error { return tr.handle(b, rec.add, r) }); err != nil {
		t.Fatal(err)
	}
}

func openRecord(t *testing.T, rec *recorder, pid, fd int) events.Open {
	t.Helper()
	for _, r := range rec.records {
		if o, ok := r.(events.Open); ok && o.PID == pid && o.FD == fd {
			return o
		}
	}
	t.Fatalf("no open record of fd %d of pid %d in %v", fd, pid, rec.records)
	return events.Open{}
}

func TestRecordsWaitInOrderForTheirStacksWhileTheReaderReadsOn(t *testing.T) {
	if !stacksHere(t) {
		return
	}
	tr, w, rec := followFdops(t, Config{CaptureStacks: true})
	// As a file that takes long to parse holds the symbolizer.
	resume := tr.stacks.Pause()
	defer resume()
	fd := w.Do(t, "open /dev/null")[0]
	w.Do(t, "close %d", fd)
	readOnly(t, tr, rec)
	if got := rec.fdEvents(w.PID); len(got) != 0 {
		t.Errorf("records went out before their stack was symbolized: %v", got)
	}
	resume()
	rec.drain(t, tr)
	want := []fdEvent{{"open", "openat", fd, "file", ""}, {"close", "close", fd, "file", ""}}
	if got := rec.fdEvents(w.PID); !slices.Equal(got, want) {
		t.Errorf("records %v, want %v in this order", got, want)
	}
	if o := openRecord(t, rec, w.PID, fd); len(o.Stack) == 0 || o.Stack[0].Func == "" {
		t.Errorf("the open record's stack is %v, want it symbolized", o.Stack)
	}
	st, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.StacksLate != 0 || st.StacksQueueFull != 0 {
		t.Errorf("stacks_late %d, stacks_queue_full %d; want 0", st.StacksLate, st.StacksQueueFull)
	}
}

func TestARecordWhoseStackIsNotSymbolizedInTimeGoesOutWithoutItAndIsCounted(t *testing.T) {
	if !stacksHere(t) {
		return
	}
	tr, w, rec := followFdops(t, Config{CaptureStacks: true})
	tr.stackWait = 0
	resume := tr.stacks.Pause()
	defer resume()
	fd := w.Do(t, "open /dev/null")[0]
	rec.drain(t, tr)
	if o := openRecord(t, rec, w.PID, fd); o.Stack != nil {
		t.Errorf("the open record has a stack %v, want none: it was not symbolized", o.Stack)
	}
	st, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.StacksLate != 1 {
		t.Errorf("stacks_late %d, want 1", st.StacksLate)
	}
}
