package main

import "time"

// lossResult is where streaming fdtrace starts to lose events on a workload
// that lost some at its full rate.
type lossResult struct {
	w            workload
	lostAtFull   int64
	safeEventsPS float64 // highest rate measured without loss (events/s)
	lossEventsPS float64 // lowest rate measured with loss
	err          error
}

// lossSteps is how many halvings the search makes.
const lossSteps = 5

// findLossOnset bisects the workload's paced rate, between 0 and its full
// streaming rate, for the highest rate at which no event is lost. Rates are
// those the workload reached, in fd events per second.
func (b *bench) findLossOnset(w workload, full *cell, runFor time.Duration) lossResult {
	res := lossResult{w: w, lostAtFull: full.lost()}
	stream := modeByKey("stream")
	lo, hi := 0.0, median(collect(full.runs, func(r runResult) float64 { return r.opsPerSec() }))
	res.lossEventsPS = hi * w.fdOps
	for range lossSteps {
		rate := (lo + hi) / 2
		n := max(int64(rate*runFor.Seconds()), 1000)
		r, err := b.runOnce(stream, w, n, rate, nil)
		if err != nil {
			res.err = err
			return res
		}
		reached := r.opsPerSec() * w.fdOps
		logf("loss search %-7s %10.0f events/s: %d lost", w.arg, reached, r.lost)
		if r.lost > 0 {
			hi, res.lossEventsPS = rate, reached
		} else {
			lo, res.safeEventsPS = rate, max(res.safeEventsPS, reached)
		}
	}
	return res
}
