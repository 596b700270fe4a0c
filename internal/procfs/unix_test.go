package procfs_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// unixSocket is what a source says of a unix socket, for comparing.
func unixSocket(ino uint64, typ, state, path string) procfs.Socket {
	return procfs.Socket{Inode: ino, Table: "unix", Family: "AF_UNIX", Protocol: typ, State: state, Path: path}
}

func TestForgedUnixRowsDescribeNoSocketOfTheProcessFromEitherSource(t *testing.T) {
	r := testutil.ForgeUnixRows(t)
	own := map[uint64]int{}
	ino := map[int]uint64{}
	for _, fd := range append([]int{r.Victim, r.Peer, r.Bound, r.TCP}, r.Forgers...) {
		ino[fd] = testutil.Inode(t, fd)
		own[ino[fd]] = fd
	}
	forgerName := func(i int) string {
		sa, err := unix.Getsockname(r.Forgers[i])
		if err != nil {
			t.Fatal(err)
		}
		return sa.(*unix.SockaddrUnix).Name
	}

	for _, tc := range []struct {
		name, force, from string
		want              map[uint64]procfs.Socket
	}{
		{"from sock_diag, every socket as it is", "", procfs.UnixFromSockDiag, map[uint64]procfs.Socket{
			ino[r.Victim]:     unixSocket(ino[r.Victim], "stream", "CONNECTED", ""),
			ino[r.Peer]:       unixSocket(ino[r.Peer], "stream", "CONNECTED", ""),
			ino[r.Bound]:      unixSocket(ino[r.Bound], "dgram", "UNCONNECTED", r.BoundPath),
			ino[r.Forgers[0]]: unixSocket(ino[r.Forgers[0]], "dgram", "UNCONNECTED", forgerName(0)),
			ino[r.Forgers[1]]: unixSocket(ino[r.Forgers[1]], "dgram", "UNCONNECTED", forgerName(1)),
			ino[r.Forgers[2]]: unixSocket(ino[r.Forgers[2]], "dgram", "UNCONNECTED", forgerName(2)),
		}},
		// The victim has two rows, its own and the forged one: neither is
		// believed. The TCP socket is no unix socket; Foreign is no fd of
		// the process. The forgers' names end at their newline.
		{"from /proc, only the rows of the process's unix socket fds claimed once", "no-unix-diag", procfs.UnixFromProc, map[uint64]procfs.Socket{
			ino[r.Peer]:       unixSocket(ino[r.Peer], "stream", "CONNECTED", ""),
			ino[r.Bound]:      unixSocket(ino[r.Bound], "dgram", "UNCONNECTED", r.BoundPath),
			ino[r.Forgers[0]]: unixSocket(ino[r.Forgers[0]], "dgram", "UNCONNECTED", "@x"),
			ino[r.Forgers[1]]: unixSocket(ino[r.Forgers[1]], "dgram", "UNCONNECTED", "@x"),
			ino[r.Forgers[2]]: unixSocket(ino[r.Forgers[2]], "dgram", "UNCONNECTED", "@x"),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.force == "" {
				testutil.RequireUnixDiag(t)
			}
			t.Setenv("FDTRACE_FORCE_FALLBACK", tc.force)
			socks, from, err := procfs.UnixSockets(os.Getpid(), own)
			if err != nil {
				t.Fatal(err)
			}
			if from != tc.from {
				t.Errorf("unix sockets from %q, want %q", from, tc.from)
			}
			for i, s := range socks {
				if _, ok := own[i]; !ok && (i == r.Foreign || s.Path == "/forged-foreign") {
					t.Errorf("the forged row of an inode no socket has was believed: %+v", s)
				}
			}
			for i := range own {
				if got, want := socks[i], tc.want[i]; got != want {
					t.Errorf("fd %d (inode %d):\n got %+v\nwant %+v", own[i], i, got, want)
				}
			}
		})
	}
}

// Ordinary unix sockets: the same rows from either source, and sock_diag
// adds their queues.
func TestSockDiagAndProcAgreeOnOrdinaryUnixSockets(t *testing.T) {
	testutil.RequireUnixDiag(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	open := func(typ int) int { return testutil.UnixSocket(t, typ) }
	dir := t.TempDir()
	listenPath := filepath.Join(dir, "listen.sock")
	listener := open(unix.SOCK_STREAM)
	must(unix.Bind(listener, &unix.SockaddrUnix{Name: listenPath}))
	must(unix.Listen(listener, 5))
	client := open(unix.SOCK_STREAM) // waits in the listener's queue
	must(unix.Connect(client, &unix.SockaddrUnix{Name: listenPath}))

	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	t.Cleanup(func() { unix.Close(pair[0]); unix.Close(pair[1]) })
	if _, err := unix.Write(pair[0], []byte("abc")); err != nil {
		t.Fatal(err)
	}

	unbound := open(unix.SOCK_DGRAM)
	boundPath := filepath.Join(dir, "dgram.sock")
	bound := open(unix.SOCK_DGRAM)
	must(unix.Bind(bound, &unix.SockaddrUnix{Name: boundPath}))
	dgrams, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	t.Cleanup(func() { unix.Close(dgrams[0]); unix.Close(dgrams[1]) })
	abstract := "@fdtrace-agree-" + strconv.Itoa(os.Getpid())
	seqpacket := open(unix.SOCK_SEQPACKET)
	must(unix.Bind(seqpacket, &unix.SockaddrUnix{Name: abstract}))
	must(unix.Listen(seqpacket, 3))

	diag, err := procfs.UnixDiag(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	proc, err := procfs.Sockets(os.Getpid(), "unix")
	if err != nil {
		t.Fatal(err)
	}
	for fd, want := range map[int]procfs.Socket{
		listener:  unixSocket(0, "stream", "LISTEN", listenPath),
		client:    unixSocket(0, "stream", "CONNECTED", ""),
		pair[0]:   unixSocket(0, "stream", "CONNECTED", ""),
		pair[1]:   unixSocket(0, "stream", "CONNECTED", ""),
		unbound:   unixSocket(0, "dgram", "UNCONNECTED", ""),
		bound:     unixSocket(0, "dgram", "UNCONNECTED", boundPath),
		dgrams[0]: unixSocket(0, "dgram", "CONNECTED", ""),
		seqpacket: unixSocket(0, "seqpacket", "LISTEN", abstract),
	} {
		ino := testutil.Inode(t, fd)
		want.Inode = ino
		if proc[ino] != want {
			t.Errorf("fd %d in /proc:\n got %+v\nwant %+v", fd, proc[ino], want)
		}
		d := diag[ino]
		d.RxQueue, d.TxQueue = 0, 0 // /proc/net/unix has no queues
		if d != want {
			t.Errorf("fd %d from sock_diag:\n got %+v\nwant %+v", fd, diag[ino], want)
		}
	}
	// A listener's queue is its waiting connections and its backlog.
	if l := diag[testutil.Inode(t, listener)]; l.RxQueue != 1 || l.TxQueue != 5 {
		t.Errorf("listener's queue %d/%d from sock_diag, want 1/5", l.RxQueue, l.TxQueue)
	}
	if s := diag[testutil.Inode(t, pair[1])]; s.RxQueue != 3 {
		t.Errorf("3 bytes written to the pair, %d to read from sock_diag", s.RxQueue)
	}
}
