package tracer

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/output"
)

func TestACommIsInternedAndTheCacheStaysBounded(t *testing.T) {
	c := interned{max: maxComms}
	a := c.intern([]byte("nginx"))
	if b := c.intern([]byte("nginx")); a != "nginx" || b != a || len(c.m) != 1 {
		t.Fatalf("got %q and %q, %d cached", a, b, len(c.m))
	}
	name := []byte("nginx")
	if n := testing.AllocsPerRun(100, func() { c.intern(name) }); n != 0 {
		t.Errorf("%v allocations for a known comm", n)
	}
	for i := range maxComms + 10 {
		c.intern([]byte(strings.Repeat("x", i%15) + string(rune('a'+i%26)) + string(rune(i))))
	}
	if len(c.m) > maxComms {
		t.Errorf("%d comms cached, at most %d", len(c.m), maxComms)
	}
}

// openClose are the events of an open and a close of one fd.
func openClose() []loader.Event {
	return []loader.Event{
		{Kind: loader.EventOpen, Time: 123456789, PID: 4242, TID: 4243, Comm: []byte("nginx"), Syscall: 3, FD: 7,
			FDType: 1, Cloexec: true, Path: []byte("/usr/lib/x86_64-linux-gnu/libc.so.6")},
		{Kind: loader.EventClose, Time: 123456789, PID: 4242, TID: 4243, Comm: []byte("nginx"), Syscall: 28, FD: 7,
			FDType: 1, Path: []byte{}},
	}
}

// unloaded is a tracer of no kernel, for what needs only its clock.
func unloaded() *Tracer {
	return &Tracer{wall: func(ns uint64) time.Time { return time.Unix(0, int64(ns)) }}
}

func TestHandleTurnsOpenAndCloseEventsIntoTheirRecords(t *testing.T) {
	tr := unloaded()
	var got []events.Record
	h := func(r events.Record) error { got = append(got, events.Value(r)); return nil }
	if err := tr.handle(openClose(), h, newRecords()); err != nil {
		t.Fatal(err)
	}
	ts := events.Time(time.Unix(0, 123456789))
	want := []events.Record{
		events.Open{Type: "open", Time: ts, PID: 4242, TID: 4243, Comm: "nginx", Syscall: "openat",
			FD: 7, FDType: "file", Cloexec: true, Path: "/usr/lib/x86_64-linux-gnu/libc.so.6"},
		events.Close{Type: "close", Time: ts, PID: 4242, TID: 4243, Comm: "nginx", Syscall: "close",
			FD: 7, FDType: "file"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestTheWrittenLinesAreWhatEncodingJSONWrites(t *testing.T) {
	tr := unloaded()
	var out, want bytes.Buffer
	w := output.New(&out, 0)
	enc := json.NewEncoder(&want)
	h := func(r events.Record) error { enc.Encode(r); return w.Write(r) }
	if err := tr.handle(openClose(), h, newRecords()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if out.String() != want.String() {
		t.Errorf("wrote\n%s\nencoding/json writes\n%s", out.String(), want.String())
	}
}

// BenchmarkHandleOpenClose is the reader's cost per open+close pair after
// decoding: typed events in, JSON lines out.
func BenchmarkHandleOpenClose(b *testing.B) {
	tr := unloaded()
	batch := openClose()
	w := output.New(io.Discard, 0)
	defer w.Close()
	r := newRecords()
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.handle(batch, w.Write, r); err != nil {
			b.Fatal(err)
		}
	}
}
