package output

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/fdtrace/fdtrace/internal/events"
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
