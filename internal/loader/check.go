package loader

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
)

// Statuses of a CheckResult. Requirements are ok or FAIL; kernel features
// ok or missing; a missing tracepoint is warn; capabilities (what fdtrace
// can do here) are ok, degraded or unavailable.
const (
	StatusOK          = "ok"
	StatusWarn        = "warn"
	StatusFail        = "FAIL"
	StatusMissing     = "missing"
	StatusDegraded    = "degraded"
	StatusUnavailable = "unavailable"
)

// The capabilities `fdtrace check` reports, each from loading what the
// commands that use it load.
const (
	CapCounting   = "counting"       // per-process fd counts (top, serve, trace --errors-only)
	CapErrors     = "errors"         // EMFILE/ENFILE per syscall
	CapRefusals   = "refusals"       // refused and dropped connections
	CapRecords    = "per-fd records" // trace's open/close records
	CapFPStacks   = "fp stacks"      // leaks --stack-mode fp
	CapDWARFStack = "dwarf stacks"   // leaks (default)
	CapJITNames   = "JIT names"      // perf-map names of JIT frames
)

// CheckResult is one row of `fdtrace check`: a requirement, a kernel
// feature or a capability, and what to do when it is missing.
type CheckResult struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// CanTrace says whether anything can be traced: no requirement failed and
// counting loads.
func CanTrace(rs []CheckResult) bool {
	for _, r := range rs {
		if r.Status == StatusFail || (r.Name == CapCounting && r.Status == StatusUnavailable) {
			return false
		}
	}
	return true
}

// Check probes everything fdtrace needs on this host, mounting tracefs if
// it is not mounted, and ends by loading the programs as each capability's
// commands load them.
func Check() []CheckResult {
	var rs []CheckResult
	add := func(name, status, detail string) {
		rs = append(rs, CheckResult{name, status, detail})
	}

	if err := checkPrivileges(); err != nil {
		add("privileges", StatusFail, err.Error())
	} else {
		add("privileges", StatusOK, "has CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN")
	}

	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		add("BTF", StatusFail, "kernel has no BTF: pass --btf FILE")
	} else {
		add("BTF", StatusOK, "/sys/kernel/btf/vmlinux")
	}

	note, tracefsErr := EnsureTracefs()
	switch {
	case tracefsErr != nil:
		add("tracefs", StatusFail, tracefsErr.Error())
	case note != "":
		add("tracefs", StatusOK, "was not mounted: mounted it at "+tracefsDir)
	default:
		add("tracefs", StatusOK, "mounted")
	}
	feat := ProbeFeatures()
	spec, err := feat.programSpec()
	if err != nil {
		add("BPF object", StatusFail, fmt.Sprintf("reading BPF object: %v", err))
		return rs
	}
	// Without tracefs every tracepoint would look missing.
	if tracefsErr == nil {
		rs = append(rs, checkTracepoints(spec)...)
	}

	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		add("ring buffer map", StatusFail, withAdvice(err)+": needs Linux 5.8")
	} else {
		add("ring buffer map", StatusOK, "")
	}
	for _, f := range []feature{featTaskBTF, featTaskPtRegs, featLoop, featRdonlyCast, featMemAlloc} {
		kind := "helper "
		switch f.name {
		case featRdonlyCast.name:
			kind = "kfunc "
		case featMemAlloc.name:
			kind = "hash maps by "
		}
		if f.have(feat) {
			add(kind+f.name, StatusOK, "")
		} else {
			add(kind+f.name, StatusMissing, "needs Linux "+f.since+": "+fallbackOf(f))
		}
	}
	// Unwind tables differ in size: inner arrays of any size (Linux 5.10).
	innerMaps := features.HaveMapFlag(features.BPF_F_INNER_MAP)
	if innerMaps != nil {
		add("map of maps (BPF_F_INNER_MAP)", StatusMissing, withAdvice(innerMaps)+": needs Linux 5.10, for dwarf stacks")
	} else {
		add("map of maps (BPF_F_INNER_MAP)", StatusOK, "for dwarf stacks")
	}

	if rlimitErr := rlimit.RemoveMemlock(); rlimitErr != nil {
		add("memlock", StatusFail, "raising RLIMIT_MEMLOCK: "+withAdvice(rlimitErr))
		return rs
	}
	rs = append(rs, checkCapabilities(feat, innerMaps)...)
	return rs
}

// fallbackOf says what fdtrace does without a kernel feature.
func fallbackOf(f feature) string {
	switch f.name {
	case featRdonlyCast.name:
		return "kernel fields read with bpf_probe_read_kernel instead (slower)"
	case featMemAlloc.name:
		return fmt.Sprintf("maps preallocated, and smaller (%d fds, %d processes)",
			preallocEntries["fds"], preallocEntries["procs"])
	}
	return "the compat programs are loaded (bounded sweeps, no stacks)"
}

