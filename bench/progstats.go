package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// progStat is the kernel's run count and time of one BPF program.
type progStat struct {
	ID        int     `json:"id"`
	Name      string  `json:"name"`
	RunTimeNs int64   `json:"run_time_ns"`
	RunCnt    int64   `json:"run_cnt"`
	Pids      []owner `json:"pids"` // as bpftool finds them
	// Of a median over rounds (medianProgCosts): the lowest and highest
	// ns/run of the rounds; 0 for one run.
	minNs, maxNs float64
}

func (p progStat) nsPerRun() float64 { return float64(p.RunTimeNs) / float64(p.RunCnt) }

// sortByTime puts the programs that took the most time first.
func sortByTime(progs []progStat) {
	slices.SortFunc(progs, func(a, b progStat) int { return cmp.Compare(b.RunTimeNs, a.RunTimeNs) })
}

type owner struct {
	Pid int `json:"pid"`
}

// ownedBy is true when pid holds the program (by fd, or as bpftool says).
func (p progStat) ownedBy(pid int, ids map[int]bool) bool {
	if ids[p.ID] {
		return true
	}
	return slices.Contains(p.Pids, owner{pid})
}

// progCosts is where one tracer's in-kernel time goes during a workload run.
type progCosts struct {
	mode  mode
	ops   int64
	progs []progStat // those that ran, most expensive first
	err   error
}

// hot are the programs that ran for at least 1% of the workload's ops.
func (p progCosts) hot() []progStat {
	var hot []progStat
	for _, s := range p.progs {
		if s.RunCnt*100 >= p.ops {
			hot = append(hot, s)
		}
	}
	return hot
}

func (p progCosts) totalNs() int64 {
	var t int64
	for _, s := range p.progs {
		t += s.RunTimeNs
	}
	return t
}

// bpfModes are the modes whose tracer is BPF programs.
func bpfModes() []mode {
	var ms []mode
	for _, m := range modes {
		if m.start != nil {
			ms = append(ms, m)
		}
	}
	return ms
}

// measureProgCosts runs w once in each of the modes with
// kernel.bpf_stats_enabled set, and reads each program's run count and time
// before the tracer stops. The statistics cost time of their own, so these
// runs are not timed ones.
func (b *bench) measureProgCosts(w workload, n int64, modes []mode) ([]progCosts, error) {
	restore, err := enableBPFStats(b.tools["bpftool"])
	if err != nil {
		return nil, err
	}
	defer restore()
	var all []progCosts
	for _, m := range modes {
		if why := b.unavailable(m, w); why != "" {
			all = append(all, progCosts{mode: m, err: errors.New(why)})
			continue
		}
		pc := progCosts{mode: m}
		r, err := b.runOnce(m, w, n, 0, func(t *tracer) {
			pc.progs, pc.err = b.progStats(t)
		})
		pc.ops = r.ops
		if pc.err == nil {
			pc.err = err
		}
		all = append(all, pc)
	}
	return all, nil
}

// progRounds is how many runs per workload errors-only's programs and the
// empty one are measured over: one run's ns/run moves by a tenth, and
// each load puts the programs elsewhere in the JIT's memory (±15%).
const progRounds = 5

// modesOf is the costs of those modes, in their order.
func modesOf(all []progCosts, modes []mode) []progCosts {
	var out []progCosts
	for _, m := range modes {
		for _, pc := range all {
			if pc.mode.key == m.key {
				out = append(out, pc)
			}
		}
	}
	return out
}

// medianProgCosts is, for each mode of the rounds (each measureProgCosts's
// result, alike in their modes), each program's median ns/run and run
// count over the rounds, with the lowest and highest ns/run. A mode that
// failed in a round keeps that round's error.
func medianProgCosts(rounds [][]progCosts) []progCosts {
	if len(rounds) == 0 {
		return nil
	}
	var out []progCosts
	for j, first := range rounds[0] {
		pc := progCosts{mode: first.mode, ops: first.ops}
		byName := map[string][]progStat{}
		var names []string
		for _, r := range rounds {
			if j >= len(r) || r[j].mode.key != first.mode.key {
				pc.err = fmt.Errorf("not measured: the rounds measured different modes")
				break
			}
			if r[j].err != nil {
				pc.err = r[j].err
				break
			}
			for _, p := range r[j].progs {
				if _, seen := byName[p.Name]; !seen {
					names = append(names, p.Name)
				}
				byName[p.Name] = append(byName[p.Name], p)
			}
		}
		if pc.err == nil {
			for _, name := range names {
				pc.progs = append(pc.progs, medianProgStat(byName[name]))
			}
			sortByTime(pc.progs)
		}
		out = append(out, pc)
	}
	return out
}

// medianProgStat is one program's median over its runs.
func medianProgStat(runs []progStat) progStat {
	ns, counts := make([]float64, len(runs)), make([]float64, len(runs))
	for i, p := range runs {
		ns[i], counts[i] = p.nsPerRun(), float64(p.RunCnt)
	}
	m := runs[0]
	m.RunCnt = int64(median(counts))
	m.RunTimeNs = int64(median(ns) * float64(m.RunCnt))
	if len(runs) > 1 {
		m.minNs, m.maxNs = slices.Min(ns), slices.Max(ns)
	}
	return m
}

// enableBPFStats sets kernel.bpf_stats_enabled; restore sets it back to
// what it was. Reading the statistics needs bpftool.
func enableBPFStats(bpftool tool) (restore func(), err error) {
	if !bpftool.ok() {
		return func() {}, errors.New(bpftool.note)
	}
	const knob = "/proc/sys/kernel/bpf_stats_enabled"
	prev := strings.TrimSpace(readFile(knob))
	if err := os.WriteFile(knob, []byte("1"), 0o644); err != nil {
		return func() {}, fmt.Errorf("enabling BPF run statistics: %w", err)
	}
	return func() { _ = os.WriteFile(knob, []byte(prev), 0o644) }, nil
}

// progStats lists the programs t holds fds of that ran at least once,
// the floor's named after their hooks.
func (b *bench) progStats(t *tracer) ([]progStat, error) {
	pid := t.pid()
	ids := progIDs(pid)
	out, err := exec.Command(b.tools["bpftool"].path, "prog", "show", "-j").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	var all []progStat
	if err := json.Unmarshal(out, &all); err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	var ran []progStat
	for _, p := range all {
		if p.ownedBy(pid, ids) && p.RunCnt > 0 {
			if hook, ok := t.progHooks[p.ID]; ok {
				p.Name = hook
			}
			ran = append(ran, p)
		}
	}
	sortByTime(ran)
	return ran, nil
}

// progIDs are the ids of the BPF programs pid holds fds of.
func progIDs(pid int) map[int]bool {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, _ := os.ReadDir(dir)
	ids := map[int]bool{}
	for _, e := range ents {
		for _, l := range strings.Split(readFile(filepath.Join(dir, e.Name())), "\n") {
			if v, ok := strings.CutPrefix(l, "prog_id:"); ok {
				id, _ := strconv.Atoi(strings.TrimSpace(v))
				ids[id] = true
			}
		}
	}
	return ids
}
