package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// floorCommand is the hidden subcommand that holds the empty programs:
// `bench floor READY-FILE`. The bench runs itself with it, so that the
// floor is a tracer process like the others.
const floorCommand = "floor"

// floorTracepoints are the tracepoints fdtrace hooks for the workloads'
// syscalls: sys_exit of each creator, sys_enter of close.
func floorTracepoints() []string {
	var tps []string
	for _, s := range creatorSyscalls {
		tps = append(tps, "sys_exit_"+s)
	}
	return append(tps, "sys_enter_close")
}

// runFloor attaches a program that only returns 0 to every floor
// tracepoint, writes its pid to ready, and holds them until SIGINT or
// SIGTERM.
func runFloor(ready string) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising RLIMIT_MEMLOCK: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "fdbench_floor",
		Type:    ebpf.TracePoint,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("loading the empty program: %w", err)
	}
	defer prog.Close()
	for _, tp := range floorTracepoints() {
		l, err := link.Tracepoint("syscalls", tp, prog, nil)
		if err != nil {
			return fmt.Errorf("attaching to syscalls/%s: %w", tp, err)
		}
		defer l.Close()
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	if err := os.WriteFile(ready, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return err
	}
	<-stop
	return nil
}

// startFloor runs `bench floor` and waits until its programs are attached.
func (b *bench) startFloor() (*tracer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the bench binary to run the floor: %w", err)
	}
	ready := filepath.Join(b.tmp, "floor.ready")
	os.Remove(ready)
	t, err := startTracer("empty-program floor", []string{self, floorCommand, ready}, "", filepath.Join(b.tmp, "floor.log"))
	if err != nil {
		return nil, err
	}
	return t, t.waitReady(t.wrotePid(ready), time.Minute)
}
