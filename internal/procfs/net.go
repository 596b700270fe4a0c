package procfs

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Socket is one row of a /proc/PID/net table: a socket of the process's
// network namespace.
type Socket struct {
	Inode uint64
	// Table is the /proc/PID/net file it came from: "tcp", "tcp6",
	// "udp", "udp6", "udplite", "udplite6", "raw", "raw6", "icmp",
	// "icmp6", "unix", "netlink" or "packet" ("unix" too for the unix
	// sockets of sock_diag).
	Table string
	// Family is "AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK" or
	// "AF_PACKET".
	Family string
	// Protocol is "tcp", "udp", "udplite", "raw" or "icmp" (ping) for
	// internet sockets; the socket type ("stream", "dgram", "seqpacket")
	// for unix sockets; the netlink family ("route", "sock_diag", ... or
	// its number) for netlink sockets; "raw" or "dgram" for packet sockets.
	Protocol string
	// State is the TCP state ("ESTABLISHED", "LISTEN", ...) of TCP
	// sockets; "ESTABLISHED" (connected) or "UNCONNECTED" for UDP, raw
	// and ping sockets; "LISTEN", "CONNECTED", "UNCONNECTED",
	// "CONNECTING" or "DISCONNECTING" for unix sockets; "" for the rest.
	State string
	// Local and Remote are the endpoints of internet sockets (an invalid
	// Remote or port 0: not connected).
	Local, Remote netip.AddrPort
	// RxQueue is the receive queue; for a listener, the connections
	// waiting in its accept queue. Of unix sockets, only sock_diag gives
	// the queues: a unix listener's TxQueue is its backlog.
	RxQueue, TxQueue uint64
	// Path is the bound path of a unix socket ("@name" if abstract).
	Path string
}

// SocketTables are the /proc/PID/net files Sockets reads by default.
var SocketTables = []string{"tcp", "tcp6", "udp", "udp6", "udplite", "udplite6",
	"raw", "raw6", "icmp", "icmp6", "unix", "netlink", "packet"}

// Sockets reads the given /proc/PID/net tables (all of SocketTables when
// none are given), which list the sockets of pid's network namespace, and
// maps socket inodes to them. A table the kernel does not have is skipped.
// Rows of unix sockets may be forged by a socket's name (see UnixSockets):
// one is not believed for an inode that another row claims.
func Sockets(pid int, tables ...string) (map[uint64]Socket, error) {
	if len(tables) == 0 {
		tables = SocketTables
	}
	base := filepath.Join(Root, strconv.Itoa(pid), "net")
	out := map[uint64]Socket{}
	for _, table := range tables {
		rows := map[uint64]Socket{}
		f, err := os.Open(filepath.Join(base, table))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				if !Exists(pid) {
					return nil, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
				}
				continue
			}
			return nil, err
		}
		err = parseSocketTable(f, table, rows)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading /proc/%d/net/%s: %w", pid, table, err)
		}
		for ino, s := range rows {
			// Only unix rows carry names, and so only they can be
			// forged: another table's row stands.
			if prev, ok := out[ino]; ok && (s.Table == "unix" || prev.Table != "unix") {
				continue
			}
			out[ino] = s
		}
	}
	return out, nil
}

// Where UnixSockets found the unix sockets of a network namespace.
const (
	UnixFromSockDiag = "sock_diag"
	// UnixFromProc is /proc/PID/net/unix, its rows checked against the
	// process's fds.
	UnixFromProc = "proc"
)

// forceFallbackEnv forces fallbacks on a kernel that does not need them,
// for tests (comma-separated; internal/loader reads the others):
// "no-unix-diag" reads unix sockets as where the kernel has no unix_diag.
const forceFallbackEnv = "FDTRACE_FORCE_FALLBACK"

