package loader

import (
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
)

// patterned is a generated struct filled with a different byte at every
// offset, so that a field read from the wrong place or with the wrong width
// gets a wrong value.
func patterned[T any](t *testing.T) T {
	t.Helper()
	var v T
	raw := make([]byte, binary.Size(v))
	for i := range raw {
		raw[i] = byte(i*37 + 11)
	}
	if _, err := binary.Decode(raw, binary.NativeEndian, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func encode(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := binary.Append(nil, binary.NativeEndian, v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestTheDecoderReadsEveryFieldOfFdEventWhereTheGeneratedStructHasIt(t *testing.T) {
	fields := []struct {
		name  string
		off   uintptr
		width uintptr // what the decoder reads
	}{
		{"Kind", fdKind, 1}, {"FdType", fdFdType, 1}, {"Syscall", fdSyscall, 2},
		{"Fd", fdFd, 4}, {"Pid", fdPid, 4}, {"Tid", fdTid, 4}, {"Ts", fdTs, 8},
		{"Err", fdErr, 4}, {"Family", fdFamily, 2}, {"SockType", fdSockType, 2},
		{"Flags", fdFlags, 2}, {"Port", fdPort, 2}, {"Ppid", fdPpid, 4}, {"StackId", fdStackID, 8},
		{"OpenFds", fdOpenFds, 8}, {"FdLimit", fdFdLimit, 8}, {"UserData", fdUserData, 8},
		{"Comm", fdComm, 16},
	}
	typ := reflect.TypeFor[bpfobj.FdtraceFdEvent]()
	seen := map[string]bool{}
	for _, f := range fields {
		seen[f.name] = true
		g, ok := typ.FieldByName(f.name)
		if !ok {
			t.Errorf("fd_event has no field %s any more", f.name)
			continue
		}
		if g.Offset != f.off || g.Type.Size() != f.width {
			t.Errorf("%s: decoded at %d, %d bytes; the struct has it at %d, %d bytes",
				f.name, f.off, f.width, g.Offset, g.Type.Size())
		}
	}
	for f := range typ.Fields() {
		if f.Name != "_" && !seen[f.Name] {
			t.Errorf("fd_event field %s is not decoded", f.Name)
		}
	}
	if fdEventSize != 88 || binary.Size(bpfobj.FdtraceFdEvent{}) != fdEventSize {
		t.Errorf("fd_event is %d bytes (binary: %d), was 88", fdEventSize, binary.Size(bpfobj.FdtraceFdEvent{}))
	}
	if fdPath != uintptr(fdEventSize) || fdPathLen != 256 {
		t.Errorf("fd_path_event's path is at %d, %d bytes; want %d, 256", fdPath, fdPathLen, fdEventSize)
	}
}

func TestAnFdEventDecodesToTheValuesOfTheGeneratedStruct(t *testing.T) {
	full := patterned[bpfobj.FdtraceFdPathEvent](t)
	for i := range full.E.Comm {
		full.E.Comm[i] = 'c'
	}
	for i := range full.Path {
		full.Path[i] = 'p'
	}
	cut := patterned[bpfobj.FdtraceFdPathEvent](t)
	cut.E.Comm[5], cut.Path[100] = 0, 0
	empty := patterned[bpfobj.FdtraceFdPathEvent](t)
	empty.E.Comm[0], empty.Path[0] = 0, 0
	for name, want := range map[string]bpfobj.FdtraceFdPathEvent{"patterned": patterned[bpfobj.FdtraceFdPathEvent](t),
		"strings without a NUL": full, "strings cut by a NUL": cut, "empty strings": empty} {
		t.Run(name, func(t *testing.T) {
			var got rawFdEvent
			if err := decodeFdEvent(encode(t, &want), &got); err != nil {
				t.Fatal(err)
			}
			assertDecoded(t, got, reflect.ValueOf(want.E))
			if s := cStringOf(reflect.ValueOf(want.Path)); string(got.Path) != s {
				t.Errorf("Path = %q, want %q", got.Path, s)
			}
		})
	}
	t.Run("without a path", func(t *testing.T) {
		want := patterned[bpfobj.FdtraceFdEvent](t)
		var got rawFdEvent
		if err := decodeFdEvent(encode(t, &want), &got); err != nil {
			t.Fatal(err)
		}
		assertDecoded(t, got, reflect.ValueOf(want))
		if got.Path != nil {
			t.Errorf("Path = %q, want none", got.Path)
		}
	})
}

// assertDecoded compares the decoded fields with the struct fd_event's.
func assertDecoded(t *testing.T, got rawFdEvent, wv reflect.Value) {
	t.Helper()
	gv := reflect.ValueOf(got)
	for i := range wv.NumField() {
		f := wv.Type().Field(i)
		if f.Name == "_" {
			continue
		}
		g, w := gv.FieldByName(f.Name), wv.Field(i)
		switch {
		case !g.IsValid():
			t.Errorf("%s is not decoded", f.Name)
		case w.Kind() == reflect.Array:
			if s := cStringOf(w); string(g.Bytes()) != s {
				t.Errorf("%s = %q, want %q", f.Name, g.Bytes(), s)
			}
		case g.Interface() != w.Interface():
			t.Errorf("%s = %#v, want %#v", f.Name, g.Interface(), w.Interface())
		}
	}
}

func cStringOf(array reflect.Value) string {
	var b []byte
	for i := range array.Len() {
		c := byte(array.Index(i).Int())
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

func TestAnExitEventDecodesToTheGeneratedStruct(t *testing.T) {
	want := patterned[bpfobj.FdtraceExitEvent](t)
	want.Pad, want.Pad2 = [3]uint8{}, 0
	want.Proc.Owner, want.Proc.TableCounted = 0, 0 // the kernel's own bookkeeping
	var got bpfobj.FdtraceExitEvent
	if err := decodeExitEvent(encode(t, &want), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
	}
	if exitEventSize != binary.Size(bpfobj.FdtraceExitEvent{}) {
		t.Errorf("exit_event is %d bytes, binary says %d", exitEventSize, binary.Size(bpfobj.FdtraceExitEvent{}))
	}
}

func TestAShortSampleIsAnErrorNotAPanic(t *testing.T) {
	if err := decodeFdEvent(make([]byte, fdEventSize-1), &rawFdEvent{}); err == nil {
		t.Error("short fd event decoded")
	}
	if err := decodeExitEvent(make([]byte, exitEventSize-1), &bpfobj.FdtraceExitEvent{}); err == nil {
		t.Error("short exit event decoded")
	}
}

func rawOpenClose(t testing.TB) (open, close []byte) {
	e := bpfobj.FdtraceFdEvent{Kind: uint8(bpfobj.FdtraceEventKindEV_OPEN), FdType: uint8(bpfobj.FdtraceFdTypeFD_FILE),
		Syscall: 3, Fd: 7, Pid: 4242, Tid: 4243, Ts: 123456789, Flags: uint16(bpfobj.FdtraceFdFlagsFDF_CLOEXEC)}
	copyC(e.Comm[:], "nginx")
	withPath := bpfobj.FdtraceFdPathEvent{E: e}
	copyC(withPath.Path[:], "/usr/lib/x86_64-linux-gnu/libc.so.6")
	open = encode(t, &withPath)
	e.Kind, e.Syscall, e.Flags = uint8(bpfobj.FdtraceEventKindEV_CLOSE), 28, 0
	return open, encode(t, &e)
}

func copyC(dst []int8, s string) {
	for i := range len(s) {
		dst[i] = int8(s[i])
	}
}

func TestRawOpenAndCloseSamplesDecodeToTheirEvents(t *testing.T) {
	open, close := rawOpenClose(t)
	b := newBatch()
	for _, raw := range [][]byte{open, close} {
		if err := (&Kernel{}).decode(b, raw); err != nil {
			t.Fatal(err)
		}
	}
	want := []Event{
		{Kind: EventOpen, Time: 123456789, PID: 4242, TID: 4243, Comm: []byte("nginx"), Syscall: 3, FD: 7,
			FDType: 1, Cloexec: true, Path: []byte("/usr/lib/x86_64-linux-gnu/libc.so.6")},
		{Kind: EventClose, Time: 123456789, PID: 4242, TID: 4243, Comm: []byte("nginx"), Syscall: 28, FD: 7,
			FDType: 1, Path: []byte{}},
	}
	if !reflect.DeepEqual(b.events, want) {
		t.Errorf("got %+v\nwant %+v", b.events, want)
	}
}

// BenchmarkDecodeOpenClose is the reader's decoding cost per open+close
// pair: raw ring buffer samples in, typed events out.
func BenchmarkDecodeOpenClose(b *testing.B) {
	open, close := rawOpenClose(b)
	k, batch := &Kernel{}, newBatch()
	b.ReportAllocs()
	for b.Loop() {
		batch.reset()
		if err := k.decode(batch, open); err != nil {
			b.Fatal(err)
		}
		if err := k.decode(batch, close); err != nil {
			b.Fatal(err)
		}
	}
}
