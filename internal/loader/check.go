package loader

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Statuses of a CheckResult.
const (
	StatusOK   = "ok"
	StatusWarn = "warn"
	StatusFail = "FAIL"
)

// CheckResult is one row of `fdtrace check`: a feature fdtrace needs, and
// what to do when it is missing.
type CheckResult struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// Check probes everything fdtrace needs on this host, mounting tracefs if
// it is not mounted, and ends by loading the BPF programs.
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

	note, tracefsErr := ensureTracefs()
	switch {
	case tracefsErr != nil:
		add("tracefs", StatusFail, tracefsErr.Error())
	case note != "":
		add("tracefs", StatusOK, "was not mounted: mounted it at "+tracefsDir)
	default:
		add("tracefs", StatusOK, "mounted")
	}
	spec, err := loadFdtrace()
	if err != nil {
		add("BPF object", StatusFail, fmt.Sprintf("reading BPF object: %v", err))
		return rs
	}
	// Without tracefs every tracepoint would look missing.
	if tracefsErr == nil {
		rs = append(rs, checkTracepoints(spec)...)
	}

	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		add("ring buffer map", StatusFail, withAdvice(err))
	} else {
		add("ring buffer map", StatusOK, "")
	}
	add(checkKfunc("bpf_rdonly_cast", "6.2"))
	// Unwind tables differ in size: inner arrays of any size (Linux 5.10).
	if err := features.HaveMapFlag(features.BPF_F_INNER_MAP); err != nil {
		add("map of maps (BPF_F_INNER_MAP)", StatusFail, withAdvice(err)+": --stack-mode dwarf needs kernel >= 5.10; use --stack-mode fp")
	} else {
		add("map of maps (BPF_F_INNER_MAP)", StatusOK, "for --stack-mode dwarf")
	}

	helpers := []struct {
		fn         asm.BuiltinFunc
		name, need string
	}{
		{asm.FnLoop, "bpf_loop", "5.17"},
		{asm.FnTaskPtRegs, "bpf_task_pt_regs", "5.15"},
		{asm.FnGetCurrentTaskBtf, "bpf_get_current_task_btf", "5.11"},
	}
	for _, h := range helpers {
		err := features.HaveProgramHelper(ebpf.TracePoint, h.fn)
		switch {
		case errors.Is(err, ebpf.ErrNotSupported):
			add("helper "+h.name, StatusFail, "missing: needs kernel >= "+h.need)
		case err != nil:
			add("helper "+h.name, StatusFail, withAdvice(err))
		default:
			add("helper "+h.name, StatusOK, "")
		}
	}

	rs = append(rs, checkLoad(spec))
	return rs
}

// checkKfunc says whether the kernel's BTF has a kfunc the programs call.
func checkKfunc(name, need string) (string, string, string) {
	row := "kfunc " + name
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return row, StatusFail, withAdvice(err)
	}
	var fn *btf.Func
	if err := kernel.TypeByName(name, &fn); err != nil {
		return row, StatusFail, "missing: needs kernel >= " + need
	}
	return row, StatusOK, ""
}

// checkTracepoints returns one row per tracepoint a program attaches to.
func checkTracepoints(spec *ebpf.CollectionSpec) []CheckResult {
	var rs []CheckResult
	for _, p := range spec.Programs {
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

// costliestConfig keeps the most code for the verifier: stacks unwound by
// DWARF, batched wakeups.
var costliestConfig = Config{CaptureStacks: true, RingBufferBytes: DefaultRingBufferBytes, WakeupBytes: DefaultWakeupBytes}

// checkLoad loads every program and map into the kernel: the verifier is
// the only definitive check.
func checkLoad(spec *ebpf.CollectionSpec) CheckResult {
	fail := func(detail string) CheckResult { return CheckResult{"load", StatusFail, detail} }
	if err := rlimit.RemoveMemlock(); err != nil {
		return fail("raising RLIMIT_MEMLOCK: " + withAdvice(err))
	}
	if err := configure(spec, costliestConfig); err != nil {
		return fail(err.Error())
	}
	var objs fdtraceObjects
	err := spec.LoadAndAssign(&objs, nil)
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		first, _, _ := strings.Cut(err.Error(), "\n")
		return fail(first + " (run 'fdtrace trace --debug' for the verifier log)")
	case err != nil:
		return fail(loadError(err).Error())
	}
	objs.Close()
	return CheckResult{"load", StatusOK, fmt.Sprintf("all %d programs pass the verifier", len(spec.Programs))}
}

func withAdvice(err error) string {
	if errors.Is(err, unix.EPERM) {
		return err.Error() + " (run as root)"
	}
	return err.Error()
}
