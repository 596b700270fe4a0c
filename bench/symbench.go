package main

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// symResult is the symbolizer's throughput on the workload's stacks.
type symResult struct {
	coldPerSec, warmPerSec float64 // stacks/s
	framesPerStack         float64
	check                  string // what the first stack resolved to
	err                    error
}

// measureSymbolize symbolizes stacks of a live workload process: cold (a
// new Symbolizer for every stack: maps, ELF and DWARF parsed again) and
// warm (one Symbolizer, its caches filled), each for about d.
func (b *bench) measureSymbolize(d time.Duration) (r symResult) {
	cmd := exec.Command(b.work, "addrs")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		r.err = err
		return r
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	addrs, err := readAddrs(stdout)
	if err != nil {
		r.err = err
		return r
	}
	stacks := workloadStacks(addrs)
	pid := cmd.Process.Pid
	opts := symbolize.Options{}

	frames := symbolize.New(opts).Symbolize(pid, stacks[0])
	r.framesPerStack = float64(len(frames))
	r.check = describeFrames(frames)
	r.coldPerSec = stacksPerSec(d, func(i int) { symbolize.New(opts).Symbolize(pid, stacks[i%len(stacks)]) })
	warm := symbolize.New(opts)
	warm.Symbolize(pid, stacks[0])
	r.warmPerSec = stacksPerSec(d, func(i int) { warm.Symbolize(pid, stacks[i%len(stacks)]) })
	return r
}

// readAddrs reads the "name=0xADDR" lines of `fdbench-work addrs`.
func readAddrs(r io.Reader) (map[string]uint64, error) {
	addrs := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for len(addrs) < 10 && sc.Scan() {
		name, hex, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		a, err := strconv.ParseUint(strings.TrimPrefix(hex, "0x"), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("workload address %q: %w", sc.Text(), err)
		}
		addrs[name] = a
	}
	if len(addrs) < 10 {
		return nil, fmt.Errorf("workload printed %d addresses, want 10", len(addrs))
	}
	return addrs, nil
}

// workloadStacks builds stacks shaped like those fdtrace captures: a libc
// wrapper, the loop body, run_loop, main. Offsets vary so that the stacks
// differ; return addresses (all but the first) point inside the caller.
func workloadStacks(a map[string]uint64) [][]uint64 {
	pairs := [][2]string{
		{"open", "open_close"}, {"socket", "socket_close"}, {"pipe2", "pipe_close"},
		{"socket", "accept_close"}, {"open", "mixed_one"},
	}
	var stacks [][]uint64
	for off := uint64(1); off <= 12; off++ {
		for _, p := range pairs {
			stacks = append(stacks, []uint64{a[p[0]] + off, a[p[1]] + off, a["run_loop"] + 4*off, a["main"] + 4*off})
		}
	}
	return stacks
}

func describeFrames(frames []symbolize.Frame) string {
	var names []string
	for _, f := range frames {
		name := f.Func
		if name == "" {
			name = fmt.Sprintf("%#x", f.Addr)
		}
		if f.Line > 0 {
			name += fmt.Sprintf(" (line %d)", f.Line)
		}
		names = append(names, name)
	}
	return strings.Join(names, " ← ")
}

// stacksPerSec calls f(0), f(1), ... for about d and returns calls per second.
func stacksPerSec(d time.Duration, f func(int)) float64 {
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		f(n)
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}
