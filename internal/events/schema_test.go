package events

import (
	"bufio"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/symbolize"
	"time"
)

// validateBoth is Validate, failing the test when the whole schema gives
// another verdict than the record's own branch.
func validateBoth(t *testing.T, line []byte) error {
	t.Helper()
	err := validate(line, false)
	if whole := validate(line, true); (err == nil) != (whole == nil) {
		t.Errorf("record branch says %v, whole schema says %v, for %s", err, whole, line)
	}
	return err
}

func TestRecordedTraceMatchesTheSchema(t *testing.T) {
	f, err := os.Open("../../testdata/trace.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if err := validateBoth(t, sc.Bytes()); err != nil {
			t.Errorf("line %d: %v\n%s", n, err, sc.Bytes())
		}
		var r struct{ Type string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		seen[r.Type]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"open", "close", "error", "process", "stats"} {
		if seen[typ] == 0 {
			t.Errorf("testdata/trace.jsonl has no %q record", typ)
		}
	}
}

func TestInvalidLinesAreRejected(t *testing.T) {
	const good = `{"type":"close","time":"2026-11-24T18:32:08.929883108Z","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":3,"fd_type":"file"}`
	if err := Validate([]byte(good)); err != nil {
		t.Fatalf("the line the cases start from is invalid: %v", err)
	}
	for _, tc := range []struct{ name, line string }{
		{"an unknown type is rejected",
			`{"type":"mmap","time":"2026-11-24T18:32:08.929883108Z","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":3,"fd_type":"file"}`},
		{"a line without a type is rejected",
			`{"time":"2026-11-24T18:32:08.929883108Z","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":3,"fd_type":"file"}`},
		{"a missing pid is rejected",
			`{"type":"close","time":"2026-11-24T18:32:08.929883108Z","tid":5432,"comm":"sh","syscall":"close","fd":3,"fd_type":"file"}`},
		{"a time with six fractional digits is rejected",
			`{"type":"close","time":"2026-11-24T18:32:08.929883Z","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":3,"fd_type":"file"}`},
		{"a time without a zone is rejected",
			`{"type":"close","time":"2026-11-24T18:32:08.929883108","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":3,"fd_type":"file"}`},
		{"a time in month 13 is rejected",
			`{"type":"close","time":"2026-13-24T18:32:08.929883108Z","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":3,"fd_type":"file"}`},
		{"an extra field is rejected",
			`{"type":"close","time":"2026-11-24T18:32:08.929883108Z","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":3,"fd_type":"file","path":"/etc/passwd"}`},
		{"a field of another record type is rejected",
			`{"type":"close","time":"2026-11-24T18:32:08.929883108Z","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":3,"fd_type":"file","exited":true}`},
		{"an unknown fd_type is rejected",
			`{"type":"close","time":"2026-11-24T18:32:08.929883108Z","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":3,"fd_type":"fifo"}`},
		{"an unknown syscall is rejected",
			`{"type":"close","time":"2026-11-24T18:32:08.929883108Z","pid":5432,"tid":5432,"comm":"sh","syscall":"munmap","fd":3,"fd_type":"file"}`},
		{"an fd given as a string is rejected",
			`{"type":"close","time":"2026-11-24T18:32:08.929883108Z","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":"3","fd_type":"file"}`},
		{"a negative fd is rejected",
			`{"type":"close","time":"2026-11-24T18:32:08.929883108Z","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":-1,"fd_type":"file"}`},
		{"an errno that is no errno name is rejected",
			`{"type":"error","time":"2026-11-24T18:32:26.893436957Z","pid":5574,"tid":5574,"comm":"cat","syscall":"openat","errno":"Too many open files","open_fds":5,"fd_limit":20000}`},
		{"an error count under an unknown errno is rejected",
			`{"type":"process","time":"2026-11-24T18:32:26.893952131Z","pid":5574,"comm":"cat","open_fds":3,"fd_limit":20000,"utilization":0.00015,"opened":18,"closed":21,"errors":{"openat":{"enoent":13}},"emfile":0,"enfile":0,"refused_connections":0,"exited":true}`},
		{"a count by an unknown fd type is rejected",
			`{"type":"process","time":"2026-11-24T18:32:26.893952131Z","pid":5574,"comm":"cat","open_fds":3,"fd_limit":20000,"utilization":0.00015,"opened":18,"closed":21,"opened_by_type":{"files":18},"errors":{},"emfile":0,"enfile":0,"refused_connections":0,"exited":true}`},
		{"a listen port of 0 is rejected",
			`{"type":"error","time":"2026-11-24T18:32:26.893436957Z","pid":5574,"tid":5574,"comm":"node","syscall":"accept4","errno":"EMFILE","open_fds":5,"fd_limit":5,"listen_port":0}`},
		{"a count by a port that is no number is rejected",
			`{"type":"process","time":"2026-11-24T18:32:26.893952131Z","pid":5574,"comm":"node","open_fds":3,"fd_limit":20000,"utilization":0.00015,"opened":18,"closed":21,"errors":{},"emfile":0,"enfile":0,"refused_connections":1,"refused_by_port":{"http":1},"exited":true}`},
		{"an empty dropped_by_port is rejected",
			`{"type":"process","time":"2026-11-24T18:32:26.893952131Z","pid":5574,"comm":"node","open_fds":3,"fd_limit":20000,"utilization":0.00015,"opened":18,"closed":21,"errors":{},"emfile":0,"enfile":0,"refused_connections":0,"dropped_by_port":{},"exited":true}`},
		{"two records on one line are rejected", good + good},
		{"an empty line is rejected", ``},
		{"a JSON array is rejected", `[` + good + `]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if validateBoth(t, []byte(tc.line)) == nil {
				t.Errorf("Validate accepted %s", tc.line)
			}
		})
	}
}

// records has each record type with every field set, and each with only
// what is always emitted.
func records() []Record {
	ts := Time(time.Date(2026, 11, 24, 18, 32, 26, 893436957, time.UTC))
	return []Record{
		Open{Type: "open", Time: ts, PID: 5440, TID: 5443, Comm: "worker", Syscall: "accept4",
			FD: 6, FDType: "socket", Cloexec: true, Family: "AF_INET6", SockType: "SOCK_STREAM"},
		Open{Type: "open", Time: ts, PID: 5432, TID: 5432, Comm: "sh", Syscall: "openat",
			FD: 3, FDType: "file", Path: "/etc/ld.so.cache"},
		Open{Type: "open", Time: ts, PID: 5432, TID: 5432, Comm: "sh", Syscall: "pipe2",
			FD: 4, FDType: "pipe"},
		Close{Type: "close", Time: ts, PID: 5432, TID: 5432, Comm: "sh", Syscall: "execve",
			FD: 0, FDType: "other"},
		Error{Type: "error", Time: ts, PID: 5440, TID: 5443, Comm: "worker", Syscall: "accept4",
			Errno: ErrnoName(24), OpenFDs: 8, FDLimit: 8, ListenPort: 8080},
		Error{Type: "error", Time: ts, PID: 5574, TID: 5574, Comm: "cat", Syscall: "openat",
			Errno: ErrnoName(9999), OpenFDs: 5, FDLimit: ^uint64(0), Path: "missing"},
		Process{Type: "process", Time: ts, PID: 5440, Comm: "echo-server", OpenFDs: 7, FDLimit: 8,
			Utilization: Utilization(7, 8), Opened: 7, Closed: 3,
			OpenedByType: map[string]uint64{"socket": 4, "epoll": 1, "eventfd": 1, "memfd": 1},
			ClosedByType: map[string]uint64{"socket": 2, "memfd": 1},
			Errors:       map[string]map[string]uint64{"accept4": {"EMFILE": 2}, "socketpair": {"errno 9999": 1}},
			EMFILE:       2, ENFILE: 0, RefusedConnections: 2, Exited: true,
			RefusedByPort: map[uint16]uint64{8080: 1, 65535: 1}, DroppedByPort: map[uint16]uint64{8080: 40}},
		Process{Type: "process", Time: ts, PID: 5601, Comm: "sleep", OpenFDs: 3, FDLimit: 1024,
			Utilization: Utilization(3, 1024), Errors: map[string]map[string]uint64{}},
		Process{Type: "process", Time: ts, PID: 5602, Comm: "sleep"},
		Stats{Type: "stats", Time: ts, LostEvents: 1, FDsMapFull: 2, ProcsMapFull: 3, ErrorsMapFull: 4,
			KernelDrift: 5, StacksFull: 10, StacksNoTables: 12, Unswept: 13, PortsMapFull: 11, SeededFDs: 6, ReconciledFDs: 7, SkippedHooks: 8, EventsDelivered: 9},
		Stats{Type: "stats", Time: Time(time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600)))},
		Open{Type: "open", Time: ts, PID: 7, TID: 7, Comm: "leaky", Syscall: "openat", FD: 3, FDType: "file",
			Path: "/etc/hostname", Stack: []symbolize.Frame{
				{Addr: 0x7f0011223344, Func: "open", Module: "/usr/lib/x86_64-linux-gnu/libc.so.6", Offset: 0xf3344, BuildID: "ab12cd"},
				{Addr: 0x401136, Func: "open_config", File: "leaky.c", Line: 18, Module: "/usr/bin/leaky", Offset: 0x401136},
				{Addr: 0x7ffd0000, Module: "[vdso]"},
				{Addr: 0x1234},
			}},
		Error{Type: "error", Time: ts, PID: 7, TID: 8, Comm: "leaky", Syscall: "socket", Errno: "EMFILE",
			OpenFDs: 1024, FDLimit: 1024, Stack: []symbolize.Frame{{Addr: 0x401200, Func: "main.dial", Inlined: true}}},
		Leak{Type: "leak", Time: ts, PID: 7, Comm: "leaky", Count: 100, FDTypes: map[string]int{"socket AF_INET": 100},
			Syscalls: map[string]int{"socket": 100}, OldestAgeS: 12.5, GrowthPerMin: 480, FDs: []int{3, 4, 5, 6, 7},
			Samples: []string{"tcp 127.0.0.1:5000 -> 127.0.0.1:5432"}, Stack: []symbolize.Frame{{Addr: 0x401136, Func: "connect_db"}}},
		Leak{Type: "leak", Time: ts, PID: 7, Comm: "leaky", Count: 3, FDTypes: map[string]int{"pipe": 3},
			Syscalls: map[string]int{"preexisting": 3}, FDs: []int{0, 1, 2}, Stack: []symbolize.Frame{}, Preexisting: true, AtExit: true},
		Leak{Type: "leak", Time: ts, PID: 7, Comm: "leaky", Count: 1, FDTypes: map[string]int{"file": 1},
			Syscalls: map[string]int{}, FDs: []int{5}, Samples: []string{"/etc/hosts"}, Stack: []symbolize.Frame{},
			OutsideTracedSyscalls: true},
	}
}

func TestMarshalledRecordsMatchTheSchema(t *testing.T) {
	for _, r := range records() {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := validateBoth(t, b); err != nil {
			t.Errorf("%v\n%s", err, b)
		}
	}
}

func TestRecordTypesAreTheSchemaTypes(t *testing.T) {
	for _, r := range records() {
		b, _ := json.Marshal(r)
		var got struct{ Type string }
		if err := json.Unmarshal(b, &got); err != nil || got.Type != r.RecordType() {
			t.Errorf("%T marshals type %q, want %q", r, got.Type, r.RecordType())
		}
	}
}

type schemaDoc struct {
	Defs map[string]struct {
		Required   []string                   `json:"required"`
		Properties map[string]json.RawMessage `json:"properties"`
		Enum       []string                   `json:"enum"`
	} `json:"$defs"`
}

func loadSchema(t *testing.T) schemaDoc {
	t.Helper()
	var doc schemaDoc
	if err := json.Unmarshal(Schema, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestSchemaFieldsAreTheStructFields(t *testing.T) {
	doc := loadSchema(t)
	for _, r := range []Record{Open{}, Close{}, Error{}, Process{}, Stats{}, Leak{}} {
		t.Run(r.RecordType()+" has the fields of "+reflect.TypeOf(r).Name(), func(t *testing.T) {
			def, ok := doc.Defs[r.RecordType()]
			if !ok {
				t.Fatalf("schema has no $defs/%s", r.RecordType())
			}
			var fields, required []string
			rt := reflect.TypeOf(r)
			for i := range rt.NumField() {
				name, opts, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
				fields = append(fields, name)
				if !strings.Contains(opts, "omitempty") {
					required = append(required, name)
				}
			}
			var props []string
			for name := range def.Properties {
				props = append(props, name)
			}
			slices.Sort(fields)
			slices.Sort(props)
			if !slices.Equal(fields, props) {
				t.Errorf("schema properties %v, struct fields %v", props, fields)
			}
			got := slices.Sorted(slices.Values(def.Required))
			slices.Sort(required)
			if !slices.Equal(got, required) {
				t.Errorf("schema requires %v, struct always emits %v", got, required)
			}
		})
	}
}

func TestSchemaEnumsAreTheDecoderNames(t *testing.T) {
	doc := loadSchema(t)
	t.Run("fd_type lists every FDType", func(t *testing.T) {
		var want []string
		for i := range NumFDTypes {
			want = append(want, FDType(i).String())
		}
		if got := doc.Defs["fd_type"].Enum; !slices.Equal(got, want) {
			t.Errorf("schema fd_type enum %v, want %v", got, want)
		}
	})
	t.Run("syscall lists every Syscall", func(t *testing.T) {
		var want []string
		for id := range NumSyscalls {
			want = append(want, Syscall(id).String())
		}
		if got := doc.Defs["syscall"].Enum; !slices.Equal(got, want) {
			t.Errorf("schema syscall enum %v, want %v", got, want)
		}
	})
}
