// Package snapshot reads what one process holds from /proc and sock_diag,
// like lsof -p PID on one screen: its fds by type, its limit, where its
// sockets go, its listeners' accept queues, its files by directory. It
// also measures an fd budget over a window, by sampling (see Budget).
package snapshot

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/procfs"
)

// FD is one open fd and what it refers to.
type FD struct {
	Num    int
	Target string // the /proc/PID/fd link: "socket:[123]", "/etc/hosts"
	Type   string // the fd type of the trace records: "file", "socket", ...
	// For sockets: the table row (nil when no table of the process's
	// network namespace lists it), and its family and protocol.
	Sock             *procfs.Socket
	Family, Protocol string
	// Dir is Inbound or Outbound for a connected TCP socket.
	Dir Direction
	// Port is the local port of an inbound connection; Endpoint the
	// remote end of an outbound one ("10.0.0.5:5432").
	Port     int
	Endpoint string
}

// Direction tells a connection the process accepted from one it made.
type Direction int

const (
	NotConnection Direction = iota
	Inbound                 // the local port is one a listener of the namespace has
	Outbound
)

// ReadFDs lists pid's fds with their link and type, as ls -l /proc/PID/fd.
// An fd closed between the listing and its readlink is left out.
func ReadFDs(pid int) ([]FD, error) {
	nums, err := procfs.FDs(pid)
	if err != nil {
		return nil, describe(pid, err)
	}
	slices.Sort(nums)
	fds := make([]FD, 0, len(nums))
	for _, n := range nums {
		target, err := procfs.FDTarget(pid, n)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, describe(pid, err)
		}
		fds = append(fds, FD{Num: n, Target: target, Type: procfs.TargetType(target)})
	}
	if len(fds) == 0 && procfs.Gone(pid) {
		return nil, fmt.Errorf("pid %d: %w", pid, procfs.ErrNoProcess)
	}
	return fds, nil
}

// describe turns a permission error into advice.
func describe(pid int, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("pid %d: reading its fds: permission denied (run as root or as its owner)", pid)
	}
	return err
}

// ClassifySockets fills in the socket fields of fds from the given
// /proc/PID/net tables (all when none are given), the unix sockets from
// procfs.UnixSockets. A connected TCP socket is inbound when its local
// port is one that a listener of the network namespace has (whichever
// process holds it), outbound otherwise. A socket no table lists that was
// closed since fds were read is dropped: fds comes back shorter. With all
// tables, one that no table lists is named by the kernel's name of its
// protocol.
func ClassifySockets(pid int, fds []FD, tables ...string) ([]FD, error) {
	fds, _, err := classifySockets(pid, fds, tables...)
	return fds, err
}

// classifySockets is ClassifySockets, saying where the unix sockets came
// from (procfs.UnixFromSockDiag or UnixFromProc; "" when none were read).
func classifySockets(pid int, fds []FD, tables ...string) ([]FD, string, error) {
	if !slices.ContainsFunc(fds, func(fd FD) bool { return fd.Type == "socket" }) {
		return fds, "", nil
	}
	all := len(tables) == 0
	if all {
		tables = procfs.SocketTables
	}
	socks := map[uint64]procfs.Socket{}
	if others := slices.DeleteFunc(slices.Clone(tables), func(t string) bool { return t == "unix" }); len(others) > 0 {
		var err error
		if socks, err = procfs.Sockets(pid, others...); err != nil {
			return nil, "", err
		}
	}
	var unixFrom string
	if slices.Contains(tables, "unix") {
		// The socket fds no other table lists: from /proc/PID/net/unix,
		// only their rows are believed.
		own := map[uint64]int{}
		for _, fd := range fds {
			if ino := procfs.SocketInode(fd.Target); fd.Type == "socket" && ino != 0 {
				if _, listed := socks[ino]; !listed {
					own[ino] = fd.Num
				}
			}
		}
		unixSocks, from, err := procfs.UnixSockets(pid, own)
		if err != nil {
			return nil, "", err
		}
		unixFrom = from
		for ino, s := range unixSocks {
			if _, listed := socks[ino]; !listed {
				socks[ino] = s
			}
		}
	}
	listening := map[uint16]bool{}
	for _, s := range socks {
		if s.Protocol == "tcp" && s.State == "LISTEN" {
			listening[s.Local.Port()] = true
		}
	}
	out := fds[:0]
	for _, fd := range fds {
		if fd.Type != "socket" {
			out = append(out, fd)
			continue
		}
		s, ok := socks[procfs.SocketInode(fd.Target)]
		if !ok {
			if target, err := procfs.FDTarget(pid, fd.Num); err != nil || target != fd.Target {
				continue
			}
			if all { // with some tables only, the rest is expected
				fd.Family, fd.Protocol = protoName(procfs.SockProtoName(pid, fd.Num))
			}
			out = append(out, fd)
			continue
		}
		fd.Sock, fd.Family, fd.Protocol = &s, s.Family, s.Protocol
		if s.Protocol == "tcp" && s.State != "LISTEN" && s.Connected() {
			if listening[s.Local.Port()] {
				fd.Dir, fd.Port = Inbound, int(s.Local.Port())
			} else {
				fd.Dir, fd.Endpoint = Outbound, unmap(s.Remote)
			}
		}
		out = append(out, fd)
	}
	return out, unixFrom, nil
}

