package events

import (
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrnoName turns 24 into "EMFILE".
func ErrnoName(errno int) string {
	if name := unix.ErrnoName(syscall.Errno(errno)); name != "" {
		return name
	}
	return "errno " + strconv.Itoa(errno)
}

var families = map[int]string{
	unix.AF_UNIX:    "AF_UNIX",
	unix.AF_INET:    "AF_INET",
	unix.AF_INET6:   "AF_INET6",
	unix.AF_NETLINK: "AF_NETLINK",
	unix.AF_PACKET:  "AF_PACKET",
	unix.AF_VSOCK:   "AF_VSOCK",
	unix.AF_ALG:     "AF_ALG",
	unix.AF_XDP:     "AF_XDP",
}

// FamilyName turns 2 into "AF_INET"; 0 (unknown) into "".
func FamilyName(family int) string {
	if family == 0 {
		return ""
	}
	if name, ok := families[family]; ok {
		return name
	}
	return "AF_" + strconv.Itoa(family)
}

var sockTypes = map[int]string{
	unix.SOCK_STREAM:    "SOCK_STREAM",
	unix.SOCK_DGRAM:     "SOCK_DGRAM",
	unix.SOCK_RAW:       "SOCK_RAW",
	unix.SOCK_SEQPACKET: "SOCK_SEQPACKET",
	unix.SOCK_RDM:       "SOCK_RDM",
}

// SockTypeName turns 1 into "SOCK_STREAM"; 0 (unknown) into "".
func SockTypeName(t int) string {
	if t == 0 {
		return ""
	}
	if name, ok := sockTypes[t&0xf]; ok {
		return name
	}
	return "SOCK_" + strconv.Itoa(t&0xf)
}

// FDTypes are the fd_type values of the records, in the kernel's order.
var FDTypes = []string{"other", "file", "socket", "pipe", "epoll", "eventfd",
	"timerfd", "signalfd", "inotify", "memfd", "pidfd"}

// FDTypeName names a kernel fd type number.
func FDTypeName(t int) string {
	if t >= 0 && t < len(FDTypes) {
		return FDTypes[t]
	}
	return "other"
}

// SyscallNames name the kernel's syscall ids, in the kernel's order. The
// first is the "syscall" of an fd that existed before fdtrace attached.
var SyscallNames = []string{"", "open", "creat", "openat", "openat2", "socket",
	"socketpair", "accept", "accept4", "pipe", "pipe2", "epoll_create",
	"epoll_create1", "eventfd", "eventfd2", "timerfd_create", "signalfd",
	"signalfd4", "inotify_init", "inotify_init1", "memfd_create", "pidfd_open",
	"pidfd_getfd", "dup", "dup2", "dup3", "fcntl", "recvmsg", "close",
	"close_range", "execve", "exit", "clone", "clone3", "fanotify_init",
	"io_uring_setup", "perf_event_open", "userfaultfd", "open_by_handle_at",
	"open_tree", "fsopen", "fsmount", "fspick", "mq_open"}

// SyscallName names a kernel syscall id.
func SyscallName(id int) string {
	if id > 0 && id < len(SyscallNames) {
		return SyscallNames[id]
	}
	if id == 0 {
		return "preexisting"
	}
	return "syscall " + strconv.Itoa(id)
}