// checkCapabilities loads the programs as the commands of each capability
// load them: the verifier is the only definitive check.
func checkCapabilities(feat Features, innerMaps error) []CheckResult {
	var rs []CheckResult
	add := func(name, status, detail string) {
		rs = append(rs, CheckResult{name, status, detail})
	}
	// degraded: works with limits; note: works fully, worth knowing.
	status := func(err error, degraded, note string) (string, string) {
		switch {
		case err != nil:
			return StatusUnavailable, err.Error()
		case degraded != "":
			return StatusDegraded, degraded
		}
		return StatusOK, note
	}

	compat := ""
	if feat.Compat() {
		compat = fmt.Sprintf("compat programs (no %s): fd tables swept up to %d fds and counted up to %d, the stats count any beyond",
			strings.Join(feat.missing(featTaskBTF, featTaskPtRegs, featLoop), ", "), compatSweepFDs, compatCountFDs)
	}
	var notes []string
	without := func(f feature) string {
		return "without " + f.name + " (Linux " + f.since + "): " + fallbackOf(f)
	}
	if !feat.Compat() && !feat.RdonlyCast {
		notes = append(notes, without(featRdonlyCast))
	}
	if !feat.MemAlloc {
		notes = append(notes, without(featMemAlloc))
	}
	slow := strings.Join(notes, "; ")

	st, detail := status(tryLoad(feat, Config{ErrorsOnly: true, CountOnly: true}), compat, slow)
	add(CapCounting, st, detail)
	add(CapErrors, st, detail)
	add(CapRefusals, st, detail)
	st, detail = status(tryLoad(feat, Config{}), compat, slow)
	add(CapRecords, st, detail)

	fpErr := feat.StacksError()
	if fpErr == nil {
		fpErr = tryLoad(feat, Config{CaptureStacks: true, StackMode: StackFP})
	}
	st, detail = status(fpErr, "", slow)
	add(CapFPStacks, st, detail)

	dwarfErr := feat.StacksError()
	if dwarfErr == nil && innerMaps != nil {
		dwarfErr = fmt.Errorf("needs BPF_F_INNER_MAP (Linux 5.10): %v; use --stack-mode fp", innerMaps)
	}
	if dwarfErr == nil {
		dwarfErr = tryLoad(feat, costliestConfig)
	}
	st, detail = status(dwarfErr, "", slow)
	add(CapDWARFStack, st, detail)

	switch {
	case fpErr == nil || dwarfErr == nil:
		add(CapJITNames, StatusOK, "from /tmp/perf-PID.map (node --perf-basic-prof)")
	default:
		add(CapJITNames, StatusUnavailable, "needs user stacks")
	}
	return rs
}

// costliestConfig keeps the most code for the verifier: stacks unwound by
// DWARF, batched wakeups.
var costliestConfig = Config{CaptureStacks: true, RingBufferBytes: DefaultRingBufferBytes, WakeupBytes: DefaultWakeupBytes}

// tryLoad loads every program and map as Load would for cfg, and unloads
// them.
func tryLoad(feat Features, cfg Config) error {
	if cfg.RingBufferBytes == 0 {
		cfg.RingBufferBytes = DefaultRingBufferBytes
	}
	spec, err := feat.programSpec()
	if err != nil {
		return fmt.Errorf("reading BPF object: %w", err)
	}
	if err := configure(spec, cfg, feat); err != nil {
		return err
	}
	var objs bpfobj.FdtraceObjects
	err = spec.LoadAndAssign(&objs, nil)
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		first, _, _ := strings.Cut(err.Error(), "\n")
		return fmt.Errorf("%s (run 'fdtrace trace --debug' for the verifier log)", first)
	case err != nil:
		return loadError(err, false)
	}
	return objs.Close()
}

// checkTracepoints returns one row per tracepoint a program attaches to.
func checkTracepoints(spec *ebpf.CollectionSpec) []CheckResult {
	var rs []CheckResult
	for name, p := range spec.Programs {
		if h, ok := hooks[name]; ok && h.quiet {
			continue // optional: check's "fds from io_uring" row
		}
		kind, tp, _ := strings.Cut(p.SectionName, "/")
		switch kind {
		case "tracepoint":
			group, name, _ := strings.Cut(tp, "/")
			r := CheckResult{Name: "tracepoint " + tp, Status: StatusOK}
			if !TracepointExists(group, name) {
				r.Status, r.Detail = StatusWarn, "missing in this kernel: skipped: fdtrace works without it"
			}
			rs = append(rs, r)
		case "raw_tracepoint":
			r := CheckResult{Name: "raw tracepoint sched/" + tp, Status: StatusOK}
			if !TracepointExists("sched", tp) {
				r.Status, r.Detail = StatusFail, "missing in this kernel: fdtrace cannot follow processes without it"
			}
			rs = append(rs, r)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	return rs
}

func withAdvice(err error) string {
	if errors.Is(err, unix.EPERM) {
		return err.Error() + " (run as root)"
	}
	return err.Error()
}
