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

// String names the fd type as records do ("socket"); a number past the
// kernel's types is "other".
func (t FDType) String() string {
	if int(t) < NumFDTypes {
		return fdTypeNames[t]
	}
	return fdTypeNames[0]
}

// ParseFDType is String's inverse; unknown names are FDType 0, "other".
func ParseFDType(name string) FDType {
	for i, n := range fdTypeNames {
		if n == name {
			return FDType(i)
		}
	}
	return 0
}

// String names the syscall as records do ("openat"). 0 is "preexisting":
// an fd that existed before fdtrace attached.
func (s Syscall) String() string {
	if int(s) < NumSyscalls {
		return syscallNames[s]
	}
	return "syscall " + strconv.Itoa(int(s))
}
