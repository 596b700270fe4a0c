package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// tracer is a running tracing tool: started and ready before the workload,
// stopped with SIGINT after it.
type tracer struct {
	name   string
	cmd    *exec.Cmd
	out    string // the file it writes its records to
	errLog string // its stdout and stderr
	exited chan struct{}
	err    error // of Wait, once exited is closed
	// The floor's: the hook each of its programs is on, by program id,
	// as fdtrace's programs are named less their section (shortProgName).
	progHooks map[int]string
}

// startTracer starts argv with its output going to errLog.
func startTracer(name string, argv []string, out, errLog string) (*tracer, error) {
	logFile, err := os.Create(errLog)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	t := &tracer{name: name, out: out, errLog: errLog, exited: make(chan struct{})}
	t.cmd = exec.Command(argv[0], argv[1:]...)
	t.cmd.Stdout, t.cmd.Stderr = logFile, logFile
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		t.err = t.cmd.Wait()
		close(t.exited)
	}()
	return t, nil
}

func (t *tracer) pid() int { return t.cmd.Process.Pid }

// wrotePid is a readiness test: the tracer has written its pid to file
// (a partial write is not the pid).
func (t *tracer) wrotePid(file string) func() bool {
	want := strconv.Itoa(t.pid())
	return func() bool { return strings.TrimSpace(readFile(file)) == want }
}

// waitReady polls ready (a file the tracer writes) until it returns true,
// failing early when the tracer exits.
func (t *tracer) waitReady(ready func() bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !ready() {
		select {
		case <-t.exited:
			return fmt.Errorf("%s exited before it was ready (%v): %s", t.name, t.err, t.log())
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.kill()
			return fmt.Errorf("%s not ready after %v: %s", t.name, timeout, t.log())
		}
	}
	return nil
}

// stop sends SIGINT and waits for the tracer to write its last records
// and exit.
func (t *tracer) stop(timeout time.Duration) error {
	_ = t.cmd.Process.Signal(os.Interrupt)
	select {
	case <-t.exited:
	case <-time.After(timeout):
		t.kill()
		return fmt.Errorf("%s did not stop within %v of SIGINT: %s", t.name, timeout, t.log())
	}
	if t.err != nil {
		return fmt.Errorf("%s: %v: %s", t.name, t.err, t.log())
	}
	return nil
}

// maxRSSKiB is the tracer's peak RSS over its whole life, once it exited.
func (t *tracer) maxRSSKiB() int64 {
	if t.cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := t.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}

// cpuTime is the user and system time the tracer used, once it exited.
func (t *tracer) cpuTime() time.Duration {
	if t.cmd.ProcessState == nil {
		return 0
	}
	return t.cmd.ProcessState.UserTime() + t.cmd.ProcessState.SystemTime()
}

func (t *tracer) kill() {
	_ = t.cmd.Process.Signal(syscall.SIGKILL)
	<-t.exited
}

// log is the tail of the tracer's own messages, for errors.
func (t *tracer) log() string {
	s := strings.TrimSpace(readFile(t.errLog))
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	return s
}
