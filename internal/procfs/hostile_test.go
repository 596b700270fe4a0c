package procfs

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
)

// An abstract unix socket's name is printed raw in /proc/net/unix: one
// with a newline adds a row of its making, which may claim the inode of
// another process's socket. A row is not believed for an inode that two
// rows claim.
func TestAUnixSocketNameCannotForgeTheRowOfAnotherSocket(t *testing.T) {
	l, err := net.Listen("unix", "@fdtrace-victim-"+strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	victim := st.Ino
	// A row saying the victim is an unconnected datagram socket bound to
	// /forged.
	name := fmt.Sprintf("@x\n0000000000000000: 00000002 00000000 00000000 0002 01 %d /forged", victim)
	evil, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()

	socks, err := Sockets(os.Getpid(), "unix")
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := socks[victim]; ok && (s.Path == "/forged" || s.Protocol == "dgram") {
		t.Errorf("the forged row was believed: %+v", s)
	}
}
