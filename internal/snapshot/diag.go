package snapshot

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/procfs"
)

// queue is a listener's accept queue: waiting connections and backlog.
type queue struct{ len, max uint64 }

// Constants of linux/inet_diag.h.
const (
	tcpListen      = 10 // TCP_LISTEN, as a state bit: 1 << tcpListen
	inetDiagReqLen = 56 // struct inet_diag_req_v2
	inetDiagMsgLen = 72 // struct inet_diag_msg
)

// listenQueues asks sock_diag, in pid's network namespace, for the accept
// queue of every listening TCP socket there: inode -> queue. The max is
// the backlog given to listen(), capped by somaxconn. (Unix listeners'
// come with their sockets, from procfs.UnixDiag.)
func listenQueues(pid int) (map[uint64]queue, error) {
	fd, err := procfs.DiagSocket(pid)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	out := map[uint64]queue{}
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		req := make([]byte, inetDiagReqLen)
		req[0], req[1] = family, unix.IPPROTO_TCP
		binary.NativeEndian.PutUint32(req[4:], 1<<tcpListen)
		err := procfs.DiagDump(fd, req, func(m []byte) {
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
	return out, nil
}
