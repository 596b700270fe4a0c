package output

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/symbolize"
)

func TestConcurrentWritersNeverInterleaveLines(t *testing.T) {
	var buf bytes.Buffer
	w := New(&buf, 0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				w.Write(events.Close{Type: "close", PID: g + 1, FD: i, Comm: strings.Repeat("x", 15)})
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines, want %d", len(lines), 8*500)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, `{"type":"close"`) || !strings.HasSuffix(l, "}") {
			t.Fatalf("broken line %q", l)
		}
	}
}

func TestNothingIsWrittenBeforeFlushAndEverythingAfterClose(t *testing.T) {
	var buf bytes.Buffer
	w := New(&buf, 0)
	w.Write(events.Stats{Type: "stats"})
	if buf.Len() != 0 {
		t.Fatalf("wrote %q before a flush", buf.String())
	}
	w.Close()
	if !strings.HasPrefix(buf.String(), `{"type":"stats"`) {
		t.Errorf("after Close: %q", buf.String())
	}
}

func mixedRecords() []events.Record {
	now := events.Time(time.Now())
	stack := []symbolize.Frame{{Addr: 1, Func: "f<T>", Module: "/bin/a&b"}}
	return []events.Record{
		events.Open{Type: "open", Time: now, PID: 1, TID: 2, Comm: "a\"b", Syscall: "openat", FD: 3,
			FDType: "file", Cloexec: true, Path: "/tmp/<x>&\xff\n", Stack: stack},
		events.Open{Type: "open", Time: now, FDType: "socket", Family: "AF_INET", SockType: "SOCK_STREAM"},
		events.Close{Type: "close", Time: now, PID: 1, TID: 2, Comm: "c", Syscall: "close", FD: 3, FDType: "file"},
		events.Error{Type: "error", Time: now, PID: 1, Comm: "c", Syscall: "socket", Errno: "EMFILE",
			OpenFDs: 1024, FDLimit: math.MaxUint64, Stack: stack},
		events.Process{Type: "process", Time: now, PID: 1, Comm: "c", Errors: map[string]map[string]uint64{}},
		events.Stats{Type: "stats", Time: now},
	}
}

func TestEveryRecordIsWrittenAsEncodingJSONWritesIt(t *testing.T) {
	var got, want bytes.Buffer
	w := New(&got, 0)
	enc := json.NewEncoder(&want)
	for _, r := range mixedRecords() {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		enc.Encode(r)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("wrote\n%s\nencoding/json writes\n%s", got.String(), want.String())
	}
}

// writes records each Write call it gets.
type writes struct{ calls [][]byte }

func (w *writes) Write(p []byte) (int, error) {
	w.calls = append(w.calls, bytes.Clone(p))
	return len(p), nil
}

func TestEveryUnderlyingWriteHoldsWholeLines(t *testing.T) {
	var out writes
	w := New(&out, 0)
	for i := range 5000 {
		r := events.Open{Type: "open", PID: i, Path: strings.Repeat("p", i%300)}
		if i%1000 == 999 {
			r.Path = strings.Repeat("long", 20<<10) // more than the buffer holds
		}
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, p := range out.calls {
		if !bytes.HasSuffix(p, []byte("\n")) {
			t.Fatalf("a write of %d bytes ends mid-line", len(p))
		}
		lines += bytes.Count(p, []byte("\n"))
	}
	if lines != 5000 {
		t.Errorf("%d lines, want 5000", lines)
	}
}

func TestAFastRecordAllocatesNothing(t *testing.T) {
	w := New(io.Discard, 0)
	defer w.Close()
	var r events.Record = events.Close{Type: "close", Time: events.Time(time.Now()), Comm: "c", Syscall: "close", FDType: "file"}
	if n := testing.AllocsPerRun(1000, func() { w.Write(r) }); n != 0 {
		t.Errorf("%v allocations per close record", n)
	}
}