// UnixSockets lists the unix sockets of pid's network namespace, by inode,
// and says where from: sock_diag (UnixDiag), or where that cannot list
// them, /proc/PID/net/unix. A socket's name is printed raw in that file,
// newlines and all, so a process can add rows of its making there, with
// any state, path and inode. Of that file, a row is believed only for an
// inode of own (the inodes of pid's socket fds, each to an fd holding it)
// that no other row claims, and whose fd the kernel names a unix socket
// of the row's type.
func UnixSockets(pid int, own map[uint64]int) (map[uint64]Socket, string, error) {
	if !slices.Contains(strings.Split(os.Getenv(forceFallbackEnv), ","), "no-unix-diag") {
		if socks, err := UnixDiag(pid); err == nil {
			return socks, UnixFromSockDiag, nil
		}
	}
	socks, err := Sockets(pid, "unix")
	if err != nil {
		return nil, "", err
	}
	for ino, s := range socks {
		fd, ok := own[ino]
		if !ok || !unixProtoName(SockProtoName(pid, fd), s.Protocol) {
			delete(socks, ino)
		}
	}
	return socks, UnixFromProc, nil
}

// unixProtoName says whether the kernel's protocol name of a socket fits
// a unix socket of this type: "UNIX-STREAM" for stream sockets (since
// 5.15), "UNIX" for the others (and for every type before 5.15).
func unixProtoName(name, typ string) bool {
	return name == "UNIX" || (name == "UNIX-STREAM" && typ == "stream")
}

var tcpStates = [...]string{1: "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

// TCPStateName turns /proc/net/tcp's state number (0x0A) into "LISTEN".
func TCPStateName(st int) string {
	if st > 0 && st < len(tcpStates) {
		return tcpStates[st]
	}
	return "STATE_" + strconv.Itoa(st)
}

var netlinkProtocols = map[int]string{0: "route", 2: "usersock", 4: "sock_diag", 6: "xfrm",
	7: "selinux", 9: "audit", 10: "fib_lookup", 11: "connector", 12: "netfilter",
	15: "kobject_uevent", 16: "generic", 18: "scsitransport", 19: "rdma", 20: "crypto"}

func parseSocketTable(r io.Reader, table string, out map[uint64]Socket) error {
	// A socket has one row. An inode two rows claim was forged by a
	// name (unix sockets' are printed raw, newlines and all): neither
	// row is believed.
	claims := map[uint64]int{}
	defer func() {
		for ino, n := range claims {
			if n > 1 {
				delete(out, ino)
			}
		}
	}()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Scan() // the header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		s := Socket{Table: table}
		var ok bool
		switch table {
		case "unix":
			ok = parseUnix(f, &s)
		case "netlink":
			ok = len(f) >= 10
			if ok {
				s.Inode, _ = strconv.ParseUint(f[9], 10, 64)
				s.Family = "AF_NETLINK"
				n, _ := strconv.Atoi(f[1])
				if s.Protocol = netlinkProtocols[n]; s.Protocol == "" {
					s.Protocol = f[1]
				}
			}
		case "packet":
			ok = len(f) >= 9
			if ok {
				s.Inode, _ = strconv.ParseUint(f[8], 10, 64)
				s.Family = "AF_PACKET"
				if t, _ := strconv.Atoi(f[2]); t == unix.SOCK_RAW {
					s.Protocol = "raw"
				} else {
					s.Protocol = "dgram"
				}
			}
		default:
			ok = parseInet(f, table, &s)
		}
		if ok && s.Inode != 0 {
			out[s.Inode] = s
			claims[s.Inode]++
		}
	}
	return sc.Err()
}

// parseInet reads a row of tcp, udp, raw or icmp (4 or 6).
func parseInet(f []string, table string, s *Socket) bool {
	if len(f) < 10 {
		return false
	}
	var err error
	if s.Local, err = parseHexAddr(f[1]); err != nil {
		return false
	}
	if s.Remote, err = parseHexAddr(f[2]); err != nil {
		return false
	}
	st, err := strconv.ParseUint(f[3], 16, 8)
	if err != nil {
		return false
	}
	tx, rx, _ := strings.Cut(f[4], ":")
	s.TxQueue, _ = strconv.ParseUint(tx, 16, 64)
	s.RxQueue, _ = strconv.ParseUint(rx, 16, 64)
	if s.Inode, err = strconv.ParseUint(f[9], 10, 64); err != nil {
		return false
	}
	s.Family = "AF_INET"
	s.Protocol = strings.TrimSuffix(table, "6")
	if strings.HasSuffix(table, "6") {
		s.Family = "AF_INET6"
	}
	switch {
	case s.Protocol == "tcp":
		s.State = TCPStateName(int(st))
	case st == 1:
		s.State = "ESTABLISHED"
	default:
		s.State = "UNCONNECTED"
	}
	return true
}

