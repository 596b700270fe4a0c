package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// stackCost is one workload binary untraced and under leaks in each
// stack mode.
type stackCost struct {
	w      workload
	built  string
	bin    string
	n      int64
	cells  map[string]*cell           // mode key → runs
	ns     map[string]map[int]float64 // mode key → round → ns/op
	bpfNs  map[string]float64         // stack mode → ns per run of sys_exit_openat's program
	bpfErr error
	frames map[string][]string // stack mode → the stack at the open, function names
	shape  map[string]string   // stack mode → stackShape of it
	err    error               // calibration
}

// The cost workloads: open+close, called from the loop or 33 calls deeper.
var stackWorkloads = []workload{
	{arg: "open", label: "open+close", fdOps: 2},
	{arg: "deep", label: "open+close 33 calls deeper", fdOps: 2},
}

// deepCalls is how many deep_call frames the deep workload has at its
// open: deep_call(32) down to deep_call(0).
const deepCalls = 33

// stackCostModes are the cost runs' modes: untraced, then leaks in each
// stack mode. ready collects how long each tracer took to start.
func stackCostModes(ready map[string][]time.Duration) []mode {
	ms := []mode{{key: "baseline", label: "untraced"}}
	for _, sm := range stackModes {
		ms = append(ms, mode{key: "leaks-" + sm, label: "`leaks --stack-mode " + sm + "`",
			start: func(b *bench, _ workload) (*tracer, error) {
				start := time.Now()
				t, err := b.startFdtrace("leaks", "--json", "--stack-mode", sm)
				if err == nil {
					ready[sm] = append(ready[sm], time.Since(start))
				}
				return t, err
			}})
	}
	return ms
}

// onBinary is m running bin, after warm of untimed operations.
func onBinary(m mode, bin string, warm time.Duration) mode {
	m.wrap = func(b *bench, argv []string) []string {
		argv = slices.Clone(argv)
		argv[0] = bin
		if len(argv) == 3 {
			argv = append(argv, "0") // flat out
		}
		return append(argv, strconv.FormatInt(warm.Milliseconds(), 10))
	}
	return m
}

// measureStackCosts runs each cost workload, built each way, untraced and
// under leaks in each stack mode, in interleaved rounds; then once more
// per mode with BPF statistics, and once under trace --stacks for the
// stack itself.
func (b *bench) measureStackCosts(works map[string]string, runTime time.Duration, ready map[string][]time.Duration) []*stackCost {
	ms := stackCostModes(ready)
	var costs []*stackCost
	for _, w := range stackWorkloads {
		for _, bd := range builds {
			c := &stackCost{w: w, built: bd.label, bin: works[bd.label], cells: map[string]*cell{},
				ns: map[string]map[int]float64{}, bpfNs: map[string]float64{},
				frames: map[string][]string{}, shape: map[string]string{}}
			for _, m := range ms {
				c.cells[m.key] = &cell{}
				c.ns[m.key] = map[int]float64{}
			}
			c.n, c.err = b.stackIterations(c, runTime)
			costs = append(costs, c)
		}
	}
	for round := range b.cfg.rounds {
		for _, c := range costs {
			if c.err == nil {
				b.runStackRound(c, ms, round)
			}
		}
	}
	restore, err := enableBPFStats(b.tools["bpftool"])
	for _, c := range costs {
		switch {
		case c.err != nil:
		case err != nil:
			c.bpfErr = err
		default:
			c.bpfErr = b.stackProgCosts(c, ms[1:])
		}
	}
	restore()
	for _, c := range costs {
		for _, sm := range stackModes {
			frames, err := b.stackAt(c, sm)
			if err != nil {
				logf("stacks: %s, %s, %s: %v", c.w.arg, c.built, sm, err)
				c.shape[sm] = "error: " + oneLine(err)
				continue
			}
			c.frames[sm] = frames
			c.shape[sm] = stackShape(frames, c.deep())
		}
	}
	return costs
}

func (c *stackCost) deep() int {
	if c.w.arg == "deep" {
		return deepCalls
	}
	return 0
}

// stackIterations makes an untraced run last about target.
func (b *bench) stackIterations(c *stackCost, target time.Duration) (int64, error) {
	if b.cfg.iterations > 0 {
		return int64(b.cfg.iterations), nil
	}
	r, err := runWorkload([]string{c.bin, c.w.arg, "5000"})
	if err != nil {
		return 0, err
	}
	return roundIterations(float64(target) / r.nsPerOp), nil
}

