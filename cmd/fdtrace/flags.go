package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/top"
)

// targetFlags select the processes a command traces and say how its
// programs load: the flags of trace, leaks, top and serve.
type targetFlags struct {
	pids    []int
	comm    string
	cgroup  string // matched in user space, by the commands that register it
	btfPath string
	debug   bool
}

// withCgroup, given to targetFlags.addFlags, registers --cgroup too.
const withCgroup = true

// addFlags registers the target flags; verb says what the command does
// with the processes ("trace", "show", ...).
func (t *targetFlags) addFlags(f *pflag.FlagSet, verb string, cgroup bool) {
	f.IntSliceVarP(&t.pids, "pid", "p", nil, verb+" this process, not its children (repeatable, or comma-separated)")
	f.StringVarP(&t.comm, "comm", "c", "", verb+" processes with this name (as in /proc/PID/comm)")
	if cgroup {
		f.StringVar(&t.cgroup, "cgroup", "", verb+" processes whose cgroup starts with `PATH` (as in /proc/PID/cgroup, or under /sys/fs/cgroup)")
	}
	f.StringVar(&t.btfPath, "btf", "", "kernel BTF `FILE`, for kernels without /sys/kernel/btf/vmlinux")
	f.BoolVar(&t.debug, "debug", false, "print the full BPF verifier log on load errors")
}

// maxComm is the most of a process name the kernel keeps.
const maxComm = 15

func (t targetFlags) validate() error {
	if err := checkPIDs(t.pids); err != nil {
		return err
	}
	if len(t.comm) > maxComm {
		return usageError{fmt.Errorf("--comm %q: the kernel keeps at most %d bytes of a process name", t.comm, maxComm)}
	}
	return nil
}

// checkPIDs refuses what cannot be a process id.
func checkPIDs(pids []int) error {
	for _, pid := range pids {
		if pid <= 0 {
			return usageError{fmt.Errorf("--pid %d: not a process id", pid)}
		}
	}
	return nil
}

// config fills in the target fields of cfg.
func (t targetFlags) config(cfg loader.Config) loader.Config {
	cfg.PIDs, cfg.Comm, cfg.BTFPath, cfg.VerifierLog = t.pids, t.comm, t.btfPath, t.debug
	return cfg
}

// describe names the processes, as fdtrace's notices and top's header say.
func (t targetFlags) describe() string {
	var s string
	switch {
	case len(t.pids) > 0:
		p := make([]string, len(t.pids))
		for i, pid := range t.pids {
			p[i] = strconv.Itoa(pid)
		}
		s = "pid " + strings.Join(p, ", ")
		if t.comm != "" {
			s += fmt.Sprintf(" named %q", t.comm)
		}
	case t.comm != "":
		s = fmt.Sprintf("processes named %q", t.comm)
	default:
		s = "all processes"
	}
	if t.cgroup != "" {
		s += " in cgroup " + procfs.CgroupPrefix(t.cgroup)
	}
	return s
}

// cgroupMatcher tells whether a process is in --cgroup; nil without it.
func (t targetFlags) cgroupMatcher() func(pid int, comm string) bool {
	if t.cgroup == "" {
		return nil
	}
	return top.CgroupMatcher(t.cgroup)
}

// seeds counts once, from /proc, the open fds of the selected processes
// that match (nil matches all), fdtrace aside: the counts to show until the
// kernel sees them act.
func (t targetFlags) seeds(match func(pid int, comm string) bool) []top.Sample {
	pids := t.pids
	if len(pids) == 0 {
		pids, _ = procfs.PIDs()
	}
	self := os.Getpid()
	keep := func(pid int, comm string) bool {
		return pid != self && (t.comm == "" || comm == t.comm) && (match == nil || match(pid, comm))
	}
	return top.SeedSamples(pids, keep, len(t.pids) > 0)
}

// runFlags say how long a session lasts and where it says it has started.
type runFlags struct {
	duration  time.Duration
	readyFile string
}

// addFlags registers --duration and --ready-file; ready says when the
// ready file is written.
func (r *runFlags) addFlags(f *pflag.FlagSet, ready string) {
	f.DurationVarP(&r.duration, "duration", "d", 0, "stop after this long (e.g. 30s, 5m); default: until Ctrl-C or SIGTERM")
	f.StringVar(&r.readyFile, "ready-file", "", "write fdtrace's pid to `FILE` "+ready)
}

func (r runFlags) validate() error {
	if r.duration < 0 {
		return usageError{errors.New("--duration must be positive")}
	}
	return nil
}

// commonOptions are the flags of the commands that trace either a target
// or a command they start (trace, leaks).
type commonOptions struct {
	target     targetFlags
	run        runFlags
	command    []string
	outPath    string
	ringbufMiB int
	ringbufSet bool // --ringbuf-size given: it overrides a command's own size
}

func (o *commonOptions) addFlags(f *pflag.FlagSet) {
	o.target.addFlags(f, "trace", !withCgroup)
	f.StringVarP(&o.outPath, "output", "o", "", "write to `FILE` instead of stdout")
	o.run.addFlags(f, "once tracing has started")
	f.IntVar(&o.ringbufMiB, "ringbuf-size", loader.DefaultRingBufferBytes>>20, "event ring buffer size in `MiB` (power of two)")
}

// takeArgs accepts only a command after --, and notes which flags were given.
func (o *commonOptions) takeArgs(cmd *cobra.Command, args []string) error {
	o.ringbufSet = cmd.Flags().Changed("ringbuf-size")
	if dash := cmd.ArgsLenAtDash(); dash >= 0 {
		if dash > 0 {
			return usageError{fmt.Errorf("unexpected argument %q before --", args[0])}
		}
		o.command = args
	} else if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q (put a command after --)", args[0])}
	}
	return nil
}

// spec is the session the flags ask for, in the tracer mode cfg. cfg's
// ring buffer size stands unless --ringbuf-size was given.
func (o commonOptions) spec(cfg loader.Config, notice string) (sessionSpec, error) {
	if o.ringbufMiB <= 0 || o.ringbufMiB&(o.ringbufMiB-1) != 0 {
		return sessionSpec{}, usageError{fmt.Errorf("--ringbuf-size %d: must be a power of two", o.ringbufMiB)}
	}
	if cfg.RingBufferBytes == 0 || o.ringbufSet {
		cfg.RingBufferBytes = o.ringbufMiB << 20
	}
	return sessionSpec{target: o.target, config: cfg, run: o.run, command: o.command, outPath: o.outPath, notice: notice}, nil
}

func (o commonOptions) hostWide() bool {
	return len(o.target.pids) == 0 && o.target.comm == "" && len(o.command) == 0
}
