package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// syscalls: sys_exit of each creator and of fcntl (whose F_DUPFD makes
// fds; the servers call it), sys_enter of close.
func floorTracepoints() []string {
	var tps []string
	for _, s := range append(creatorSyscalls, "fcntl") {
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

// floorHooksFile is where the floor writes which hook each of its
// programs is on, next to its ready file.
func floorHooksFile(ready string) string { return ready + ".hooks" }

// runFloor attaches an empty program (one that only returns 0) to every
// floor tracepoint and the hooks asked for, one program per hook so that
// each hook's cost can be read apart, writes which hook each program is
// on, writes its pid to ready, and holds them until SIGINT or SIGTERM.
func runFloor(ready string, hooks []string) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising RLIMIT_MEMLOCK: %w", err)
	}
	// The floor may run before any fdtrace mounted it.
	if _, err := loader.EnsureTracefs(); err != nil {
		return err
	}
	progHooks := map[ebpf.ProgramID]string{}
	var held []io.Closer
	defer func() {
		for _, c := range slices.Backward(held) {
			c.Close()
		}
	}()
	attach := func(typ ebpf.ProgramType, attachTo func(*ebpf.Program) (link.Link, string, error)) error {
		prog, err := emptyProgram(typ)
		if err != nil {
			return err
		}
		held = append(held, prog)
		l, hook, err := attachTo(prog)
		if err != nil {
			return err
		}
		held = append(held, l)
		info, err := prog.Info()
		if err != nil {
			return fmt.Errorf("reading the empty program's id: %w", err)
		}
		id, ok := info.ID()
		if !ok {
			return errors.New("reading the empty program's id: this kernel does not say")
		}
		progHooks[id] = hook
		return nil
	}
	tps := floorTracepoints()
	if slices.Contains(hooks, floorRead) {
		tps = append(tps, "sys_exit_read")
	}
	for _, tp := range tps {
		err := attach(ebpf.TracePoint, func(prog *ebpf.Program) (link.Link, string, error) {
			l, err := link.Tracepoint("syscalls", tp, prog, nil)
			if err != nil {
				return nil, "", fmt.Errorf("attaching to syscalls/%s: %w", tp, err)
			}
			return l, tp, nil
		})
		if err != nil {
			return err
		}
	}
	if slices.Contains(hooks, floorUring) {
		for _, names := range floorUringTracepoints {
			err := attach(ebpf.RawTracepoint, func(prog *ebpf.Program) (link.Link, string, error) {
				return attachRawFirst(prog, names)
			})
			if err != nil {
				return err
			}
		}
	}
	hooksJSON, err := json.Marshal(progHooks)
	if err != nil {
		return err
	}
	if err := os.WriteFile(floorHooksFile(ready), hooksJSON, 0o644); err != nil {
		return err
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
// that this kernel has, and says which.
func attachRawFirst(prog *ebpf.Program, names []string) (link.Link, string, error) {
	var err error
	for _, name := range names {
		var l link.Link
		if l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog}); err == nil {
			return l, name, nil
		}
	}
	return nil, "", fmt.Errorf("attaching to raw tracepoint %s: %w", names[0], err)
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
	if err := t.waitReady(t.wrotePid(ready), time.Minute); err != nil {
		return t, err
	}
	if err := json.Unmarshal([]byte(readFile(floorHooksFile(ready))), &t.progHooks); err != nil {
		return t, fmt.Errorf("the floor's hooks (%s): %w", floorHooksFile(ready), err)
	}
	return t, nil
}
