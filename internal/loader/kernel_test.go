package loader

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// load loads and attaches the programs or fails: on a root machine a
// kernel that cannot load them is a failure, never a skip.
func load(t *testing.T, cfg Config) *Kernel {
	t.Helper()
	testutil.RequireRoot(t)
	k, err := Load(cfg)
	if err != nil {
		t.Fatalf("loading the programs: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	if err := k.Attach(); err != nil {
		t.Fatalf("attaching the programs: %v", err)
	}
	return k
}

func TestEveryKernelStatHasItsOwnStatsField(t *testing.T) {
	var s events.Stats
	fields := statFields(&s)
	seen := map[*uint64]bool{}
	for id := range bpfobj.FdtraceStatIdSTAT_MAX {
		dst, ok := fields[id]
		if !ok {
			t.Errorf("stat id %d has no field in the stats record", id)
		}
		if seen[dst] {
			t.Errorf("stat id %d shares its field with another", id)
		}
		seen[dst] = true
	}
	if len(fields) != int(bpfobj.FdtraceStatIdSTAT_MAX) {
		t.Errorf("%d stats fields for %d kernel stats", len(fields), bpfobj.FdtraceStatIdSTAT_MAX)
	}
}

func TestTheRecordsNamesAreTheKernelsEnums(t *testing.T) {
	if int(bpfobj.FdtraceSyscallIdSYS_MAX) != events.NumSyscalls || int(bpfobj.FdtraceFdTypeFD_TYPE_MAX) != events.NumFDTypes {
		t.Errorf("kernel has %d syscall ids and %d fd types, events %d and %d: run make generate",
			bpfobj.FdtraceSyscallIdSYS_MAX, bpfobj.FdtraceFdTypeFD_TYPE_MAX, events.NumSyscalls, events.NumFDTypes)
	}
	if events.Syscall(bpfobj.FdtraceSyscallIdSYS_CLOSE_RANGE).String() != "close_range" ||
		events.FDType(bpfobj.FdtraceFdTypeFD_PIDFD).String() != "pidfd" {
		t.Error("events' names are out of order with the kernel's enums: run make generate")
	}
}

// bpf() refused under a container's seccomp profile says seccomp: neither
// memlock nor capabilities, which the user would chase in vain.
func TestARefusedBPFUnderASeccompFilterSaysSeccomp(t *testing.T) {
	for _, tc := range []struct {
		seccomp int
		err     error
		want    string
	}{
		{2, unix.EPERM, "a seccomp filter refuses bpf()"},
		{0, unix.EPERM, "needs CAP_BPF and CAP_PERFMON"},
		{2, unix.EINVAL, "raising RLIMIT_MEMLOCK: invalid argument"},
	} {
		got := refused("raising RLIMIT_MEMLOCK", tc.err, tc.seccomp).Error()
		if !strings.Contains(got, tc.want) || tc.seccomp == 2 && tc.err == unix.EPERM && !strings.HasPrefix(got, "a seccomp filter") {
			t.Errorf("seccomp %d, %v: %q, want it to say %q", tc.seccomp, tc.err, got, tc.want)
		}
	}
}

// The error and port counts of a process whose exit record was never read
// go when it is gone: they would fill the maps for good.
func TestTheCountsOfProcessesGoneUnseenArePruned(t *testing.T) {
	k := load(t, Config{Comm: "fdprune-nobody"})
	gone := bpfobj.FdtraceErrKey{Tgid: 1 << 24, Syscall: 3, Err: 24, StartNs: 5}
	kept := bpfobj.FdtraceErrKey{Tgid: 1<<24 + 1, Syscall: 3, Err: 24, StartNs: 6}
	for _, key := range []bpfobj.FdtraceErrKey{gone, kept} {
		if err := k.objs.Errors.Put(key, uint64(2)); err != nil {
			t.Fatal(err)
		}
	}
	port := bpfobj.FdtracePortKey{Tgid: 1 << 24, Port: 80, StartNs: 5}
	if err := k.objs.Ports.Put(port, bpfobj.FdtracePortCounts{Refused: 1}); err != nil {
		t.Fatal(err)
	}
	live := func(p ProcKey) bool { return p == ProcKey{PID: 1<<24 + 1, StartNs: 6} }
	if n := k.PruneGone(live); n != 2 {
		t.Errorf("%d entries pruned, want 2", n)
	}
	errs, err := k.Errors()
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || errs[0].Proc.PID != 1<<24+1 {
		t.Errorf("errors left: %+v, want the live process's only", errs)
	}
	if ports, _ := k.Ports(); len(ports) != 0 {
		t.Errorf("ports left: %+v", ports)
	}
}

// The user registers' offset in a task's kernel stack, where the kernel has
// bpf_task_pt_regs to measure it and bpf_rdonly_cast to use it: the top of
// a 16 KiB stack (32 KiB with KASAN), less the padding above the registers
// (16 bytes with FRED) and the registers themselves.
func TestThePtRegsOffsetIsTheTopOfTheKernelStack(t *testing.T) {
	testutil.RequireRoot(t)
	f := ProbeFeatures()
	if !f.TaskPtRegs || !f.TaskBTF || !f.RdonlyCast {
		if f.PtRegsOffset != 0 {
			t.Fatalf("offset %d measured without bpf_task_pt_regs or bpf_rdonly_cast", f.PtRegsOffset)
		}
		return
	}
	const ptRegs = 21 * 8 // struct pt_regs on x86-64
	for _, stack := range []uint32{16 << 10, 32 << 10} {
		for _, pad := range []uint32{0, 16} {
			if f.PtRegsOffset == stack-pad-ptRegs {
				return
			}
		}
	}
	t.Fatalf("user registers at %d bytes into the kernel stack: not below its top", f.PtRegsOffset)
}

// Counting only, a count that fell behind the fd table (fds made where
// fdtrace does not look) is recounted at the close that would take it
// below the fd still open: here the process's counters are set to have
// seen none of its fds, as if every one had been made unseen.
func TestACountBehindTheTableIsRecountedAtAClose(t *testing.T) {
	bin := testutil.BuildC(t, "fdops", "-static", "-pthread")
	w := testutil.StartFdops(t, bin)
	defer w.Close(t)
	k := load(t, Config{PIDs: []int{w.PID}, ErrorsOnly: true, CountOnly: true})
	var fds []int
	for range 3 {
		fds = append(fds, w.Do(t, "open /dev/null")[0])
	}
	var p bpfobj.FdtraceProc
	m, key, ok, err := k.procOf(w.PID, &p)
	if !ok || err != nil {
		t.Fatalf("no counters of pid %d: %v", w.PID, err)
	}
	p.OpenBase, p.OpenedByType, p.ClosedByType, p.ClosedUntyped = 0, [NumFDTypes]uint64{}, [NumFDTypes]uint64{}, 0
	if err := m.Put(key, &p); err != nil {
		t.Fatal(err)
	}
	w.Do(t, "close %d", fds[0])
	c, _, err := k.CountersOf(w.PID)
	if err != nil {
		t.Fatal(err)
	}
	open, err := procfs.FDs(w.PID)
	if err != nil {
		t.Fatal(err)
	}
	var st events.Stats
	if err := k.KernelStats(&st); err != nil {
		t.Fatal(err)
	}
	if c.OpenFDs != int64(len(open)) || st.KernelDrift != 1 {
		t.Errorf("open_fds %d, kernel_drift %d after the close; want %d (/proc) and 1", c.OpenFDs, st.KernelDrift, len(open))
	}
}
