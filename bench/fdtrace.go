package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// startFdtrace runs fdtrace SUBCOMMAND -c fdbench-work with args and waits
// for its --ready-file.
func (b *bench) startFdtrace(args ...string) (*tracer, error) {
	return b.startFdtraceBin(b.fdtrace, workComm, args...)
}

// startFdtraceBin is startFdtrace with an fdtrace binary, of processes
// named comm.
func (b *bench) startFdtraceBin(bin, comm string, args ...string) (*tracer, error) {
	ready := filepath.Join(b.tmp, "fdtrace.ready")
	out := filepath.Join(b.tmp, "fdtrace.out")
	os.Remove(ready)
	os.Remove(out) // fdtrace appends to it
	argv := append([]string{bin}, args...)
	argv = append(argv, "-c", comm, "-o", out, "--ready-file", ready)
	t, err := startTracer("fdtrace "+args[0], argv, out, filepath.Join(b.tmp, "fdtrace.log"))
	if err != nil {
		return nil, err
	}
	return t, t.waitReady(t.wrotePid(ready), time.Minute)
}

// fdtraceStats is the part of fdtrace's final stats record the suite reads.
type fdtraceStats struct {
	Type            string `json:"type"`
	LostEvents      int64  `json:"lost_events"`
	EventsDelivered int64  `json:"events_delivered"`
	FDsMapFull      int64  `json:"fds_map_full"`
	StacksFull      int64  `json:"stacks_full"`
}

// countRecords counts the open and close records of an fdtrace output
// file, a line each.
func countRecords(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rd := bufio.NewReaderSize(f, 1<<20)
	var n int64
	for start := true; ; {
		line, err := rd.ReadSlice('\n')
		if start && (bytes.HasPrefix(line, []byte(`{"type":"open",`)) || bytes.HasPrefix(line, []byte(`{"type":"close",`))) {
			n++
		}
		start = err != bufio.ErrBufferFull // the rest of a long line follows
		switch {
		case err == io.EOF:
			return n, nil
		case err != nil && err != bufio.ErrBufferFull:
			return n, err
		}
	}
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
