package events

import (
	"encoding/json"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestErrnoName(t *testing.T) {
	for _, tc := range []struct {
		name  string
		errno int
		want  string
	}{
		{"EMFILE is named", 24, "EMFILE"},
		{"ENFILE is named", 23, "ENFILE"},
		{"ENOENT is named", 2, "ENOENT"},
		{"ENOBUFS is named", int(unix.ENOBUFS), "ENOBUFS"},
		{"an unknown errno keeps its number", 9999, "errno 9999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ErrnoName(tc.errno); got != tc.want {
				t.Errorf("ErrnoName(%d) = %q, want %q", tc.errno, got, tc.want)
			}
		})
	}
}

func TestFamilyName(t *testing.T) {
	for _, tc := range []struct {
		name   string
		family int
		want   string
	}{
		{"AF_INET is named", unix.AF_INET, "AF_INET"},
		{"AF_INET6 is named", unix.AF_INET6, "AF_INET6"},
		{"AF_UNIX is named", unix.AF_UNIX, "AF_UNIX"},
		{"AF_NETLINK is named", unix.AF_NETLINK, "AF_NETLINK"},
		{"AF_VSOCK is named", unix.AF_VSOCK, "AF_VSOCK"},
		{"an unknown family keeps its number", 99, "AF_99"},
		{"family 0 is no family", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FamilyName(tc.family); got != tc.want {
				t.Errorf("FamilyName(%d) = %q, want %q", tc.family, got, tc.want)
			}
		})
	}
}

func TestSockTypeName(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  int
		want string
	}{
		{"SOCK_STREAM is named", unix.SOCK_STREAM, "SOCK_STREAM"},
		{"SOCK_DGRAM is named", unix.SOCK_DGRAM, "SOCK_DGRAM"},
		{"SOCK_SEQPACKET is named", unix.SOCK_SEQPACKET, "SOCK_SEQPACKET"},
		{"SOCK_CLOEXEC is masked off", unix.SOCK_STREAM | unix.SOCK_CLOEXEC, "SOCK_STREAM"},
		{"SOCK_NONBLOCK and SOCK_CLOEXEC are masked off", unix.SOCK_DGRAM | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC, "SOCK_DGRAM"},
		{"an unknown type keeps its number", 11, "SOCK_11"},
		{"type 0 is no type", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SockTypeName(tc.typ); got != tc.want {
				t.Errorf("SockTypeName(%#x) = %q, want %q", tc.typ, got, tc.want)
			}
		})
	}
}

func TestFDTypeNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  FDType
		want string
	}{
		{"0 is other", 0, "other"},
		{"1 is a file", 1, "file"},
		{"2 is a socket", 2, "socket"},
		{"3 is a pipe", 3, "pipe"},
		{"the last kernel type is pidfd", NumFDTypes - 1, "pidfd"},
		{"a number past the kernel's types is other", NumFDTypes, "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.typ.String(); got != tc.want {
				t.Errorf("FDType(%d) = %q, want %q", tc.typ, got, tc.want)
			}
			if tc.typ < NumFDTypes && ParseFDType(tc.want) != tc.typ {
				t.Errorf("ParseFDType(%q) = %d, want %d", tc.want, ParseFDType(tc.want), tc.typ)
			}
		})
	}
	if ParseFDType("fifo") != 0 {
		t.Error("an unknown name is not other")
	}
}

func TestSyscallNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   Syscall
		want string
	}{
		{"0 is an fd that existed before fdtrace attached", 0, "preexisting"},
		{"1 is open", 1, "open"},
		{"3 is openat", 3, "openat"},
		{"8 is accept4", 8, "accept4"},
		{"10 is pipe2", 10, "pipe2"},
		{"the last kernel id is io_uring", NumSyscalls - 1, "io_uring"},
		{"an id past the kernel's keeps its number", 99, "syscall 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.id.String(); got != tc.want {
				t.Errorf("Syscall(%d) = %q, want %q", tc.id, got, tc.want)
			}
		})
	}
}

func TestTimeMarshalsNineDigits(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    time.Time
		want string
	}{
		{"nanoseconds are kept", time.Date(2026, 11, 24, 18, 32, 26, 893436957, time.UTC),
			`"2026-11-24T18:32:26.893436957Z"`},
		{"a whole second has nine zeros", time.Date(2026, 11, 24, 18, 32, 26, 0, time.UTC),
			`"2026-11-24T18:32:26.000000000Z"`},
		{"trailing zeros are kept", time.Date(2026, 11, 24, 18, 32, 26, 120000000, time.UTC),
			`"2026-11-24T18:32:26.120000000Z"`},
		{"leading zeros are kept", time.Date(2026, 11, 24, 18, 32, 26, 7, time.UTC),
			`"2026-11-24T18:32:26.000000007Z"`},
		{"a zone other than UTC is an offset", time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600)),
			`"2026-01-02T03:04:05.000000006+01:00"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(Time(tc.t))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got %s, want %s", b, tc.want)
			}
		})
	}
}

func TestTimeUnmarshal(t *testing.T) {
	t.Run("a marshalled time reads back equal", func(t *testing.T) {
		for _, want := range []time.Time{
			time.Date(2026, 11, 24, 18, 32, 26, 893436957, time.UTC),
			time.Date(2026, 11, 24, 18, 32, 26, 0, time.UTC),
			time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600)),
		} {
			b, err := json.Marshal(Time(want))
			if err != nil {
				t.Fatal(err)
			}
			var got Time
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("unmarshalling %s: %v", b, err)
			}
			if !time.Time(got).Equal(want) {
				t.Errorf("%s read back as %v, want %v", b, time.Time(got), want)
			}
		}
	})
	t.Run("a record's time reads back from its line", func(t *testing.T) {
		line := `{"type":"close","time":"2026-11-24T18:32:08.929883108Z","pid":5432,"tid":5432,"comm":"sh","syscall":"close","fd":3,"fd_type":"file"}`
		var c Close
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		want := time.Date(2026, 11, 24, 18, 32, 8, 929883108, time.UTC)
		if !time.Time(c.Time).Equal(want) {
			t.Errorf("time %v, want %v", time.Time(c.Time), want)
		}
	})
	for _, tc := range []struct{ name, in string }{
		{"a string that is no time is an error", `"yesterday"`},
		{"a number is an error", `1764009146`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Time
			if err := json.Unmarshal([]byte(tc.in), &got); err == nil {
				t.Errorf("%s unmarshalled to %v", tc.in, time.Time(got))
			}
		})
	}
}