// protoName turns the kernel's protocol name of a socket into a family
// and protocol.
func protoName(name string) (family, protocol string) {
	switch name {
	case "TCP", "UDP", "RAW", "UDP-Lite":
		return "AF_INET", strings.ToLower(strings.ReplaceAll(name, "-", ""))
	case "TCPv6", "UDPv6", "RAWv6", "UDPLITEv6":
		return "AF_INET6", strings.ToLower(strings.TrimSuffix(name, "v6"))
	case "PING":
		return "AF_INET", "icmp"
	case "PINGv6":
		return "AF_INET6", "icmp"
	case "UNIX-STREAM":
		return "AF_UNIX", "stream"
	case "UNIX":
		return "AF_UNIX", "dgram"
	case "NETLINK":
		return "AF_NETLINK", ""
	case "PACKET":
		return "AF_PACKET", ""
	case "":
		return "unknown", ""
	}
	return "unknown", strings.ToLower(name)
}

// unmap writes an endpoint, an IPv4-mapped IPv6 address as IPv4.
func unmap(ap netip.AddrPort) string {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// Snapshot is one process at one moment: the record and the fds it was
// made from.
type Snapshot struct {
	events.Snapshot
	FDs []FD `json:"-"`
}

// TopDirectories is how many directories a snapshot lists.
const TopDirectories = 20

// Take reads pid's snapshot.
func Take(pid int) (*Snapshot, error) {
	comm, err := procfs.Comm(pid)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	fds, err := ReadFDs(pid)
	if err != nil {
		return nil, err
	}
	soft, hard, err := procfs.FDLimit(pid)
	if err != nil {
		return nil, fmt.Errorf("pid %d: reading its fd limit: %w", pid, err)
	}
	fds, unixFrom, err := classifySockets(pid, fds)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{FDs: fds, Snapshot: events.Snapshot{
		Type: "snapshot", Time: events.Time(now), PID: pid, Comm: comm, UnixSocketsFrom: unixFrom,
		OpenFDs: int64(len(fds)), FDLimit: soft, FDLimitHard: hard,
		ByType: map[string]int{}, FileKinds: map[string]int{},
		Sockets: []events.SocketCount{}, Listening: []events.Listener{}, Inbound: []events.PortCount{},
		Outbound: []events.EndpointCount{}, Directories: []events.DirCount{},
	}}
	s.Utilization = events.Utilization(s.OpenFDs, soft)
	s.Level = events.Level(s.Utilization)

	type sockKey struct{ family, protocol, state string }
	socks := map[sockKey]int{}
	inbound, outbound, dirs := map[int]int{}, map[string]int{}, map[string]int{}
	for _, fd := range fds {
		s.ByType[fd.Type]++
		switch fd.Type {
		case "file":
			s.FileKinds[fileKind(pid, fd.Num)]++
			dirs[filepath.Dir(strings.TrimSuffix(fd.Target, " (deleted)"))]++
		case "socket":
			k := sockKey{fd.Family, fd.Protocol, ""}
			if fd.Sock != nil {
				k.state = fd.Sock.State
			}
			socks[k]++
			switch fd.Dir {
			case Inbound:
				inbound[fd.Port]++
			case Outbound:
				outbound[fd.Endpoint]++
			}
		}
	}
	for k, n := range socks {
		s.Sockets = append(s.Sockets, events.SocketCount{Family: k.family, Protocol: k.protocol, State: k.state, Count: n})
	}
	slices.SortFunc(s.Sockets, func(a, b events.SocketCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Family, b.Family),
			cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.State, b.State))
	})
	for port, n := range inbound {
		s.Inbound = append(s.Inbound, events.PortCount{Port: port, Count: n})
	}
	slices.SortFunc(s.Inbound, func(a, b events.PortCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Port, b.Port))
	})
	for ep, n := range outbound {
		s.Outbound = append(s.Outbound, events.EndpointCount{Endpoint: ep, Count: n})
	}
	slices.SortFunc(s.Outbound, func(a, b events.EndpointCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Endpoint, b.Endpoint))
	})
	for dir, n := range dirs {
		s.Directories = append(s.Directories, events.DirCount{Dir: dir, Count: n})
	}
	slices.SortFunc(s.Directories, func(a, b events.DirCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Dir, b.Dir))
	})
	s.Directories = s.Directories[:min(len(s.Directories), TopDirectories)]

	s.listeners(pid, inbound)
	if st, err := procfs.NetStat(pid); err == nil {
		s.ListenOverflows, s.ListenDrops = st["TcpExt"]["ListenOverflows"], st["TcpExt"]["ListenDrops"]
	}
	return s, nil
}

