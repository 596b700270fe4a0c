package main

import (
	"errors"
	"maps"
	"math"
	"slices"
	"time"
	"unsafe"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/loader"
)

// cell holds the runs of one workload in one mode.
type cell struct {
	runs   []runResult
	ratios map[int]float64 // round → ns/op over the baseline's ns/op of that round
	err    error           // the first failure
	skip   string          // why the mode could not run here
}

// matrix is workload arg → mode key → cell.
type matrix map[string]map[string]*cell

func (mx matrix) get(w workload, m mode) *cell { return mx[w.arg][m.key] }

// fail keeps the first of the cell's errors.
func (c *cell) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

func (c *cell) ok() bool { return c.skip == "" && len(c.runs) > 0 }

func (c *cell) nsPerOp() float64 {
	return median(collect(c.runs, func(r runResult) float64 { return r.nsPerOp }))
}

func (c *cell) ratio() float64 { return median(slices.Collect(maps.Values(c.ratios))) }

// ratioSpread is the lowest and the highest of the rounds' ratios.
func (c *cell) ratioSpread() (lo, hi float64) {
	if len(c.ratios) == 0 {
		return 0, 0
	}
	r := slices.Collect(maps.Values(c.ratios))
	return slices.Min(r), slices.Max(r)
}

// nsSpread is the lowest and the highest ns/op of the runs.
func (c *cell) nsSpread() (lo, hi float64) {
	ns := collect(c.runs, func(r runResult) float64 { return r.nsPerOp })
	if len(ns) == 0 {
		return 0, 0
	}
	return slices.Min(ns), slices.Max(ns)
}

// wide says whether the rounds' ratios spread over more than wideSpread
// of their median.
func (c *cell) wide() bool {
	lo, hi := c.ratioSpread()
	return len(c.ratios) > 1 && (hi-lo) > wideSpread*c.ratio()
}

// wideSpread is the spread of ratios past which a workload gets more
// rounds (up to twice as many).
const wideSpread = 0.10

// addedBeyond is the median, over the rounds where both ran, of c's ratio
// less other's: what c adds beyond other, as a share of the baseline.
// Pairing the runs of one round keeps drift between rounds out of it.
func (c *cell) addedBeyond(other *cell) float64 {
	var diffs []float64
	for round, r := range c.ratios {
		if o, ok := other.ratios[round]; ok {
			diffs = append(diffs, r-o)
		}
	}
	return median(diffs)
}

// eventsPerSec is the median rate at which the tracer delivered events
// over the workload's run time.
func (c *cell) eventsPerSec() float64 {
	return median(collect(c.runs, func(r runResult) float64 {
		return float64(r.delivered) / r.elapsed.Seconds()
	}))
}

// tracerCPU is the median share of one core the tracer used while the
// workload ran.
func (c *cell) tracerCPU() float64 {
	return median(collect(c.runs, func(r runResult) float64 {
		return float64(r.tracerTicks) / clockTicksPerSec / r.elapsed.Seconds()
	}))
}

// cpuPerEvent is the median of the tracer's CPU time per event delivered,
// from the workload's start until the tracer exited.
func (c *cell) cpuPerEvent() time.Duration {
	return time.Duration(median(collect(c.runs, func(r runResult) float64 {
		return float64(r.tracerCPU) / float64(max(r.delivered, 1))
	})))
}

// unwritten is, over all runs, how many of the workload's fd events have
// no record in the output, or -1 when the records were not counted.
func (c *cell) unwritten() int64 {
	total := int64(-1)
	for _, r := range c.runs {
		if r.records >= 0 && r.fdEvents > 0 {
			total = max(total, 0) + r.fdEvents - r.records
		}
	}
	return total
}

func (c *cell) eventsPerOp() float64 {
	return median(collect(c.runs, func(r runResult) float64 { return float64(r.delivered) / float64(r.ops) }))
}

// lost is the events lost over all runs, or -1 when the tracer does not say.
func (c *cell) lost() int64 {
	total := int64(-1)
	for _, r := range c.runs {
		if r.lost >= 0 {
			total = max(total, 0) + r.lost
		}
	}
	return total
}

