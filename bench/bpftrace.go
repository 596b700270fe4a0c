package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

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

// The bpftrace programs compared with fdtrace, following processes named
// comm.

// bpftraceUstack is the one-liner an engineer would write to find who opens
// fds.
func bpftraceUstack(comm string) string {
	return bpftraceProbes(true, true) + ` /comm == "` + comm + `"/ { @[ustack] = count(); }`
}

// bpftraceStream is opensnoop-like streaming: one line per event, written
// to a file.
func bpftraceStream(comm string) string {
	return bpftraceProbes(true, false) +
		` /comm == "` + comm + `"/ { printf("%llu %d %d %s %s %d\n", nsecs, pid, tid, comm, probe, args->ret); }` + "\n" +
		bpftraceProbes(false, true) +
		` /comm == "` + comm + `"/ { printf("%llu %d %d %s close %d\n", nsecs, pid, tid, comm, args->fd); }`
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
