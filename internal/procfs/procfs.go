// Package procfs reads what fdtrace needs from /proc: processes, their fds
// and limits. It is the ground truth the kernel accounting is seeded from
// and checked against.
package procfs

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
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
		return 0, 0, err
	}
	return lim.Cur, lim.Max, nil
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
	base := filepath.Join(Root, strconv.Itoa(pid), "net")
	for _, name := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile(filepath.Join(base, name))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			ino, err := strconv.ParseUint(f[9], 10, 64)
			if err != nil || ino == 0 {
				continue
			}
			local, remote := hexAddr(f[1]), hexAddr(f[2])
			if strings.HasSuffix(remote, ":0") {
				out[ino] = name + " " + local // listening or unconnected
			} else {
				out[ino] = name + " " + local + " -> " + remote
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(base, "unix")); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			if ino, err := strconv.ParseUint(f[6], 10, 64); err == nil && ino != 0 {
				out[ino] = "unix " + f[7]
			}
		}
	}
	return out
}

// hexAddr turns /proc/net/tcp's "0100007F:1F90" into "127.0.0.1:8080".
func hexAddr(s string) string {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return s
	}
	p, _ := strconv.ParseUint(port, 16, 16)
	raw, err := hex.DecodeString(host)
	if err != nil {
		return s
	}
	// The kernel prints each 32-bit word in host (little-endian) order.
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	return net.JoinHostPort(net.IP(raw).String(), strconv.FormatUint(p, 10))
}
