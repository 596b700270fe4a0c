package events

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// oddStrings are paths and names that need escaping one way or another.
var oddStrings = []string{
	"",
	"/etc/passwd",
	`quo"te`,
	`back\slash`,
	"ctl\x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f",
	"<script>&amp;</script>",
	"non-utf8 \xff\xfe tail \xc3",
	"truncated \xe2\x82",
	"surrogate \xed\xa0\x80",
	"überfile ✓ 日本語 😀",
	"line\u2028sep\u2029para",
	"socket:[12345]",
	"anon_inode:[eventfd]",
	strings.Repeat("a/", 127) + "z",
}

var stack = []symbolize.Frame{
	{Addr: 0x401000, Func: "main.<lambda>&co", File: "/src/a\"b.go", Line: 12, Module: "/bin/x\xff", Offset: 0x1000, BuildID: "abcd"},
	{Addr: 0x7f00, Module: "", Inlined: true},
}

func testTimes() []Time {
	return []Time{
		{},
		Time(time.Unix(1700000000, 5).UTC()),
		Time(time.Unix(1700000000, 123456789).In(time.FixedZone("x", -(3*3600 + 1800)))),
		Time(time.Unix(0, 999).Local()),
	}
}

func appenders() []JSONAppender {
	var out []JSONAppender
	for i, s := range oddStrings {
		for j, t := range testTimes() {
			var st []symbolize.Frame
			if (i+j)%2 == 1 {
				st = stack
			}
			out = append(out,
				Open{Type: "open", Time: t, PID: i, TID: -j, Comm: s, Syscall: "openat",
					FD: i - 3, FDType: "file", Cloexec: j%2 == 0, Path: s, Family: s, SockType: s, UserData: uint64(i * j), Stack: st},
				Open{Type: s, Time: t, PID: math.MaxInt, TID: math.MinInt, FD: math.MaxInt32,
					Stack: []symbolize.Frame{}},
				Close{Type: "close", Time: t, PID: i, TID: j, Comm: s, Syscall: s, FD: -1, FDType: s},
				Close{},
				Error{Type: "error", Time: t, PID: i, TID: j, Comm: s, Syscall: "socket", Errno: "EMFILE",
					OpenFDs: math.MinInt64, FDLimit: math.MaxUint64, Path: s, Stack: st},
				Error{Type: "error", Time: t, PID: i, TID: j, Comm: s, Syscall: "accept4", Errno: "EMFILE",
					OpenFDs: int64(i), FDLimit: 16, ListenPort: uint16(1 + i*4681), Stack: st},
				Error{Type: "error", Syscall: "accept", Path: s, ListenPort: math.MaxUint16},
				Error{OpenFDs: -1, FDLimit: 0},
			)
		}
	}
	return out
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, r := range appenders() {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got := r.AppendJSON([]byte("prefix"))
		if string(got) != "prefix"+string(want) {
			t.Errorf("%#v:\n got %s\nwant prefix%s", r, got, want)
		}
	}
}

func TestAppendJSONAllocatesNothingWithoutAStack(t *testing.T) {
	o := Open{Type: "open", Time: Time(time.Now()), PID: 1, TID: 1, Comm: "x", Syscall: "openat",
		FD: 3, FDType: "file", Path: "/a<b>\xff"}
	c := Close{Type: "close", Time: Time(time.Now()), PID: 1, TID: 1, Comm: "x", Syscall: "close", FDType: "file"}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() {
		buf = o.AppendJSON(buf[:0])
		buf = c.AppendJSON(buf[:0])
	}); n != 0 {
		t.Errorf("%v allocations per record pair", n)
	}
}

func FuzzAppendStringMatchesEncodingJSON(f *testing.F) {
	for _, s := range oddStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	})
}

func TestAppendStringMatchesEncodingJSONForEveryByte(t *testing.T) {
	for c := range 256 {
		s := "a" + string([]byte{byte(c)}) + "b"
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("byte %#x: got %s, want %s", c, got, want)
		}
	}
}

func TestTimeAppendsAsMarshalJSON(t *testing.T) {
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("", 0),
		time.FixedZone("", 5*3600+45*60), time.FixedZone("", -(9*3600 + 30*60)),
		time.FixedZone("", 30), time.FixedZone("", -30), time.FixedZone("", -59*60-59),
		time.FixedZone("", 99*3600), time.FixedZone("", -123*3600)}
	for _, name := range []string{"America/St_Johns", "Europe/Amsterdam", "Asia/Kathmandu", "Pacific/Chatham"} {
		if l, err := time.LoadLocation(name); err == nil {
			zones = append(zones, l)
		}
	}
	times := []time.Time{{}, time.Unix(0, 0), time.Unix(1700000000, 1), time.Unix(1700000000, 999999999),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(0, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Now()}
	for i := range 2000 {
		times = append(times, time.Unix(int64(i)*987654321-int64(1e12), int64(i)*7919))
	}
	for _, tm := range times {
		for _, z := range zones {
			v := Time(tm.In(z))
			want, _ := v.MarshalJSON()
			if got := v.appendJSON(nil); string(got) != string(want) {
				t.Errorf("%v: got %s, want %s", tm.In(z), got, want)
			}
		}
	}
}