// runStackRound runs c once in each mode, the order rotating by round.
func (b *bench) runStackRound(c *stackCost, ms []mode, round int) {
	for _, m := range rotate(ms, round) {
		cl := c.cells[m.key]
		if err := b.broken[m.key]; err != nil {
			cl.fail(err)
			continue
		}
		r, err := b.runOnce(onBinary(m, c.bin, b.cfg.warmup()), c.w, c.n, 0, nil)
		if err != nil {
			logf("round %d, stacks %s (%s), %s: %v", round+1, c.w.arg, c.built, m.key, err)
			if errors.As(err, new(startError)) {
				b.broken[m.key] = err
			}
			cl.fail(err)
			continue
		}
		cl.runs = append(cl.runs, r)
		c.ns[m.key][round] = r.nsPerOp
		logf("round %d/%d  stacks %-4s %-17s %-11s %9.0f ns/op", round+1, b.cfg.rounds, c.w.arg, c.built, m.key, r.nsPerOp)
	}
	base, ok := c.ns["baseline"][round]
	if !ok {
		return
	}
	for key, byRound := range c.ns {
		if ns, ok := byRound[round]; ok {
			if c.cells[key].ratios == nil {
				c.cells[key].ratios = map[int]float64{}
			}
			c.cells[key].ratios[round] = ns / base
		}
	}
}

// perStack is the median over the rounds of what dwarf adds to fp, in ns
// per operation: one stack each.
func (c *stackCost) perStack() (float64, bool) {
	var diffs []float64
	for round, d := range c.ns["leaks-dwarf"] {
		if f, ok := c.ns["leaks-fp"][round]; ok {
			diffs = append(diffs, d-f)
		}
	}
	return median(diffs), len(diffs) > 0
}

// openatProg is the program that takes an open's stack.
const openatProg = "tracepoint__syscalls__sys_exit_openat"

// stackProgCosts runs c once under each tracer mode with BPF statistics on
// and keeps the run time per call of the program that takes the stack.
func (b *bench) stackProgCosts(c *stackCost, tracers []mode) error {
	for _, m := range tracers {
		var progs []progStat
		var perr error
		_, err := b.runOnce(onBinary(m, c.bin, b.cfg.warmup()), c.w, c.n, 0, func(t *tracer) {
			progs, perr = b.progStats(t)
		})
		if err == nil {
			err = perr
		}
		if err != nil {
			return err
		}
		i := slices.IndexFunc(progs, func(p progStat) bool { return p.Name == openatProg })
		if i < 0 {
			return fmt.Errorf("%s did not run", openatProg)
		}
		c.bpfNs[strings.TrimPrefix(m.key, "leaks-")] = progs[i].nsPerRun()
	}
	return nil
}

// stackAt is the stack of c's open+close as fdtrace trace --stacks
// reports it in stack mode sm: the last open of a run of half a second,
// paced so that no event is lost (a warm-up flat out would lose them: the
// last open would be one of the warm-up's).
func (b *bench) stackAt(c *stackCost, sm string) ([]string, error) {
	out := filepath.Join(b.tmp, "stack-at.jsonl")
	os.Remove(out)
	argv := []string{b.fdtrace, "trace", "--stacks", "--stack-mode", sm, "-o", out, "--",
		c.bin, c.w.arg, "1000", "2000"}
	if msg, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("fdtrace trace --stacks: %v: %s", err, lastLine(string(msg)))
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var last []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Type  string            `json:"type"`
			Path  string            `json:"path"`
			Stack []symbolize.Frame `json:"stack"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Type == "open" && rec.Path == "/dev/null" && len(rec.Stack) > 0 {
			last = walked(rec.Stack)
		}
	}
	if last == nil {
		return nil, errors.New("no open of /dev/null with a stack")
	}
	return last, sc.Err()
}

// stackShape says whether funcs (innermost first, as walked) are the
// workload's whole stack at its open: the libc wrapper, open_close, deep
// calls of deep_call, run_loop and main (deep_open_close jumps to
// deep_call: it has no frame).
func stackShape(funcs []string, deep int) string {
	want := []string{"open_close"}
	for range deep {
		want = append(want, "deep_call")
	}
	want = append(want, "run_loop", "main")
	var got []string
	if len(funcs) > 1 {
		got = slices.DeleteFunc(slices.Clone(funcs[1:]), func(f string) bool { return f == "deep_open_close" })
	}
	for i, w := range want {
		switch {
		case i >= len(got):
			return "cut short"
		case got[i] == "":
			return "wrong: an unnamed frame"
		case got[i] != w:
			return "wrong: " + got[i]
		}
	}
	return "whole"
}
