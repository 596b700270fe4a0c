package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// child is the command fdtrace starts. It runs under ptrace, for two
// things no other interface gives: setting its fd limit after the exec and
// before its first instruction, and holding it at its exit, with its memory
// map intact, while fdtrace symbolizes its stacks.
type child struct {
	pid  int
	path string
	done chan error // its exit, as an exitError (nil for status 0)
}

// spawn starts path with args. limit, if set, becomes its RLIMIT_NOFILE;
// atExit runs while it is held at exit.
func spawn(path string, args []string, limit *unix.Rlimit, atExec, atExit func(pid int)) (*child, error) {
	c := &child{path: path, done: make(chan error, 1)}
	started := make(chan error, 1)
	go func() {
		// ptrace requests must come from the thread that started the
		// tracee; the thread is not reused after this goroutine ends.
		runtime.LockOSThread()
		attr := &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2},
			Sys: &syscall.SysProcAttr{Ptrace: true}}
		pid, err := syscall.ForkExec(path, args, attr)
		if errors.Is(err, unix.EPERM) {
			// ptrace is not allowed here (seccomp, yama): run it plainly.
			fmt.Fprintf(os.Stderr, "fdtrace: ptrace is not permitted: %s runs untraced; its stacks may stay unnamed if it exits quickly\n", path)
			attr.Sys.Ptrace = false
			if pid, err = syscall.ForkExec(path, args, attr); err == nil {
				c.pid = pid
				if limit != nil {
					unix.Prlimit(pid, unix.RLIMIT_NOFILE, limit, nil)
				}
				started <- nil
				c.done <- c.wait()
				return
			}
		}
		if err != nil {
			started <- err
			return
		}
		c.pid = pid
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
			started <- fmt.Errorf("waiting for %s to start: %v", path, err)
			return
		}
		if limit != nil {
			if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, limit, nil); err != nil {
				fmt.Fprintf(os.Stderr, "fdtrace: restoring the fd limit of %s: %v\n", path, err)
			}
		}
		unix.PtraceSetOptions(pid, unix.PTRACE_O_TRACEEXIT|unix.PTRACE_O_TRACEEXEC|unix.PTRACE_O_EXITKILL)
		if atExec != nil {
			atExec(pid) // stopped after its exec: nothing of it ran yet
		}
		started <- nil
		c.done <- c.follow(atExec, atExit)
	}()
	return c, <-started
}

// follow resumes the command after each stop until it is gone.
func (c *child) follow(atExec, atExit func(pid int)) error {
	sig := 0
	for {
		if err := unix.PtraceCont(c.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("resuming %s: %w", c.path, err)
		}
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(c.pid, &ws, unix.WALL, nil)
			if err == nil {
				break
			}
			if !errors.Is(err, unix.EINTR) {
				return fmt.Errorf("waiting for %s: %w", c.path, err)
			}
		}
		switch {
		case ws.Exited():
			if ws.ExitStatus() == 0 {
				return nil
			}
			return exitError{ws.ExitStatus()}
		case ws.Signaled():
			return exitError{128 + int(ws.Signal())}
		case ws.Stopped() && ws.StopSignal() == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_EXIT:
			if atExit != nil {
				atExit(c.pid)
			}
			sig = 0
		case ws.Stopped() && ws.StopSignal() == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_EXEC:
			if atExec != nil {
				atExec(c.pid)
			}
			sig = 0
		case ws.Stopped() && ws.StopSignal() == unix.SIGTRAP && ws.TrapCause() > 0:
			sig = 0 // another ptrace event: nothing to deliver
		case ws.Stopped():
			// A signal on its way to the command: deliver it. A
			// group-stop (Ctrl-Z) is resumed at once.
			sig = int(ws.StopSignal())
			if groupStop(c.pid) {
				sig = 0
			}
		}
	}
}

// wait waits for an untraced command.
func (c *child) wait() error {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(c.pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", c.path, err)
		}
		if ws.Exited() {
			if ws.ExitStatus() == 0 {
				return nil
			}
			return exitError{ws.ExitStatus()}
		}
		if ws.Signaled() {
			return exitError{128 + int(ws.Signal())}
		}
	}
}

// groupStop tells a group-stop from a signal-delivery-stop: only the
// latter has signal info.
func groupStop(pid int) bool {
	var info [128]byte
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGINFO, uintptr(pid), 0,
		uintptr(unsafe.Pointer(&info[0])), 0, 0)
	return errno == unix.EINVAL
}

func (c *child) signal(sig os.Signal) {
	if s, ok := sig.(syscall.Signal); ok {
		unix.Kill(c.pid, s)
	}
}