// parseUnix reads a row of /proc/net/unix:
// Num RefCount Protocol Flags Type St Inode [Path].
func parseUnix(f []string, s *Socket) bool {
	if len(f) < 7 {
		return false
	}
	flags, err1 := strconv.ParseUint(f[3], 16, 32)
	typ, err2 := strconv.ParseUint(f[4], 16, 16)
	st, err3 := strconv.ParseUint(f[5], 16, 8)
	ino, err4 := strconv.ParseUint(f[6], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return false
	}
	s.Inode, s.Family = ino, "AF_UNIX"
	if len(f) > 7 {
		s.Path = f[7]
	}
	s.Protocol = unixType(typ)
	const acceptCon = 1 << 16 // __SO_ACCEPTCON: a listener
	switch {
	case flags&acceptCon != 0:
		s.State = "LISTEN"
	case st == 2:
		s.State = "CONNECTING"
	case st == 3:
		s.State = "CONNECTED"
	case st == 4:
		s.State = "DISCONNECTING"
	default:
		s.State = "UNCONNECTED"
	}
	return true
}

// unixType names a unix socket's type.
func unixType(typ uint64) string {
	switch typ {
	case unix.SOCK_STREAM:
		return "stream"
	case unix.SOCK_DGRAM:
		return "dgram"
	case unix.SOCK_SEQPACKET:
		return "seqpacket"
	}
	return "type" + strconv.FormatUint(typ, 10)
}

// parseHexAddr turns /proc/net/tcp's "0100007F:1F90" into 127.0.0.1:8080.
func parseHexAddr(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q without a port", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	raw, err := hex.DecodeString(host)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	// The kernel prints each 32-bit word in host (little-endian) order.
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(p)), nil
}

// Connected reports whether an internet socket has a remote end.
func (s Socket) Connected() bool {
	return s.Remote.Port() != 0 || (s.Remote.IsValid() && !s.Remote.Addr().IsUnspecified())
}

// SockProtoName is the kernel's name of the protocol of socket fd of pid
// ("TCP", "TCPv6", "UDP", "UNIX-STREAM", "NETLINK", ...), from the
// system.sockprotoname attribute. It names sockets that no table of the
// process's network namespace lists (one received from another namespace).
func SockProtoName(pid, fd int) string {
	buf := make([]byte, 64)
	n, err := unix.Getxattr(filepath.Join(fdDir(pid), strconv.Itoa(fd)), "system.sockprotoname", buf)
	if err != nil || n <= 0 {
		return ""
	}
	return strings.TrimRight(string(buf[:n]), "\x00")
}

// NetStat reads /proc/PID/net/netstat (the counters of pid's network
// namespace): section ("TcpExt", "IpExt", ...) -> counter -> value.
func NetStat(pid int) (map[string]map[string]uint64, error) {
	b, err := os.ReadFile(filepath.Join(Root, strconv.Itoa(pid), "net", "netstat"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
		}
		return nil, err
	}
	return parseNetStat(string(b)), nil
}

// parseNetStat reads pairs of lines, "Section: names..." then
// "Section: values...".
func parseNetStat(text string) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	lines := strings.Split(text, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || len(names) != len(values) || names[0] != values[0] {
			continue
		}
		section := strings.TrimSuffix(names[0], ":")
		m := out[section]
		if m == nil {
			m = map[string]uint64{}
			out[section] = m
		}
		for j := 1; j < len(names); j++ {
			if v, err := strconv.ParseUint(values[j], 10, 64); err == nil {
				m[names[j]] = v
			}
		}
	}
	return out
}
