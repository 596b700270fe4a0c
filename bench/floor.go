package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/fdtrace/fdtrace/internal/loader"
)

// floorCommand is the hidden subcommand that holds the empty programs:
// `bench floor READY-FILE [HOOK...]`. The bench runs itself with it, so
// that the floor is a tracer process like the others.
const floorCommand = "floor"

// The hooks fdtrace adds for some workloads, and so does their floor:
// read(2)'s exit (attached once a traced process has a fanotify group),
// and io_uring's raw tracepoints (Linux 6.1 on; the submit one is named
// io_uring_submit_sqe on 6.1).
const (
	floorRead  = "read"
	floorUring = "uring"
)

var floorUringTracepoints = [][]string{{"io_uring_submit_req", "io_uring_submit_sqe"}, {"io_uring_complete"}}

// floorTracepoints are the tracepoints fdtrace hooks for the workloads'
// syscalls: sys_exit of each creator, sys_enter of close.
func floorTracepoints() []string {
	var tps []string
	for _, s := range creatorSyscalls {
		tps = append(tps, "sys_exit_"+s)
	}
	return append(tps, "sys_enter_close")
}

// emptyProgram loads a program of type typ that only returns 0.
func emptyProgram(typ ebpf.ProgramType) (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "fdbench_floor",
		Type:    typ,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("loading the empty program: %w", err)
	}
	return prog, nil
}

// runFloor attaches a program that only returns 0 to every floor
// tracepoint and the hooks asked for, writes its pid to ready, and holds
// them until SIGINT or SIGTERM.
func runFloor(ready string, hooks []string) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising RLIMIT_MEMLOCK: %w", err)
	}
	// The floor may run before any fdtrace mounted it.
	if _, err := loader.EnsureTracefs(); err != nil {
		return err
	}
	prog, err := emptyProgram(ebpf.TracePoint)
	if err != nil {
		return err
	}
	defer prog.Close()
	tps := floorTracepoints()
	if slices.Contains(hooks, floorRead) {
		tps = append(tps, "sys_exit_read")
	}
	for _, tp := range tps {
		l, err := link.Tracepoint("syscalls", tp, prog, nil)
		if err != nil {
			return fmt.Errorf("attaching to syscalls/%s: %w", tp, err)
		}
		defer l.Close()
	}
	if slices.Contains(hooks, floorUring) {
		raw, err := emptyProgram(ebpf.RawTracepoint)
		if err != nil {
			return err
		}
		defer raw.Close()
		for _, names := range floorUringTracepoints {
			l, err := attachRawFirst(raw, names)
			if err != nil {
				return err
			}
			defer l.Close()
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	if err := os.WriteFile(ready, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return err
	}
	<-stop
	return nil
}

// attachRawFirst attaches prog to the first of the raw tracepoints names
// that this kernel has.
func attachRawFirst(prog *ebpf.Program, names []string) (link.Link, error) {
	var err error
	for _, name := range names {
		var l link.Link
		if l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog}); err == nil {
			return l, nil
		}
	}
	return nil, fmt.Errorf("attaching to raw tracepoint %s: %w", names[0], err)
}

// startFloor runs `bench floor` with the hooks asked for, and waits until
// its programs are attached.
func (b *bench) startFloor(hooks ...string) (*tracer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the bench binary to run the floor: %w", err)
	}
	ready := filepath.Join(b.tmp, "floor.ready")
	os.Remove(ready)
	argv := append([]string{self, floorCommand, ready}, hooks...)
	t, err := startTracer("empty-program floor", argv, "", filepath.Join(b.tmp, "floor.log"))
	if err != nil {
		return nil, err
	}
	return t, t.waitReady(t.wrotePid(ready), time.Minute)
}