// listeners fills in the listening sockets and their accept queues.
func (s *Snapshot) listeners(pid int, inbound map[int]int) {
	seen := map[uint64]bool{}
	for _, fd := range s.FDs {
		if fd.Sock == nil || fd.Sock.State != "LISTEN" || seen[fd.Sock.Inode] {
			continue
		}
		seen[fd.Sock.Inode] = true
		l := events.Listener{Protocol: fd.Sock.Protocol, FD: fd.Num}
		if fd.Sock.Family == "AF_UNIX" {
			l.Protocol, l.Address = "unix", fd.Sock.Path
			if s.UnixSocketsFrom == procfs.UnixFromSockDiag {
				q, backlog := fd.Sock.RxQueue, fd.Sock.TxQueue
				l.Queue, l.QueueMax = &q, &backlog
			}
		} else {
			l.Address, l.Port = unmap(fd.Sock.Local), int(fd.Sock.Local.Port())
			l.Accepted = inbound[l.Port]
			q := fd.Sock.RxQueue
			l.Queue = &q
		}
		s.Listening = append(s.Listening, l)
	}
	if !slices.ContainsFunc(s.Listening, func(l events.Listener) bool { return l.Protocol == "tcp" }) {
		return
	}
	// The TCP backlogs come from sock_diag only; without it (in another
	// network namespace, without the right to enter it) they stay unknown.
	queues, err := listenQueues(pid)
	if err != nil {
		return
	}
	for i := range s.Listening {
		l := &s.Listening[i]
		ino := procfs.SocketInode(s.fdTarget(l.FD))
		if q, ok := queues[ino]; ok {
			l.Queue, l.QueueMax = &q.len, &q.max
		}
	}
}

func (s *Snapshot) fdTarget(num int) string {
	i, ok := slices.BinarySearchFunc(s.FDs, num, func(fd FD, n int) int { return cmp.Compare(fd.Num, n) })
	if !ok {
		return ""
	}
	return s.FDs[i].Target
}

// fileKind says what a "file" fd is: regular, directory, char_device,
// block_device, fifo, socket, symlink or other.
func fileKind(pid, fd int) string {
	st, err := procfs.FDStat(pid, fd)
	if err != nil {
		return "other"
	}
	switch m := st.Mode(); {
	case m.IsRegular():
		return "regular"
	case m.IsDir():
		return "directory"
	case m&fs.ModeCharDevice != 0:
		return "char_device"
	case m&fs.ModeDevice != 0:
		return "block_device"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "other"
}