func (c *cell) peakRSSKiB() int64 {
	var peak int64
	for _, r := range c.runs {
		peak = max(peak, r.hwmKiB)
	}
	return peak
}

// runMatrix runs every workload in every mode, round-robin: in each round,
// each workload runs once per mode, the modes' order rotating between
// rounds, so that drift in the machine's speed spreads over all of them.
func (b *bench) runMatrix(iters map[string]int64) matrix {
	mx := matrix{}
	for _, w := range workloads {
		mx[w.arg] = map[string]*cell{}
		for _, m := range modes {
			mx[w.arg][m.key] = &cell{skip: b.unavailable(m, w)}
		}
	}
	for round := range b.cfg.rounds {
		for _, w := range workloads {
			b.runRound(mx, w, iters[w.arg], round)
		}
	}
	// Where the rounds disagree, more rounds tell a result from noise.
	for _, w := range workloads {
		for round := b.cfg.rounds; round < 2*b.cfg.rounds && mx.wide(w); round++ {
			logf("%s: ratios spread more than %.0f%%: round %d", w.arg, wideSpread*100, round+1)
			b.runRound(mx, w, iters[w.arg], round)
		}
	}
	return mx
}

// wide says whether some tracer's ratios on w spread wide: a target's
// tracer, or one it is compared with (strace, 10-100× slower, is neither).
func (mx matrix) wide(w workload) bool {
	for key, c := range mx[w.arg] {
		if key != "strace" && c.ok() && c.wide() {
			return true
		}
	}
	return false
}

// rounds is how many rounds w ran (its baseline's runs).
func (mx matrix) rounds(w workload) int { return len(mx[w.arg]["baseline"].runs) }

// runRound runs w once in each mode and records the ratios to this round's
// baseline.
func (b *bench) runRound(mx matrix, w workload, n int64, round int) {
	got := map[string]float64{}
	for _, m := range rotate(modes, round) {
		c := mx.get(w, m)
		if c.skip != "" {
			continue
		}
		if err := b.broken[m.key]; err != nil {
			c.fail(err)
			continue
		}
		r, err := b.runOnce(m, w, b.runLength(m, w, n), 0, nil)
		if err != nil {
			logf("round %d, %s, %s: %v", round+1, w.arg, m.key, err)
			if errors.As(err, new(startError)) {
				b.broken[m.key] = err
			}
			c.fail(err)
			continue
		}
		c.runs = append(c.runs, r)
		got[m.key] = r.nsPerOp
		logf("round %d/%d  %-7s %-10s %9.0f ns/op", round+1, b.cfg.rounds, w.arg, m.key, r.nsPerOp)
	}
	base, ok := got["baseline"]
	if !ok {
		return
	}
	for key, ns := range got {
		c := mx[w.arg][key]
		if c.ratios == nil {
			c.ratios = map[int]float64{}
		}
		c.ratios[round] = ns / base
	}
}

// runLength is how many ops of w a run in mode m makes: n, but a run that
// streams every event makes at least ten times the records the ring buffer
// holds, so that a reader that falls behind cannot hide in it.
func (b *bench) runLength(m mode, w workload, n int64) int64 {
	if !m.streams || w.server != nil || w.fdOps == 0 {
		return n // a server's run is seconds of load
	}
	return max(n, int64(math.Ceil(10*float64(ringRecords)/w.fdOps)))
}

// ringRecords is how many of its smallest records (a close) fdtrace's
// default ring buffer holds: each has an 8-byte header.
var ringRecords = loader.DefaultRingBufferBytes / (int(unsafe.Sizeof(bpfobj.FdtraceFdEvent{})) + 8)

// rotate starts the list at position i (mod its length).
func rotate[T any](s []T, i int) []T {
	i %= len(s)
	return append(slices.Clone(s[i:]), s[:i]...)
}

func collect[T any](s []T, f func(T) float64) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = f(v)
	}
	return out
}

// median of xs; the mean of the middle two for an even count; 0 if empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
