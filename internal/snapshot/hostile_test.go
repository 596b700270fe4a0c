package snapshot

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// Socket names, paths and the process name come from the process: none
// of their bytes may reach the terminal as a control sequence, nor add a
// line.
func TestASnapshotsTextCarriesNoControlCharacterFromTheProcess(t *testing.T) {
	evil := "x\x1b]0;pwned\a\n\x1b[2J\u009b1m\xff"
	s := events.Snapshot{PID: 7, Comm: evil, ByType: map[string]int{"socket": 1, "file": 1},
		Sockets:     []events.SocketCount{{Family: "AF_UNIX", Protocol: "stream", State: "LISTEN", Count: 1}},
		Listening:   []events.Listener{{Protocol: "unix", Address: "@" + evil, FD: 3}},
		Outbound:    []events.EndpointCount{{Endpoint: evil, Count: 1}},
		Directories: []events.DirCount{{Dir: "/tmp/" + evil, Count: 1}}}
	var b strings.Builder
	if err := WriteText(&b, s); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	if i := strings.IndexFunc(text, func(r rune) bool {
		return (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0)
	}); i >= 0 {
		t.Errorf("control character %q in the snapshot:\n%q", text[i], text)
	}
	for _, forged := range []string{"\n?[2J", "\n\x1b"} {
		if strings.Contains(text, forged) {
			t.Errorf("a name began a line of its own:\n%s", text)
		}
	}
}

// The test process's abstract unix socket names forge rows of
// /proc/net/unix (testutil.ForgeUnixRows): one says a socket of its
// connected stream pair is a listener on /forged-victim, one that its TCP
// listener is a unix one, one claims an inode no socket has. From
// sock_diag every socket is as it is; from /proc (the fallback, forced)
// the victim, which two rows claim, has no state, and no forged row is
// taken either way.
func TestASnapshotTakesNoForgedUnixRowForASocketOfTheProcess(t *testing.T) {
	r := testutil.ForgeUnixRows(t)
	for _, tc := range []struct {
		name, force, from, victim string
	}{
		{"from sock_diag", "", "sock_diag", "AF_UNIX stream CONNECTED "},
		{"from /proc, the fallback forced", "no-unix-diag", "proc", "AF_UNIX stream  "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.force == "" {
				testutil.RequireUnixDiag(t)
			}
			t.Setenv("FDTRACE_FORCE_FALLBACK", tc.force)
			s, err := Take(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			if s.UnixSocketsFrom != tc.from {
				t.Errorf("unix_sockets_from %q, want %q", s.UnixSocketsFrom, tc.from)
			}
			got := map[int]string{}
			for _, fd := range s.FDs {
				state, path := "", ""
				if fd.Sock != nil {
					state, path = fd.Sock.State, fd.Sock.Path
				}
				got[fd.Num] = fmt.Sprintf("%s %s %s %s", fd.Family, fd.Protocol, state, path)
				if strings.Contains(path, "forged") && !slices.Contains(r.Forgers, fd.Num) {
					t.Errorf("fd %d has a forged row: %+v", fd.Num, fd.Sock)
				}
			}
			for fd, want := range map[int]string{
				r.Victim: tc.victim,
				r.Peer:   "AF_UNIX stream CONNECTED ",
				r.Bound:  "AF_UNIX dgram UNCONNECTED " + r.BoundPath,
				r.TCP:    "AF_INET tcp LISTEN ",
			} {
				if got[fd] != want {
					t.Errorf("fd %d is %q, want %q", fd, got[fd], want)
				}
			}
			if len(s.Listening) != 1 || s.Listening[0].FD != r.TCP || s.Listening[0].Protocol != "tcp" {
				t.Errorf("listening %+v, want the TCP listener (fd %d) only", s.Listening, r.TCP)
			}
			for _, c := range s.Sockets {
				if c.Family == "AF_UNIX" && c.State == "LISTEN" {
					t.Errorf("a unix listener was counted: %+v", c)
				}
			}
		})
	}
}
