package main

import (
	"fmt"
	"strings"
	"time"
)

// mode is one way of running a workload: untraced, or under a tracer.
type mode struct {
	key   string // short name, used in logs and as the map key
	label string // column header
	needs string // tool it needs ("bpftrace", "strace"), or ""
	// scale divides the iterations: strace is 10-100× slower, and ns/op
	// does not depend on the count.
	scale int64
	// start attaches a tracer of the workload's processes before the run
	// (nil: nothing to attach).
	start func(b *bench, w workload) (*tracer, error)
	// wrap runs the workload under a tool (nil: run it directly).
	wrap func(b *bench, argv []string) []string
	// collect reads the tracer's counters once it has stopped.
	collect func(t *tracer, r *runResult) error
	// streams: fdtrace writing every event (runs long enough to overrun
	// its ring buffer, records counted against the workload's).
	streams bool
}

// The modes, in the order of the tables.
var modes = []mode{
	{key: "baseline", label: "baseline"},
	{key: "floor", label: "floor (empty program)",
		start: func(b *bench, w workload) (*tracer, error) { return b.startFloor(w.floorHooks...) }},
	{key: "errors", label: "fdtrace trace --errors-only",
		start: func(b *bench, w workload) (*tracer, error) {
			return b.startFdtraceBin(b.fdtrace, w.comm(), "trace", "--errors-only")
		},
		collect: collectFdtraceStats},
	{key: "leaks", label: "fdtrace leaks",
		start: func(b *bench, w workload) (*tracer, error) {
			return b.startFdtraceBin(b.fdtrace, w.comm(), "leaks", "--json")
		}},
	{key: "stream", label: "fdtrace trace (stream)", streams: true,
		start:   func(b *bench, w workload) (*tracer, error) { return b.startFdtraceBin(b.fdtrace, w.comm(), "trace") },
		collect: collectFdtraceStats},
	{key: "stream-before", label: "fdtrace trace (stream), -before", needs: "before", streams: true,
		start: func(b *bench, w workload) (*tracer, error) {
			return b.startFdtraceBin(b.tools["before"].path, w.comm(), "trace")
		},
		collect: collectFdtraceStats},
	{key: "bt-ustack", label: "bpftrace `@[ustack] = count()`", needs: "bpftrace",
		start: func(b *bench, w workload) (*tracer, error) {
			return b.startBpftrace("bpftrace ustack", bpftraceUstack(w.comm()))
		}},
	{key: "bt-stream", label: "bpftrace printf (stream)", needs: "bpftrace",
		start: func(b *bench, w workload) (*tracer, error) {
			return b.startBpftrace("bpftrace stream", bpftraceStream(w.comm()))
		},
		collect: collectBpftraceLost},
	{key: "strace", label: "strace -f", needs: "strace", scale: 20,
		wrap: func(b *bench, argv []string) []string {
			return append([]string{b.tools["strace"].path, "-f", "-e", "trace=" + straceSyscalls, "-o", "/dev/null"}, argv...)
		}},
}

func modeByKey(key string) mode {
	for _, m := range modes {
		if m.key == key {
			return m
		}
	}
	panic("no mode " + key)
}

// runResult is one run of a workload in one mode.
type runResult struct {
	workResult
	delivered, lost int64 // events, where the tracer reports them
	// records: the open and close records fdtrace wrote (-1: not read).
	records     int64
	hwmKiB      int64 // the tracer's peak RSS, just before it stopped
	tracerTicks int64 // the tracer's CPU time while the workload ran, in clock ticks
	// tracerCPU: the tracer's CPU time from the workload's start until it
	// exited, the records it wrote after the workload ended included.
	tracerCPU time.Duration
}

// startError is a tracer that failed to start: the suite does not try
// that mode again.
type startError struct{ error }

func (e startError) Unwrap() error { return e.error }

func collectFdtraceStats(t *tracer, r *runResult) error {
	st, err := readFdtraceStats(t.out)
	if err != nil {
		return err
	}
	r.delivered, r.lost = st.EventsDelivered, st.LostEvents
	r.records, err = countRecords(t.out)
	return err
}

func collectBpftraceLost(t *tracer, r *runResult) error {
	var err error
	r.lost, err = bpftraceLost(t.out)
	return err
}

// unavailable says why m cannot run w here, or "".
func (b *bench) unavailable(m mode, w workload) string {
	if w.server != nil && m.wrap != nil {
		return "not measured: it wraps the workload's command, and " + w.arg + " runs already"
	}
	if w.server != nil && !w.server.ok() {
		return w.server.note
	}
	if w.unseen != "" && (m.needs == "bpftrace" || m.needs == "strace") {
		return "not measured: " + w.unseen
	}
	if m.needs != "" && !b.tools[m.needs].ok() {
		return "not measured: " + strings.TrimPrefix(b.tools[m.needs].note, "not measured: ")
	}
	if b.broken[m.key] != nil {
		return "not measured: its tracer did not start"
	}
	return ""
}

// runOnce runs n ops of w in mode m, at rate ops/s (0: flat out).
// beforeStop, if not nil, sees the tracer after the workload, still running.
func (b *bench) runOnce(m mode, w workload, n int64, rate float64, beforeStop func(*tracer)) (runResult, error) {
	var t *tracer
	if m.start != nil {
		var err error
		if t, err = m.start(b, w); err != nil {
			return runResult{}, startError{err}
		}
	}
	if m.scale > 1 {
		n = max(n/m.scale, 100)
	}
	argv := b.workArgv(w, n, rate)
	if m.wrap != nil {
		argv = m.wrap(b, argv)
	}
	var ticks int64
	if t != nil {
		ticks = cpuTicks(t.pid())
	}
	var wr workResult
	var err error
	if w.server != nil {
		wr, err = w.server.load(n)
	} else {
		wr, err = runWorkload(argv)
	}
	r := runResult{workResult: wr, delivered: -1, lost: -1, records: -1}
	if t == nil {
		return r, err
	}
	r.tracerTicks = cpuTicks(t.pid()) - ticks
	r.hwmKiB = procStatusKiB(readFile(fmt.Sprintf("/proc/%d/status", t.pid())), "VmHWM")
	if beforeStop != nil {
		beforeStop(t)
	}
	if serr := t.stop(2 * time.Minute); err == nil {
		err = serr
	}
	r.tracerCPU = t.cpuTime() - time.Duration(ticks)*time.Second/clockTicksPerSec
	if err == nil && m.collect != nil {
		err = m.collect(t, &r)
	}
	return r, err
}
