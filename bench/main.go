// Command bench measures what fdtrace costs the processes it traces, side by
// side with bpftrace and strace, and writes docs/PERFORMANCE.md.
//
//	sudo make bench                      # about half an hour
//	sudo make bench BENCHFLAGS=-quick    # a smoke run
//	sudo make bench BENCHFLAGS=-stacks   # only the Stacks section, to stdout
//	sudo make bench BENCHFLAGS='-before REV'  # also stream with REV's fdtrace
//	sudo go run ./bench [-rounds N] [-iterations N] [-quick] [-stacks] [-before REV] [-o FILE]
//
// It builds fdtrace from the working tree and the C workload
// (bench/workload.c) into a temporary directory, runs every workload in
// every mode in interleaved rounds, then measures streaming loss, memory
// with many live fds, symbolization throughput, per-program BPF costs,
// and the user stacks of each --stack-mode: correctness and depth on
// testdata/workloads/leaky.c (built with and without frame pointers) and
// jsleaks.js, and the cost of a stack (bench/stacks.go). -stacks runs only
// that section and prints the report without writing it, unless -o is
// given. Missing tools (bpftrace, strace, bpftool, node) leave their rows
// "not measured"; a failed run is reported, not fatal.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// config is the command line.
type config struct {
	rounds     int
	iterations int
	quick      bool
	stacksOnly bool   // -stacks: only the Stacks section
	before     string // -before: a revision whose fdtrace streams side by side
	out        string
	flags      string // as given, for the command to reproduce the report
}

