package leaks

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/symbolize"
	"github.com/fdtrace/fdtrace/internal/tracer"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func fd(pid, n int, stack uint64, typ string, age time.Duration) tracer.FD {
	return tracer.FD{PID: pid, FD: n, Type: typ, Syscall: "openat", StackID: stack, OpenTime: t0.Add(-age)}
}

func TestGroupsAreByProcessAndStackMostFirst(t *testing.T) {
	b := &Builder{Since: t0.Add(-time.Minute), MinAge: time.Second,
		Stack: func(id uint64) []symbolize.Frame {
			return []symbolize.Frame{{Func: map[uint64]string{1: "a", 2: "b"}[id]}}
		}}
	fds := []tracer.FD{
		fd(10, 5, 1, "file", 10*time.Second), fd(10, 3, 1, "file", 20*time.Second), fd(10, 4, 1, "file", 5*time.Second),
		fd(10, 6, 2, "socket", 30*time.Second),
		fd(11, 3, 1, "file", 30*time.Second),         // same id, another process
		fd(10, 7, 2, "socket", 100*time.Millisecond), // too young
	}
	r := b.Build(fds, t0)
	if len(r.Groups) != 3 {
		t.Fatalf("%d groups, want 3: %+v", len(r.Groups), r.Groups)
	}
	g := r.Groups[0]
	if g.PID != 10 || g.Count != 3 || g.Stack[0].Func != "a" || g.Oldest != 20*time.Second {
		t.Errorf("first group %+v", g)
	}
	if want := []int{3, 4, 5}; len(g.SampleFDs) != 3 || g.SampleFDs[0] != want[0] || g.SampleFDs[2] != want[2] {
		t.Errorf("sample fds %v, want %v", g.SampleFDs, want)
	}
	if g.GrowthPerMin != 3 {
		t.Errorf("growth %v/min, want 3 (three fds in the first minute)", g.GrowthPerMin)
	}
	if r.Groups[1].Count != 1 || r.Groups[2].Count != 1 {
		t.Errorf("other groups: %+v", r.Groups[1:])
	}
}

