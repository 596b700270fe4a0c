package procfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Of linux/unix_diag.h, which golang.org/x/sys/unix does not have.
const (
	udiagShowName  = 0x01 // UDIAG_SHOW_NAME
	udiagShowRQLen = 0x10 // UDIAG_SHOW_RQLEN
	unixDiagName   = 0    // UNIX_DIAG_NAME
	unixDiagRQLen  = 4    // UNIX_DIAG_RQLEN
	unixDiagReqLen = 24   // struct unix_diag_req
	unixDiagMsgLen = 16   // struct unix_diag_msg
)

// The states of unix sockets, as include/net/tcp_states.h numbers them.
const (
	tcpEstablished = 1
	tcpListen      = 10
)

// UnixDiag lists the unix sockets of pid's network namespace, by inode, as
// sock_diag (NETLINK_SOCK_DIAG, UNIX_DIAG) gives them: unlike the rows of
// /proc/PID/net/unix, these no socket's name can forge. It fails where
// the kernel has no unix_diag (a module on Debian) and where pid's
// namespace may not be entered.
func UnixDiag(pid int) (map[uint64]Socket, error) {
	fd, err := DiagSocket(pid)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	req := make([]byte, unixDiagReqLen)
	req[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(req[4:], ^uint32(0)) // every state
	binary.NativeEndian.PutUint32(req[12:], udiagShowName|udiagShowRQLen)
	out := map[uint64]Socket{}
	err = DiagDump(fd, req, func(m []byte) {
		if s, ok := parseUnixDiag(m); ok {
			out[s.Inode] = s
		}
	})
	if err != nil {
		return nil, fmt.Errorf("sock_diag of unix sockets: %w", err)
	}
	return out, nil
}

// parseUnixDiag reads a unix_diag_msg and its attributes into what
// parseUnix makes of the socket's row of /proc/net/unix, with the queues
// besides (for a listener, its waiting connections and its backlog).
func parseUnixDiag(m []byte) (Socket, bool) {
	if len(m) < unixDiagMsgLen {
		return Socket{}, false
	}
	s := Socket{Table: "unix", Family: "AF_UNIX", Inode: uint64(binary.NativeEndian.Uint32(m[4:]))}
	if s.Inode == 0 {
		return Socket{}, false
	}
	s.Protocol = unixType(uint64(m[1]))
	// /proc/net/unix says the same of a socket with an inode (one a file
	// holds): its CONNECTING and DISCONNECTING are of sockets without.
	switch m[2] {
	case tcpListen:
		s.State = "LISTEN"
	case tcpEstablished:
		s.State = "CONNECTED"
	default:
		s.State = "UNCONNECTED"
	}
	for a := m[unixDiagMsgLen:]; len(a) >= 4; {
		alen := int(binary.NativeEndian.Uint16(a))
		if alen < 4 || alen > len(a) {
			break
		}
		data := a[4:alen]
		switch binary.NativeEndian.Uint16(a[2:]) {
		case unixDiagName:
			s.Path = unixName(data)
		case unixDiagRQLen:
			if len(data) >= 8 {
				s.RxQueue = uint64(binary.NativeEndian.Uint32(data))
				s.TxQueue = uint64(binary.NativeEndian.Uint32(data[4:]))
			}
		}
		a = a[min((alen+3)&^3, len(a)):]
	}
	return s, true
}

// unixName writes a socket's address as /proc/net/unix does: a path up to
// its NUL, an abstract name with "@" for each NUL (its leading one too).
// Other bytes are kept: they are data, made printable where they are
// shown (internal/sanitize).
func unixName(b []byte) string {
	if len(b) > 0 && b[0] != 0 {
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		return string(b)
	}
	return strings.ReplaceAll(string(b), "\x00", "@")
}

// DiagSocket opens a NETLINK_SOCK_DIAG socket in pid's network namespace:
// a socket answers for the namespace it was created in, so the thread
// that creates it enters pid's namespace first and comes back after.
func DiagSocket(pid int) (int, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	}
	target := filepath.Join(Root, strconv.Itoa(pid), "ns", "net")
	var theirs, ours unix.Stat_t
	if err := unix.Stat(target, &theirs); err != nil {
		return -1, fmt.Errorf("network namespace of pid %d: %w", pid, err)
	}
	if err := unix.Stat("/proc/self/ns/net", &ours); err == nil && ours.Ino == theirs.Ino && ours.Dev == theirs.Dev {
		return open()
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// A thread that cannot get back to our namespace stays locked,
		// and so dies with this goroutine.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, err}
			return
		}
		defer self.Close()
		ns, err := os.Open(target)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("entering the network namespace of pid %d: %w", pid, err)}
			return
		}
		fd, err := open()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

// DiagDump sends one SOCK_DIAG_BY_FAMILY dump request on a DiagSocket and
// hands each answer's payload to f.
func DiagDump(fd int, req []byte, f func([]byte)) error {
	const hdr = unix.SizeofNlMsghdr
	msg := make([]byte, hdr+len(req))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	copy(msg[hdr:], req)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		for b := buf[:n]; len(b) >= hdr; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < hdr || l > len(b) {
				return errors.New("malformed netlink message")
			}
			data := b[hdr:l]
			switch binary.NativeEndian.Uint16(b[4:]) {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(data)); e != 0 {
						return unix.Errno(-e)
					}
				}
				return nil
			default:
				f(data)
			}
			b = b[min((l+3)&^3, len(b)):]
		}
	}
}
