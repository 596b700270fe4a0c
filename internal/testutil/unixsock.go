package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/procfs"
)

// RequireUnixDiag skips a test of the unix sockets sock_diag lists where
// the kernel has no unix_diag, except on CI (CI=true), whose kernels all
// have it: there it fails.
func RequireUnixDiag(t testing.TB) {
	t.Helper()
	_, err := procfs.UnixDiag(os.Getpid())
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but sock_diag lists no unix sockets: %v", err)
	}
	t.Skipf("sock_diag lists no unix sockets here: %v", err)
}

// ForgedUnixRows are sockets of the test process, three of them bound to
// abstract names that forge rows of /proc/net/unix: a newline, then a row
// of the name's making.
type ForgedUnixRows struct {
	// Victim and Peer are a connected stream pair, bound to no path; a
	// forged row says Victim is a listener on /forged-victim.
	Victim, Peer int
	// Bound is a datagram socket bound to BoundPath: no row claims it
	// but its own.
	Bound     int
	BoundPath string
	// TCP is a TCP listener on 127.0.0.1; a forged row says it is a unix
	// listener on /forged-tcp.
	TCP int
	// Forgers are the sockets whose names hold the forged rows; the last
	// one claims Foreign, an inode no socket has, for a listener on
	// /forged-foreign.
	Forgers []int
	Foreign uint64
}

// ForgeUnixRows opens the sockets of ForgedUnixRows in the test process
// (close-on-exec) and closes them when the test ends.
func ForgeUnixRows(t testing.TB) *ForgedUnixRows {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	open := func(typ int) int { return UnixSocket(t, typ) }
	r := &ForgedUnixRows{Foreign: 4294960001}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	t.Cleanup(func() { unix.Close(pair[0]); unix.Close(pair[1]) })
	r.Victim, r.Peer = pair[0], pair[1]

	r.Bound = open(unix.SOCK_DGRAM)
	r.BoundPath = filepath.Join(t.TempDir(), "bound.sock")
	must(unix.Bind(r.Bound, &unix.SockaddrUnix{Name: r.BoundPath}))

	r.TCP, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	t.Cleanup(func() { unix.Close(r.TCP) })
	must(unix.Bind(r.TCP, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	must(unix.Listen(r.TCP, 1))

	// The row of a stream listener (flags __SO_ACCEPTCON, type 1, state 1).
	row := func(ino uint64, path string) string {
		return fmt.Sprintf("0000000000000000: 00000002 00000000 00010000 0001 01 %d %s", ino, path)
	}
	for _, forged := range []string{
		row(Inode(t, r.Victim), "/forged-victim"),
		row(Inode(t, r.TCP), "/forged-tcp"),
		row(r.Foreign, "/forged-foreign"),
	} {
		fd := open(unix.SOCK_DGRAM)
		must(unix.Bind(fd, &unix.SockaddrUnix{Name: "@x\n" + forged}))
		r.Forgers = append(r.Forgers, fd)
	}
	return r
}

// Inode is the inode of fd of the test process.
func Inode(t testing.TB, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// UnixSocket opens a unix socket of type typ (close-on-exec), closed when
// the test ends.
func UnixSocket(t testing.TB, typ int) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}
