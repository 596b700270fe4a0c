package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/procfs"
)

// queue is a listener's accept queue: waiting connections and backlog.
type queue struct{ len, max uint64 }

// Constants of linux/inet_diag.h and linux/unix_diag.h.
const (
	tcpListen      = 10 // TCP_LISTEN, as a state bit: 1 << tcpListen
	udiagShowRQLen = 0x10
	unixDiagRQLen  = 4
	inetDiagReqLen = 56 // struct inet_diag_req_v2
	inetDiagMsgLen = 72 // struct inet_diag_msg
	unixDiagReqLen = 24 // struct unix_diag_req
	unixDiagMsgLen = 16 // struct unix_diag_msg
)

// listenQueues asks sock_diag, in pid's network namespace, for the accept
// queue of every listening TCP and unix socket there: inode -> queue.
// The max is the backlog given to listen(), capped by somaxconn.
func listenQueues(pid int) (map[uint64]queue, error) {
	fd, err := diagSocket(pid)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	out := map[uint64]queue{}
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		req := make([]byte, inetDiagReqLen)
		req[0], req[1] = family, unix.IPPROTO_TCP
		binary.NativeEndian.PutUint32(req[4:], 1<<tcpListen)
		err := dump(fd, req, func(m []byte) {
			if len(m) < inetDiagMsgLen || m[1] != tcpListen {
				return
			}
			ino := uint64(binary.NativeEndian.Uint32(m[68:]))
			out[ino] = queue{uint64(binary.NativeEndian.Uint32(m[56:])), uint64(binary.NativeEndian.Uint32(m[60:]))}
		})
		if err != nil {
			return nil, fmt.Errorf("sock_diag tcp: %w", err)
		}
	}
	req := make([]byte, unixDiagReqLen)
	req[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(req[4:], 1<<tcpListen)
	binary.NativeEndian.PutUint32(req[12:], udiagShowRQLen)
	// Without unix_diag (CONFIG_UNIX_DIAG) unix queues stay unknown, which
	// is no reason to fail.
	_ = dump(fd, req, func(m []byte) {
		if len(m) < unixDiagMsgLen {
			return
		}
		ino := uint64(binary.NativeEndian.Uint32(m[4:]))
		for a := m[unixDiagMsgLen:]; len(a) >= 4; {
			alen := int(binary.NativeEndian.Uint16(a))
			if alen < 4 || alen > len(a) {
				return
			}
			if binary.NativeEndian.Uint16(a[2:]) == unixDiagRQLen && alen >= 12 {
				out[ino] = queue{uint64(binary.NativeEndian.Uint32(a[4:])), uint64(binary.NativeEndian.Uint32(a[8:]))}
			}
			a = a[min((alen+3)&^3, len(a)):]
		}
	})
	return out, nil
}

// diagSocket opens a NETLINK_SOCK_DIAG socket in pid's network namespace:
// a socket answers for the namespace it was created in, so the thread
// that creates it enters pid's namespace first and comes back after.
func diagSocket(pid int) (int, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	}
	target := filepath.Join(procfs.Root, strconv.Itoa(pid), "ns", "net")
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

// dump sends one SOCK_DIAG_BY_FAMILY dump request and hands each answer's
// payload to f.
func dump(fd int, req []byte, f func([]byte)) error {
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
