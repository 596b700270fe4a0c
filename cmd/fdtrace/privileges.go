package main

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dropProcessReading gives up CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH in
// every thread, for good: what reads other processes' fds and memory
// maps. Modes that keep no per-fd record and take no stack (serve,
// host-wide trace --errors-only) read only world-readable /proc files
// once started, and should not hold more than they use.
func dropProcessReading() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	for _, c := range []uint{unix.CAP_SYS_PTRACE, unix.CAP_DAC_READ_SEARCH} {
		bit := uint32(1) << (c % 32)
		data[c/32].Effective &^= bit
		data[c/32].Permitted &^= bit
		data[c/32].Inheritable &^= bit
	}
	// Capabilities are a thread's: every thread of the Go runtime drops them.
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno != 0 {
		return errno
	}
	return nil
}
