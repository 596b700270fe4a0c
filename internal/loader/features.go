package loader

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
)

// Features are the kernel facilities whose absence changes what fdtrace
// loads, found by probing (never by kernel version).
type Features struct {
	Loop       bool // bpf_loop helper (5.17)
	TaskPtRegs bool // bpf_task_pt_regs helper (5.15)
	TaskBTF    bool // bpf_get_current_task_btf helper (5.11)
	RdonlyCast bool // bpf_rdonly_cast kfunc (6.2)
	// MemAlloc: hash maps allocate with bpf_mem_alloc (6.1), so tracing
	// programs may use maps that allocate at run time. Before, the kernel
	// WARNs (tainting itself) when such a program loads.
	MemAlloc bool
	// UringRequest: io_uring's tracepoints give the request itself where
	// the programs read it (io_uring_complete's second argument, 6.1;
	// io_uring_submit_sqe's first, 6.1 only). Before, the fds io_uring
	// makes are not seen.
	UringComplete, UringSubmitSqe bool
	// UringCQE: io_uring_complete's third argument is the CQE (6.13),
	// not the user data and result.
	UringCQE bool
	// PtRegsOffset: where the user registers sit in a task's kernel
	// stack (measurePtRegsOffset); 0 when unknown, or of no use (without
	// RdonlyCast).
	PtRegsOffset uint32
}

// feature is one probed facility: what it is and the first kernel with it.
type feature struct {
	name, since string
	have        func(Features) bool
}

var (
	featLoop       = feature{"bpf_loop", "5.17", func(f Features) bool { return f.Loop }}
	featTaskPtRegs = feature{"bpf_task_pt_regs", "5.15", func(f Features) bool { return f.TaskPtRegs }}
	featTaskBTF    = feature{"bpf_get_current_task_btf", "5.11", func(f Features) bool { return f.TaskBTF }}
	featRdonlyCast = feature{"bpf_rdonly_cast", "6.2", func(f Features) bool { return f.RdonlyCast }}
	featMemAlloc   = feature{"bpf_mem_alloc", "6.1", func(f Features) bool { return f.MemAlloc }}
)

// fallbackEnv forces fallbacks on a kernel that does not need them, so
// that they are tested on every kernel: "compat" loads the object for
// kernels without bpf_loop (and preallocates, as they all need),
// "no-rdonly-cast" reads without the kfunc, "prealloc" preallocates the
// maps as kernels before 6.1 need. Comma-separated.
const fallbackEnv = "FDTRACE_FORCE_FALLBACK"

// ProbeFeatures asks the kernel what it offers. Probes that cannot run
// (no privileges) count as missing.
func ProbeFeatures() Features {
	helper := func(fn asm.BuiltinFunc) bool {
		return features.HaveProgramHelper(ebpf.TracePoint, fn) == nil
	}
	f := Features{
		Loop:       helper(asm.FnLoop),
		TaskPtRegs: helper(asm.FnTaskPtRegs),
		TaskBTF:    helper(asm.FnGetCurrentTaskBtf),
		RdonlyCast: haveKernelType[*btf.Func]("bpf_rdonly_cast"),
		MemAlloc:   haveKernelType[*btf.Struct]("bpf_mem_alloc"),
	}
	f.UringComplete = tracepointArgIsPointer("io_uring_complete", 1, "")
	f.UringSubmitSqe = tracepointArgIsPointer("io_uring_submit_sqe", 0, "io_kiocb")
	f.UringCQE = tracepointArgIsPointer("io_uring_complete", 2, "io_uring_cqe")
	for _, force := range strings.Split(os.Getenv(fallbackEnv), ",") {
		switch force {
		case "compat":
			f.Loop, f.TaskPtRegs, f.TaskBTF, f.MemAlloc = false, false, false, false
		case "no-rdonly-cast":
			f.RdonlyCast = false
		case "prealloc":
			f.MemAlloc = false
		case "no-uring": // as before 6.1: io_uring's fds not seen
			f.UringComplete, f.UringSubmitSqe = false, false
		}
	}
	// The programs read the registers at the offset only by a cast.
	if f.TaskPtRegs && f.TaskBTF && f.RdonlyCast {
		f.PtRegsOffset = measurePtRegsOffset()
	}
	return f
}

// haveKernelType says whether the kernel's BTF has a type of this kind
// (*btf.Func for a kfunc, *btf.Struct) and name.
func haveKernelType[T btf.Type](name string) bool {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	var typ T
	return kernel.TypeByName(name, &typ) == nil
}

// tracepointArgIsPointer says whether argument i of the kernel's raw
// tracepoint tp is a pointer (to a struct of that name, unless it is "").
// The arguments of a tracepoint change with the kernel: its BTF says
// which there are (btf_trace_TP, whose first parameter is the probe's).
func tracepointArgIsPointer(tp string, i int, to string) bool {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	var td *btf.Typedef
	if kernel.TypeByName("btf_trace_"+tp, &td) != nil {
		return false
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return false
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(proto.Params) < i+2 {
		return false
	}
	arg, ok := btf.UnderlyingType(proto.Params[i+1].Type).(*btf.Pointer)
	if !ok {
		return false
	}
	if to == "" {
		return true
	}
	st, ok := btf.UnderlyingType(arg.Target).(*btf.Struct)
	return ok && st.Name == to
}

// Compat is whether the programs must be the compat object: bounded
// loops, CO-RE reads, user registers found by hand, no stacks.
func (f Features) Compat() bool { return !f.Loop || !f.TaskPtRegs || !f.TaskBTF }

// missing lists the absent features among fs, as "name (Linux since)".
func (f Features) missing(fs ...feature) []string {
	var out []string
	for _, x := range fs {
		if !x.have(f) {
			out = append(out, fmt.Sprintf("%s (Linux %s)", x.name, x.since))
		}
	}
	return out
}

// ErrNoStacks is returned when user stacks were asked for on a kernel
// that cannot take them.
var ErrNoStacks = errors.New("user stacks are not available on this kernel")

// StacksError says why stacks cannot be taken here, or nil.
func (f Features) StacksError() error {
	if m := f.missing(featLoop, featTaskPtRegs); len(m) > 0 {
		return fmt.Errorf("%w: they need %s; trace, top and serve work without them", ErrNoStacks, strings.Join(m, " and "))
	}
	return nil
}

// programSpec is the object for these features.
func (f Features) programSpec() (*ebpf.CollectionSpec, error) {
	if f.Compat() {
		return bpfobj.LoadFdtraceCompat()
	}
	return bpfobj.LoadFdtrace()
}

// The compat object's loop bounds (enum compat_bounds).
const (
	compatSweepFDs = bpfobj.FdtraceCompatBoundsCOMPAT_SWEEP_WORDS * 64
	compatCountFDs = bpfobj.FdtraceCompatBoundsCOMPAT_COUNT_WORDS * 64
)
