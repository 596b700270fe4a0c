package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The syscalls every comparison tracer hooks: the fd creators the workloads
// call, at sys_exit, and close at sys_enter (as fdtrace does).
var (
	creatorSyscalls = []string{"openat", "socket", "pipe2", "accept4"}
	straceSyscalls  = "openat,socket,pipe2,accept4,close"
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

// startFdtrace runs fdtrace SUBCOMMAND -c fdbench-work with args and waits
// for its --ready-file.
func (b *bench) startFdtrace(args ...string) (*tracer, error) {
	ready := filepath.Join(b.tmp, "fdtrace.ready")
	out := filepath.Join(b.tmp, "fdtrace.out")
	os.Remove(ready)
	argv := append([]string{b.fdtrace}, args...)
	argv = append(argv, "-c", workComm, "-o", out, "--ready-file", ready)
	t, err := startTracer("fdtrace "+args[0], argv, out, filepath.Join(b.tmp, "fdtrace.log"))
	if err != nil {
		return nil, err
	}
	return t, t.waitReady(t.wrotePid(ready), time.Minute)
}

// startBpftrace runs a bpftrace program writing to a file (-o) and waits
// until its BEGIN probe, which bpftrace fires once every probe is attached,
// has created a ready file. (A marker printed to the -o file would do, but
// bpftrace buffers that file fully, and has no way to flush it.) system()
// needs --unsafe, which changes nothing else.
func (b *bench) startBpftrace(name, program string) (*tracer, error) {
	out := filepath.Join(b.tmp, "bpftrace.out")
	ready := filepath.Join(b.tmp, "bpftrace.ready")
	os.Remove(out)
	os.Remove(ready)
	program += fmt.Sprintf("\nBEGIN { system(\"touch %s\"); }\n", ready)
	argv := []string{b.tools["bpftrace"].path, "--unsafe", "-o", out, "-e", program}
	t, err := startTracer(name, argv, out, filepath.Join(b.tmp, "bpftrace.log"))
	if err != nil {
		return nil, err
	}
	isReady := func() bool {
		_, err := os.Stat(ready)
		return err == nil
	}
	return t, t.waitReady(isReady, time.Minute)
}

// bpftraceProbes is the probe list: sys_exit of the creators, sys_enter_close.
func bpftraceProbes(creators bool, closes bool) string {
	var p []string
	if creators {
		for _, s := range creatorSyscalls {
			p = append(p, "tracepoint:syscalls:sys_exit_"+s)
		}
	}
	if closes {
		p = append(p, "tracepoint:syscalls:sys_enter_close")
	}
	return strings.Join(p, ",")
}

// The bpftrace programs compared with fdtrace.
var (
	// The one-liner an engineer would write to find who opens fds.
	bpftraceUstack = bpftraceProbes(true, true) +
		` /comm == "` + workComm + `"/ { @[ustack] = count(); }`
	// opensnoop-like streaming: one line per event, written to a file.
	bpftraceStream = bpftraceProbes(true, false) +
		` /comm == "` + workComm + `"/ { printf("%llu %d %d %s %s %d\n", nsecs, pid, tid, comm, probe, args->ret); }` + "\n" +
		bpftraceProbes(false, true) +
		` /comm == "` + workComm + `"/ { printf("%llu %d %d %s close %d\n", nsecs, pid, tid, comm, args->fd); }`
)

// fdtraceStats is the part of fdtrace's final stats record the suite reads.
type fdtraceStats struct {
	Type            string `json:"type"`
	LostEvents      int64  `json:"lost_events"`
	EventsDelivered int64  `json:"events_delivered"`
	FDsMapFull      int64  `json:"fds_map_full"`
	StacksFull      int64  `json:"stacks_full"`
}

// readFdtraceStats finds the stats record fdtrace writes last. Streaming
// output is large: only the tail is read.
func readFdtraceStats(path string) (fdtraceStats, error) {
	var st fdtraceStats
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	const tail = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > tail {
		f.Seek(fi.Size()-tail, 0)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, tail), tail)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"type":"stats"`) {
			if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
				return st, fmt.Errorf("stats record in %s: %w", path, err)
			}
		}
	}
	if st.Type != "stats" {
		return st, fmt.Errorf("no stats record at the end of %s", path)
	}
	return st, sc.Err()
}

// bpftraceLost sums bpftrace's "Lost N events" lines in its output file.
func bpftraceLost(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var lost int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "Lost ") {
			if f := strings.Fields(l); len(f) == 3 && f[2] == "events" {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				lost += n
			}
		}
	}
	return lost, sc.Err()
}
