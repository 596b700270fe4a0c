package snapshot

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
)

// MinRecommendedLimit is the least limit Budget recommends: fds are cheap,
// running out is not.
const MinRecommendedLimit = 16384

// Budget turns samples of one process's fds into its fd budget: the peak
// of each component (inbound connections, outbound connections per remote
// endpoint, files, pipes, other fds) and the baseline, the fds open
// through the whole window. A peak between two samples is missed.
type Budget struct {
	first, last time.Time
	samples     int
	peakOpen    int
	peaks       map[component]int
	portPeaks   map[int]int
	// baseline holds the fds seen in every sample so far, with the
	// component they were in; nil before the first sample.
	baseline map[baselineKey]bool
}

type component struct{ name, endpoint string }

type baselineKey struct {
	num    int
	target string
	c      component
}

func componentOf(fd FD) component {
	switch {
	case fd.Dir == Inbound:
		return component{"inbound", ""}
	case fd.Dir == Outbound:
		return component{"outbound", fd.Endpoint}
	case fd.Type == "file":
		return component{"files", ""}
	case fd.Type == "pipe":
		return component{"pipes", ""}
	}
	return component{"other", ""}
}

// Add takes one sample: the process's fds at t, with their sockets
// classified.
func (b *Budget) Add(t time.Time, fds []FD) {
	if b.samples == 0 {
		b.first = t
		b.peaks, b.portPeaks = map[component]int{}, map[int]int{}
	}
	b.last = t
	b.samples++
	b.peakOpen = max(b.peakOpen, len(fds))
	counts, ports := map[component]int{}, map[int]int{}
	present := make(map[baselineKey]bool, len(fds))
	for _, fd := range fds {
		c := componentOf(fd)
		counts[c]++
		if fd.Dir == Inbound {
			ports[fd.Port]++
		}
		present[baselineKey{fd.Num, fd.Target, c}] = true
	}
	for c, n := range counts {
		b.peaks[c] = max(b.peaks[c], n)
	}
	for p, n := range ports {
		b.portPeaks[p] = max(b.portPeaks[p], n)
	}
	if b.baseline == nil {
		b.baseline = present
		return
	}
	for k := range b.baseline {
		if !present[k] {
			delete(b.baseline, k)
		}
	}
}

// Samples is how many samples were taken.
func (b *Budget) Samples() int { return b.samples }

// PeakOpen is the most fds seen open in one sample.
func (b *Budget) PeakOpen() int { return b.peakOpen }

// Limits are a process's RLIMIT_NOFILE.
type Limits struct {
	Soft, Hard uint64
}

// Record is the budget with margin (>= 1) and the recommendation, next
// to the current limits.
func (b *Budget) Record(pid int, comm string, interval time.Duration, margin float64, lim Limits) events.Budget {
	r := events.Budget{Type: "budget", Time: events.Time(b.last), PID: pid, Comm: comm,
		DurationS: b.last.Sub(b.first).Seconds(), IntervalS: interval.Seconds(), Samples: b.samples,
		Components: []events.BudgetComponent{}, PeakOpenFDs: b.peakOpen, Margin: margin,
		CurrentLimit: lim.Soft, CurrentLimitHard: lim.Hard}
	base := map[component]int{}
	for k := range b.baseline {
		base[k.c]++
		r.Baseline++
	}
	add := func(c component) {
		bc := events.BudgetComponent{Name: c.name, Endpoint: c.endpoint, Peak: b.peaks[c], Baseline: base[c]}
		if c.name == "inbound" && len(b.portPeaks) > 0 {
			bc.Ports = b.portPeaks
		}
		r.Components = append(r.Components, bc)
		r.PeakTotal += bc.Peak
	}
	add(component{"inbound", ""})
	var out []component
	for c := range b.peaks {
		if c.name == "outbound" {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(x, y component) int {
		return cmp.Or(cmp.Compare(b.peaks[y], b.peaks[x]), cmp.Compare(x.endpoint, y.endpoint))
	})
	for _, c := range out {
		add(c)
	}
	for _, name := range []string{"files", "pipes", "other"} {
		add(component{name, ""})
	}
	r.WithMargin = WithMargin(r.PeakTotal, margin)
	r.RecommendedLimit = Recommend(r.WithMargin)
	r.Settings = Settings(r.RecommendedLimit, lim.Hard)
	return r
}

// WithMargin is ceil(total * margin), ignoring float noise (100 * 1.1 is
// 110, not 111).
func WithMargin(total int, margin float64) int {
	return int(math.Ceil(math.Round(float64(total)*margin*1e6) / 1e6))
}

// Recommend rounds n up to a power of two, at least MinRecommendedLimit.
func Recommend(n int) uint64 {
	limit := uint64(MinRecommendedLimit)
	for limit < uint64(n) {
		limit <<= 1
	}
	return limit
}

// Settings are ready-to-paste ways of giving a service the soft limit;
// the hard limit is left where it is when it is higher.
func Settings(soft, currentHard uint64) map[string]string {
	hard := max(soft, currentHard)
	if currentHard == math.MaxUint64 {
		hard = soft
	}
	shell := fmt.Sprintf("ulimit -Sn %d", soft)
	if currentHard < soft {
		shell = fmt.Sprintf("ulimit -n %d", soft) // raises the hard limit: needs root
	}
	return map[string]string{
		"systemd":        fmt.Sprintf("LimitNOFILE=%d:%d", soft, hard),
		"docker":         fmt.Sprintf("--ulimit nofile=%d:%d", soft, hard),
		"docker_compose": fmt.Sprintf("ulimits:\n  nofile:\n    soft: %d\n    hard: %d", soft, hard),
		"shell":          shell,
	}
}
