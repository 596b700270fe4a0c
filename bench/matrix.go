package main

import (
	"errors"
	"maps"
	"slices"
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
			mx[w.arg][m.key] = &cell{skip: b.unavailable(m)}
		}
	}
	for round := range b.cfg.rounds {
		for _, w := range workloads {
			b.runRound(mx, w, iters[w.arg], round)
		}
	}
	return mx
}

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
		r, err := b.runOnce(m, w, n, 0, nil)
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
