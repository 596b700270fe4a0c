package loader

import (
	"fmt"
	"os"
	"reflect"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
)

const tracefsDir = "/sys/kernel/tracing"

// EnsureTracefs mounts tracefs when it is not mounted: syscall tracepoints
// live there. It returns a note when it mounted it.
func EnsureTracefs() (string, error) {
	for _, dir := range []string{tracefsDir, "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/events"); err == nil {
			return "", nil
		}
	}
	if err := unix.Mount("nodev", tracefsDir, "tracefs", 0, ""); err != nil {
		return "", fmt.Errorf("tracefs is not mounted and mounting it failed (%v): run 'mount -t tracefs nodev %s'", err, tracefsDir)
	}
	return "mounted tracefs at " + tracefsDir, nil
}

// TracepointExists reports whether tracefs lists group/name.
func TracepointExists(group, name string) bool {
	for _, dir := range []string{tracefsDir, "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/events/" + group + "/" + name); err == nil {
			return true
		}
	}
	return false
}

// programsByName maps each program's ELF name (its `ebpf` tag) to the
// loaded program.
func programsByName(progs *bpfobj.FdtracePrograms) map[string]*ebpf.Program {
	out := map[string]*ebpf.Program{}
	v := reflect.ValueOf(progs).Elem()
	for i := range v.NumField() {
		if p, ok := v.Field(i).Interface().(*ebpf.Program); ok {
			out[v.Type().Field(i).Tag.Get("ebpf")] = p
		}
	}
	return out
}

// clock turns bpf_ktime_get_ns() (CLOCK_MONOTONIC) into wall-clock time.
type clock struct{ offset int64 }

func newClock() clock {
	var mono, real unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	unix.ClockGettime(unix.CLOCK_REALTIME, &real)
	return clock{offset: real.Nano() - mono.Nano()}
}

func (c clock) wall(ktime uint64) time.Time {
	return time.Unix(0, int64(ktime)+c.offset)
}

func monotonicNow() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
