// Package procfs reads what fdtrace needs from /proc: processes, their fds
// and limits. It is the ground truth the kernel accounting is seeded from
// and checked against.
package procfs

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is the proc mount; tests may point it elsewhere.
var Root = "/proc"

// ErrNoProcess says the pid does not exist (or exited).
var ErrNoProcess = errors.New("no such process")

// PIDs lists the processes (thread group leaders) in /proc.
func PIDs() ([]int, error) {
	entries, err := os.ReadDir(Root)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Exists reports whether pid is a live process.
func Exists(pid int) bool {
	_, err := os.Stat(filepath.Join(Root, strconv.Itoa(pid)))
	return err == nil
}

// FDs lists the open fd numbers of pid, like ls /proc/PID/fd.
func FDs(pid int) ([]int, error) {
	entries, err := os.ReadDir(fdDir(pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
		}
		return nil, err
	}
	fds := make([]int, 0, len(entries))
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

func fdDir(pid int) string { return filepath.Join(Root, strconv.Itoa(pid), "fd") }

// FDTarget is the link text of /proc/PID/fd/FD ("socket:[123]", "/etc/hosts").
func FDTarget(pid, fd int) (string, error) {
	return os.Readlink(filepath.Join(fdDir(pid), strconv.Itoa(fd)))
}

// FDOpen reports whether the fd is still open.
func FDOpen(pid, fd int) bool {
	var st unix.Stat_t
	return unix.Lstat(filepath.Join(fdDir(pid), strconv.Itoa(fd)), &st) == nil
}

// FDStat stats what fd of pid refers to (following the fd's link, as the
// process sees its file).
func FDStat(pid, fd int) (os.FileInfo, error) {
	return os.Stat(filepath.Join(fdDir(pid), strconv.Itoa(fd)))
}

// FDCloexec reports whether the fd has O_CLOEXEC set, from /proc/PID/fdinfo.
func FDCloexec(pid, fd int) bool {
	b, err := os.ReadFile(filepath.Join(Root, strconv.Itoa(pid), "fdinfo", strconv.Itoa(fd)))
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			return err == nil && flags&unix.O_CLOEXEC != 0
		}
	}
	return false
}

// TargetType names the fd type of a /proc/PID/fd link text, with the
// names of the trace records.
func TargetType(target string) string {
	switch {
	case strings.HasPrefix(target, "socket:"):
		return "socket"
	case strings.HasPrefix(target, "pipe:"):
		return "pipe"
	case strings.HasPrefix(target, "/memfd:"):
		return "memfd"
	case strings.HasPrefix(target, "anon_inode:"):
		switch strings.TrimPrefix(target, "anon_inode:") {
		case "[eventpoll]":
			return "epoll"
		case "[eventfd]":
			return "eventfd"
		case "[timerfd]":
			return "timerfd"
		case "[signalfd]":
			return "signalfd"
		case "inotify":
			return "inotify"
		case "[pidfd]":
			return "pidfd"
		}
		return "other"
	case strings.HasPrefix(target, "/"):
		return "file"
	}
	return "other"
}

// Comm is the process name (/proc/PID/comm).
func Comm(pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join(Root, strconv.Itoa(pid), "comm"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
		}
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// FDLimit is the RLIMIT_NOFILE of pid: soft and hard.
func FDLimit(pid int) (soft, hard uint64, err error) {
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return 0, 0, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
		}
		// prlimit wants the process's credentials even to read;
		// /proc/PID/limits is world-readable.
		if b, rerr := os.ReadFile(filepath.Join(Root, strconv.Itoa(pid), "limits")); rerr == nil {
			if soft, hard, ok := parseLimits(string(b)); ok {
				return soft, hard, nil
			}
		}
		return 0, 0, err
	}
	return lim.Cur, lim.Max, nil
}

// parseLimits reads the "Max open files" row of /proc/PID/limits.
func parseLimits(text string) (soft, hard uint64, ok bool) {
	for line := range strings.SplitSeq(text, "\n") {
		rest, found := strings.CutPrefix(line, "Max open files")
		if f := strings.Fields(rest); found && len(f) >= 2 {
			parse := func(s string) (uint64, error) {
				if s == "unlimited" {
					return ^uint64(0), nil
				}
				return strconv.ParseUint(s, 10, 64)
			}
			soft, err1 := parse(f[0])
			hard, err2 := parse(f[1])
			return soft, hard, err1 == nil && err2 == nil
		}
	}
	return 0, 0, false
}

// SocketInode is the inode of a "socket:[N]" fd link, 0 for other links.
func SocketInode(target string) uint64 {
	s, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
	return n
}

// SocketPeers maps socket inodes to "local -> remote" for the TCP and UDP
// sockets in pid's network namespace, and to the path of unix sockets.
func SocketPeers(pid int) map[uint64]string {
	out := map[uint64]string{}
	socks, _ := Sockets(pid, "tcp", "tcp6", "udp", "udp6", "unix")
	for ino, s := range socks {
		switch {
		case s.Table == "unix":
			if s.Path != "" {
				out[ino] = "unix " + s.Path
			}
		case s.Remote.Port() == 0:
			out[ino] = s.Table + " " + unmap(s.Local).String() // listening or unconnected
		default:
			out[ino] = s.Table + " " + unmap(s.Local).String() + " -> " + unmap(s.Remote).String()
		}
	}
	return out
}

// unmap writes an IPv4-mapped IPv6 address as IPv4.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Gone reports whether pid has exited: no such process, or a zombie
// (exited, not yet reaped by its parent; its fd table is already gone).
func Gone(pid int) bool {
	b, err := os.ReadFile(filepath.Join(Root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH)
	}
	// The state follows the comm, which is in parentheses and may hold any byte.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	st := b[i+2]
	return st == 'Z' || st == 'X'
}

// BPFMapFdinfo reads map_id and memlock from the fdinfo of a BPF map fd
// (/proc/PID/fdinfo/FD); ok is false for other fds.
func BPFMapFdinfo(text string) (id string, memlock uint64, ok bool) {
	for _, l := range strings.Split(text, "\n") {
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "map_id":
			id, ok = v, true
		case "memlock":
			memlock, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return id, memlock, ok
}