func main() {
	var err error
	if len(os.Args) >= 3 && os.Args[1] == floorCommand {
		err = runFloor(os.Args[2], os.Args[3:]) // the bench running itself as the floor
	} else {
		err = run()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// bench holds what every measurement needs.
type bench struct {
	cfg     config
	tmp     string
	fdtrace string // binary built from the working tree
	work    string // the workload binary, named fdbench-work
	tools   map[string]tool
	broken  map[string]error // mode key → why its tracer did not start
}

func parseFlags() config {
	var c config
	flag.IntVar(&c.rounds, "rounds", 5, "interleaved rounds; the tables show medians")
	flag.IntVar(&c.iterations, "iterations", 0, "operations per workload run (default: about 0.4 s untraced, per workload)")
	flag.BoolVar(&c.quick, "quick", false, "smoke run: 1 round, short runs, fewer fds")
	flag.BoolVar(&c.stacksOnly, "stacks", false, "measure only the Stacks section (fp and dwarf stack modes); print the report, write it only with -o")
	flag.StringVar(&c.before, "before", "", "also stream with the fdtrace of this git `REVISION`, side by side (its reader's CPU per event next to this one's)")
	flag.StringVar(&c.out, "o", "docs/PERFORMANCE.md", "where to write the report (a relative path is relative to the repository)")
	flag.Parse()
	c.flags = strings.Join(os.Args[1:], " ")
	if c.quick && !flagSet("rounds") {
		c.rounds = 1
	}
	if c.stacksOnly && !flagSet("o") {
		c.out = "" // a partial report must not replace the whole one
	}
	return c
}

// command is how to run the bench again with the same flags.
func (c config) command() string {
	if c.flags == "" {
		return "sudo make bench"
	}
	return fmt.Sprintf("sudo make bench BENCHFLAGS='%s'", c.flags)
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func run() error {
	cfg := parseFlags()
	if cfg.rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: fdtrace and bpftrace load BPF programs (run sudo make bench)")
	}
	start := time.Now()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	b, err := setup(cfg, root)
	if err != nil {
		return err
	}
	defer os.RemoveAll(b.tmp)
	defer nginx.stop()
	res := b.measure(root)
	res.took = time.Since(start)
	// Temporary and repository paths say nothing to the reader.
	doc := strings.NewReplacer(b.tmp, "$TMPDIR", root+"/", "").Replace(res.markdown())
	fmt.Print(doc)
	out := cfg.out
	if out == "" {
		logf("done in %v; the report is not written without -o", res.took.Round(time.Second))
		return nil
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		return err
	}
	logf("wrote %s in %v", out, res.took.Round(time.Second))
	return nil
}

// setup builds the binaries and finds (or installs) the other tools.
func setup(cfg config, root string) (*bench, error) {
	tmp, err := os.MkdirTemp("", "fdbench-")
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, tmp: tmp, tools: map[string]tool{}, broken: map[string]error{}}
	logf("building fdtrace and the workload in %s", tmp)
	if b.fdtrace, err = buildFdtrace(root, tmp); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	if b.work, err = buildWorkload(tmp); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	b.tools["bpftrace"] = findTool("bpftrace", "--version")
	b.tools["strace"] = findTool("strace", "-V")
	b.tools["bpftool"] = findTool("bpftool", "version")
	b.tools["gcc"] = findTool("gcc", "--version")
	b.tools["node"] = findTool("node", "--version")
	b.tools["before"] = b.buildBefore(root, cfg.before)
	for _, t := range b.tools {
		if !t.ok() {
			logf("%s: %s; its rows say so", t.name, t.note)
		}
	}
	raiseOpenFileLimit()
	if !cfg.stacksOnly {
		nginx.start(tmp)
		if !nginx.ok() {
			logf("nginx: %s; its rows say so", nginx.note)
		}
	}
	return b, nil
}

// measure runs every measurement; failures end up in the report.
func (b *bench) measure(root string) *results {
	res := &results{machine: describeMachine(root), tools: b.tools, cfg: b.cfg}
	runTime, lossRun, symTime := 400*time.Millisecond, time.Second, time.Second
	if b.cfg.quick {
		runTime, lossRun, symTime = 50*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	}
	if b.cfg.stacksOnly {
		res.stacks = b.measureStacks(root, runTime)
		return res
	}
	iters, err := b.calibrate(runTime)
	if err != nil {
		// Without a working workload nothing else can be measured.
		logf("calibration failed: %v", err)
		iters = map[string]int64{}
	}
	res.iters = iters
	res.mx = b.runMatrix(iters)
	for _, w := range workloads {
		// (A server's load is not paced.)
		if c := res.mx.get(w, modeByKey("stream")); c.ok() && c.lost() > 0 && w.server == nil {
			res.loss = append(res.loss, b.findLossOnset(w, c, lossRun))
		}
	}
	for _, n := range b.fdCounts() {
		logf("memory with %d live fds", n)
		res.mem = append(res.mem, b.measureMemory(n))
	}
	logf("symbolization throughput")
	res.sym = b.measureSymbolize(symTime)
	logf("per-program BPF costs")
	res.progs, res.progsErr = b.measureProgCosts(workloads[0], iters[workloads[0].arg], bpfModes())
	counting := []mode{modeByKey("floor"), modeByKey("errors")}
	for _, w := range workloads {
		var rounds [][]progCosts
		if w.arg == workloads[0].arg && res.progsErr == nil {
			rounds = append(rounds, modesOf(res.progs, counting))
		}
		for len(rounds) < progRounds {
			pcs, err := b.measureProgCosts(w, iters[w.arg], counting)
			if err != nil {
				rounds = [][]progCosts{{{mode: counting[0], err: err}}}
				break
			}
			rounds = append(rounds, pcs)
		}
		res.countingProgs = append(res.countingProgs, medianProgCosts(rounds))
	}
	logf("fdtrace top's own CPU")
	res.top = b.measureTop()
	res.stacks = b.measureStacks(root, runTime)
	return res
}

// fdCounts are the live-fd counts of the memory measurement: 10k, and as
// many towards 1M as the system's file limit allows.
func (b *bench) fdCounts() []int64 {
	big := int64(targetFDs)
	if b.cfg.quick {
		big = 100_000
	}
	if room := systemFDRoom(); room < big {
		logf("fs.file-max leaves room for %d more files: measuring %d live fds, not %d", room, room, big)
		big = room
	}
	counts := []int64{0, fdsPerHolder}
	if big > fdsPerHolder {
		counts = append(counts, big)
	}
	return counts
}