func TestPreexistingAndStacklessFDsAreNeverMixedWithAttributedOnes(t *testing.T) {
	b := &Builder{Since: t0}
	pre := tracer.FD{PID: 10, FD: 0, Type: "pipe", Syscall: "preexisting", Seeded: true}
	lost := fd(10, 9, 0, "file", time.Minute)
	r := b.Build([]tracer.FD{pre, lost, fd(10, 5, 7, "file", time.Minute)}, t0)
	if len(r.Groups) != 1 || len(r.Preexisting) != 1 || len(r.Unattributed) != 1 {
		t.Fatalf("groups %d, pre-existing %d, unattributed %d; want 1 each", len(r.Groups), len(r.Preexisting), len(r.Unattributed))
	}
	recs := r.Records(false)
	if len(recs) != 3 || !recs[1].Preexisting || !recs[2].Unattributed || recs[1].Stack == nil {
		t.Errorf("records %+v", recs)
	}
	var text bytes.Buffer
	r.WriteText(&text, "outstanding fds")
	for _, want := range []string{"pre-existing (no stack): 1 fds in pid 10", "no stack (stack store full): 1 fds in pid 10"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

// fds /proc shows with no record (io_uring's, an ia32 process's) are a
// group of their own per process, whatever their age, with the targets
// read when they were added: the process may be gone by the report.
func TestFDsWithNoRecordAreTheirOwnGroupWithWhatProcSaid(t *testing.T) {
	b := &Builder{Since: t0, MinAge: time.Hour,
		Describe: func(pid, fd int) string { return "described later" }}
	tally := b.NewTally(t0)
	tally.Add(fd(10, 3, 7, "file", 2*time.Hour))
	for _, n := range []int{9, 8, 7, 6, 5, 4} {
		tally.AddOutside(10, n, "file", fmt.Sprintf("/data/%d", n))
	}
	tally.AddOutside(10, 12, "socket", "socket:[77]")
	tally.AddOutside(11, 5, "other", "anon_inode:[io_uring]")
	r := tally.Report()
	if len(r.Groups) != 1 || len(r.Preexisting) != 0 || len(r.Unattributed) != 0 || len(r.Outside) != 2 {
		t.Fatalf("groups %d, pre-existing %d, unattributed %d, outside %d; want 1, 0, 0, 2",
			len(r.Groups), len(r.Preexisting), len(r.Unattributed), len(r.Outside))
	}
	g := r.Outside[0]
	if g.PID != 10 || g.Count != 7 || !maps.Equal(g.FDTypes, map[string]int{"file": 6, "socket": 1}) ||
		len(g.Syscalls) != 0 || g.Oldest != 0 || g.StackID != 0 || g.Stack != nil ||
		!slices.Equal(g.SampleFDs, []int{4, 5, 6, 7, 8}) ||
		!slices.Equal(g.Samples, []string{"/data/4", "/data/5", "/data/6", "/data/7", "/data/8"}) {
		t.Errorf("outside group of pid 10: %+v", g)
	}
	if g := r.Outside[1]; g.PID != 11 || g.Count != 1 || !slices.Equal(g.Samples, []string{"anon_inode:[io_uring]"}) {
		t.Errorf("outside group of pid 11: %+v", g)
	}
	if g := r.Groups[0]; !slices.Equal(g.Samples, []string{"described later"}) {
		t.Errorf("an attributed group's samples are described at the report: %v", g.Samples)
	}
	recs := r.Records(true)
	if len(recs) != 3 || recs[0].OutsideTracedSyscalls || !recs[1].OutsideTracedSyscalls || !recs[2].OutsideTracedSyscalls ||
		recs[1].Preexisting || recs[1].Unattributed || recs[1].Stack == nil || recs[1].Syscalls == nil || !recs[1].AtExit {
		t.Errorf("records %+v", recs)
	}
	var text bytes.Buffer
	r.WriteText(&text, "fds still open at exit")
	for _, want := range []string{
		"\n  created outside the traced syscalls (io_uring, ia32 syscalls, ...; no stack): 7 fds in pid 10 (): file 6, socket 1\n" +
			"      fds 4 /data/4, 5 /data/5, 6 /data/6, 7 /data/7, 8 /data/8, ... (7 in all)\n",
		"\n  created outside the traced syscalls (io_uring, ia32 syscalls, ...; no stack): 1 fds in pid 11 (): other 1\n" +
			"      fds 5 anon_inode:[io_uring]\n",
		": 1 fds from 1 call sites\n",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

func TestGrowthIsMeasuredFromTheLastReport(t *testing.T) {
	b := &Builder{Since: t0}
	b.Build([]tracer.FD{fd(1, 3, 5, "file", 0)}, t0.Add(time.Minute))
	r := b.Build([]tracer.FD{fd(1, 3, 5, "file", 0), fd(1, 4, 5, "file", 0), fd(1, 6, 5, "file", 0)}, t0.Add(2*time.Minute))
	if g := r.Groups[0]; g.GrowthPerMin != 2 {
		t.Errorf("growth %v/min, want 2", g.GrowthPerMin)
	}
}

func TestTopKeepsTheLargestGroupsAndCountsTheRest(t *testing.T) {
	b := &Builder{Since: t0, Top: 1}
	r := b.Build([]tracer.FD{fd(1, 3, 5, "file", 0), fd(1, 4, 6, "file", 0), fd(1, 5, 6, "file", 0)}, t0)
	if len(r.Groups) != 1 || r.Groups[0].StackID != 6 || r.More != 1 {
		t.Errorf("groups %+v, more %d", r.Groups, r.More)
	}
}

func TestAGroupKeepsTheLowestFDsAsSamplesAndCountsThemAll(t *testing.T) {
	b := &Builder{Since: t0}
	var fds []tracer.FD
	for _, n := range []int{40, 9, 33, 7, 100, 8, 3, 12, 50, 4, 3000} {
		fds = append(fds, fd(1, n, 5, "file", time.Minute))
	}
	r := b.Build(fds, t0)
	g := r.Groups[0]
	if want := []int{3, 4, 7, 8, 9}; g.Count != len(fds) || !slices.Equal(g.SampleFDs, want) {
		t.Errorf("count %d, samples %v; want %d, %v", g.Count, g.SampleFDs, len(fds), want)
	}
	var text bytes.Buffer
	r.WriteText(&text, "outstanding fds")
	if want := "fds 3, 4, 7, 8, 9, ... (11 in all)"; !strings.Contains(text.String(), want) {
		t.Errorf("text report lacks %q:\n%s", want, text.String())
	}
}

func TestSocketsAreCountedByTypeAndFamily(t *testing.T) {
	b := &Builder{Since: t0}
	sock := func(n int, family string) tracer.FD {
		f := fd(1, n, 5, "socket", time.Minute)
		f.Family = family
		return f
	}
	r := b.Build([]tracer.FD{sock(3, "AF_INET"), sock(4, "AF_INET"), sock(5, "AF_UNIX"), fd(1, 6, 5, "file", time.Minute)}, t0)
	want := map[string]int{"socket AF_INET": 2, "socket AF_UNIX": 1, "file": 1}
	if got := r.Groups[0].FDTypes; !maps.Equal(got, want) {
		t.Errorf("fd types %v, want %v", got, want)
	}
}

// A JIT's tiers give one JavaScript call site several stacks: the same
// functions at the same lines, at other addresses. They are one group;
// a stack with an unnamed frame is told apart by its addresses only.
func TestStacksWithTheSameFunctionsAndLinesAreOneGroup(t *testing.T) {
	named := func(addr uint64) []symbolize.Frame {
		return []symbolize.Frame{{Addr: 0x7000 + addr, Func: "openSync", File: "node:fs", Line: 570, Module: "/tmp/perf-10.map"},
			{Addr: 0x9000 + addr, Func: "handleUpload", File: "server.js", Line: 25, Module: "/tmp/perf-10.map"}}
	}
	stacks := map[uint64][]symbolize.Frame{
		1: named(1), 3: named(3), 5: named(5), // interpreted, baseline, optimized
		7: {{Addr: 0x7001, Func: "openSync", File: "node:fs", Line: 570}, {Addr: 0x9999}},
		9: {{Addr: 0x7001, Func: "openSync", File: "node:fs", Line: 570}, {Addr: 0x9998}},
	}
	b := &Builder{Since: t0.Add(-time.Minute), Stack: func(id uint64) []symbolize.Frame { return stacks[id] }}
	fds := []tracer.FD{fd(10, 3, 1, "file", time.Minute), fd(10, 4, 3, "file", 2*time.Minute), fd(10, 8, 3, "file", time.Second),
		fd(10, 5, 5, "socket", time.Second), fd(11, 6, 5, "file", time.Second),
		fd(10, 7, 7, "file", time.Second), fd(10, 9, 9, "file", time.Second)}
	r := b.Build(fds, t0)
	if len(r.Groups) != 4 {
		t.Fatalf("%d groups, want 4 (pid 10's three tiers merged; pid 11; two stacks with unnamed frames): %+v", len(r.Groups), r.Groups)
	}
	g := r.Groups[0]
	if g.PID != 10 || g.Count != 4 || g.StackID != 1 || g.Oldest != 2*time.Minute ||
		!slices.Equal(g.SampleFDs, []int{3, 4, 5, 8}) || g.FDTypes["file"] != 3 || g.FDTypes["socket"] != 1 || g.Syscalls["openat"] != 4 {
		t.Errorf("merged group %+v", g)
	}
	if g.GrowthPerMin != 4 {
		t.Errorf("growth %v/min, want 4", g.GrowthPerMin)
	}
	// The next report's growth counts from the merged groups' last counts.
	r = b.Build(append(fds, fd(10, 10, 5, "file", time.Second)), t0.Add(time.Minute))
	if g := r.Groups[0]; g.Count != 5 || g.GrowthPerMin != 1 {
		t.Errorf("next report: %d fds, growth %v/min; want 5, 1", g.Count, g.GrowthPerMin)
	}
}
