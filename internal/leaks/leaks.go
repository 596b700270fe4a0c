// Package leaks groups the fds a process still holds by the user stack
// that created them, the way memleak groups outstanding allocations.
package leaks

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/fdtrace/fdtrace/internal/symbolize"
	"github.com/fdtrace/fdtrace/internal/tracer"
)

// Group is the fds of one process created by one call stack.
type Group struct {
	PID          int
	Comm         string
	StackID      uint64
	Stack        []symbolize.Frame
	Count        int
	FDTypes      map[string]int
	Syscalls     map[string]int
	Oldest       time.Duration
	GrowthPerMin float64
	SampleFDs    []int
	Samples      []string // what the sample fds point at: paths, peers
}

// Report is one look at the outstanding fds.
type Report struct {
	Time time.Time
	// Groups are the fds with an allocation stack, most first, at most Top.
	Groups []Group
	// More counts the groups beyond Top.
	More int
	// Preexisting are, per process, the fds that were open before fdtrace
	// attached: they have no stack.
	Preexisting []Group
	// Unattributed are, per process, fds created while tracing whose stack
	// could not be kept (the stack store was full).
	Unattributed []Group
	// Outside are, per process, the fds /proc shows that have no record:
	// created outside the traced syscalls (io_uring, seccomp's ADDFD, an
	// ia32 syscall, ...). No stack, no syscall, no age; Samples are what
	// /proc said they point at.
	Outside []Group
}

// Builder makes reports and remembers the last one, for growth rates.
type Builder struct {
	Since  time.Time     // when tracing started
	MinAge time.Duration // younger fds are left out
	Top    int           // most groups in a report; 0 is all
	// Stack symbolizes a stack id; Comm names a pid; Describe tells what an
	// fd points at. Any may be nil.
	Stack    func(id uint64) []symbolize.Frame
	Comm     func(pid int) string
	Describe func(pid, fd int) string

	last     map[groupKey]int
	lastTime time.Time
}

// SampleSize is how many fd numbers a group shows: the lowest.
const SampleSize = 5

type groupKey struct {
	pid   int
	stack uint64
	kind  int
}

const (
	attributed = iota
	preexisting
	unattributed
	outside
)

// A Tally groups fds one at a time, for one report, keeping per group
// only counts and SampleSize fd numbers.
type Tally struct {
	b      *Builder
	now    time.Time
	minAge time.Duration
	groups map[groupKey]*groupTally
}

type groupTally struct {
	Group
	types map[fdType]int
	// Groups of other stack ids merged into this one, and their counts.
	merged      []groupKey
	counts      []int
	mergedCount int
	// targets: what the sample fds of an outside group point at, read
	// when they were added (the process may be gone by the report).
	targets map[int]string
}

// fdType is what FDTypes counts, as "type family" when there is a family.
type fdType struct{ typ, family string }

// NewTally starts a report as of now: Add the fds to it, then Report. Add
// may run while other reports are made; Report may not.
func (b *Builder) NewTally(now time.Time) *Tally {
	return &Tally{b: b, now: now, minAge: b.MinAge, groups: map[groupKey]*groupTally{}}
}

// Build groups fds as of now.
func (b *Builder) Build(fds []tracer.FD, now time.Time) Report {
	t := b.NewTally(now)
	for _, fd := range fds {
		t.Add(fd)
	}
	return t.Report()
}

// Add counts one fd.
func (t *Tally) Add(fd tracer.FD) {
	key := groupKey{pid: fd.PID, stack: fd.StackID, kind: attributed}
	switch {
	case fd.Seeded:
		key.kind, key.stack = preexisting, 0
	case fd.StackID == 0:
		key.kind = unattributed
	}
	age := time.Duration(0)
	if !fd.OpenTime.IsZero() {
		age = t.now.Sub(fd.OpenTime)
	}
	if key.kind != preexisting && age < t.minAge {
		return
	}
	g := t.groups[key]
	if g == nil {
		g = &groupTally{Group: Group{PID: fd.PID, StackID: key.stack, Syscalls: map[string]int{}},
			types: map[fdType]int{}}
		t.groups[key] = g
	}
	g.Count++
	g.types[fdType{fd.Type, fd.Family}]++
	g.Syscalls[fd.Syscall]++
	g.Oldest = max(g.Oldest, age)
	g.SampleFDs = addSample(g.SampleFDs, fd.FD)
}

// AddOutside counts an fd that /proc shows and that has no record: created
// outside the traced syscalls. typ is its type and target what it points
// at, both from /proc; its age is unknown, so --min-age does not apply.
func (t *Tally) AddOutside(pid, fd int, typ, target string) {
	key := groupKey{pid: pid, kind: outside}
	g := t.groups[key]
	if g == nil {
		g = &groupTally{Group: Group{PID: pid, Syscalls: map[string]int{}},
			types: map[fdType]int{}, targets: map[int]string{}}
		t.groups[key] = g
	}
	g.Count++
	g.types[fdType{typ: typ}]++
	g.SampleFDs = addSample(g.SampleFDs, fd)
	if slices.Contains(g.SampleFDs, fd) {
		g.targets[fd] = target
		// Only the samples' targets are kept.
		for n := range g.targets {
			if !slices.Contains(g.SampleFDs, n) {
				delete(g.targets, n)
			}
		}
	}
}

// mergeSameCallSites merges the groups of one process whose stacks differ
// in addresses only: the same functions at the same lines. A JIT compiles
// a function again as it gets hot, so one JavaScript call site has stacks
// through the interpreter, the baseline code and the optimized code.
func (t *Tally) mergeSameCallSites() {
	if t.b.Stack == nil {
		return
	}
	type site struct {
		pid   int
		where string
	}
	keys := make([]groupKey, 0, len(t.groups))
	for key := range t.groups {
		if key.kind == attributed {
			keys = append(keys, key)
		}
	}
	// The lowest stack id stays: reports are stable.
	slices.SortFunc(keys, func(x, y groupKey) int { return cmp.Compare(x.stack, y.stack) })
	first := map[site]*groupTally{}
	for _, key := range keys {
		where, ok := callSite(t.b.Stack(key.stack))
		if !ok {
			continue
		}
		s := site{key.pid, where}
		into := first[s]
		if into == nil {
			first[s] = t.groups[key]
			continue
		}
		g := t.groups[key]
		into.Count += g.Count
		into.mergedCount += g.Count
		into.merged = append(into.merged, key)
		into.counts = append(into.counts, g.Count)
		for k, n := range g.types {
			into.types[k] += n
		}
		for k, n := range g.Syscalls {
			into.Syscalls[k] += n
		}
		into.Oldest = max(into.Oldest, g.Oldest)
		for _, fd := range g.SampleFDs {
			into.SampleFDs = addSample(into.SampleFDs, fd)
		}
		delete(t.groups, key)
	}
}

// callSite names a stack by its functions and lines; false when a frame
// has no name, for then only its address tells stacks apart.
func callSite(frames []symbolize.Frame) (string, bool) {
	if len(frames) == 0 {
		return "", false
	}
	var b []byte
	for _, f := range frames {
		if f.Func == "" {
			return "", false
		}
		b = fmt.Appendf(b, "%s\x00%s\x00%d\x00%s\x00", f.Func, f.File, f.Line, f.Module)
	}
	return string(b), true
}

// addSample keeps the SampleSize lowest fds, sorted.
func addSample(s []int, fd int) []int {
	if len(s) == SampleSize && fd >= s[len(s)-1] {
		return s
	}
	i, _ := slices.BinarySearch(s, fd)
	if len(s) < SampleSize {
		return slices.Insert(s, i, fd)
	}
	copy(s[i+1:], s[i:len(s)-1])
	s[i] = fd
	return s
}

// Report makes the report of the fds added, and remembers it for the
// growth rates of the next.
func (t *Tally) Report() Report {
	b, now := t.b, t.now
	r := Report{Time: now}
	since := b.Since
	if !b.lastTime.IsZero() {
		since = b.lastTime
	}
	minutes := now.Sub(since).Minutes()
	t.mergeSameCallSites()
	for key, g := range t.groups {
		g.FDTypes = make(map[string]int, len(g.types))
		for k, n := range g.types {
			name := k.typ
			if k.family != "" {
				name += " " + k.family
			}
			g.FDTypes[name] += n
		}
		switch key.kind {
		case preexisting:
			r.Preexisting = append(r.Preexisting, g.Group)
			continue
		case unattributed:
			r.Unattributed = append(r.Unattributed, g.Group)
			continue
		case outside:
			for _, fd := range g.SampleFDs {
				g.Samples = append(g.Samples, g.targets[fd])
			}
			r.Outside = append(r.Outside, g.Group)
			continue
		}
		if minutes > 0 {
			last := b.last[key]
			for _, k := range g.merged {
				last += b.last[k]
			}
			g.GrowthPerMin = float64(g.Count-last) / minutes
		}
		r.Groups = append(r.Groups, g.Group)
	}
	b.last = map[groupKey]int{}
	for key, g := range t.groups {
		b.last[key] = g.Count - g.mergedCount
	}
	for _, g := range t.groups {
		for i, k := range g.merged {
			b.last[k] = g.counts[i]
		}
	}
	b.lastTime = now

	slices.SortFunc(r.Groups, func(x, y Group) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(y.Oldest, x.Oldest),
			cmp.Compare(x.PID, y.PID), cmp.Compare(x.StackID, y.StackID))
	})
	if b.Top > 0 && len(r.Groups) > b.Top {
		r.More = len(r.Groups) - b.Top
		r.Groups = r.Groups[:b.Top]
	}
	byPID := func(x, y Group) int { return cmp.Compare(x.PID, y.PID) }
	slices.SortFunc(r.Preexisting, byPID)
	slices.SortFunc(r.Unattributed, byPID)
	slices.SortFunc(r.Outside, byPID)
	for _, groups := range [][]Group{r.Groups, r.Preexisting, r.Unattributed, r.Outside} {
		for i := range groups {
			b.describe(&groups[i])
		}
	}
	return r
}

func (b *Builder) describe(g *Group) {
	if b.Stack != nil && g.StackID != 0 {
		g.Stack = b.Stack(g.StackID)
	}
	if b.Comm != nil {
		g.Comm = b.Comm(g.PID)
	}
	if b.Describe != nil && g.Samples == nil { // outside groups have theirs
		for _, fd := range g.SampleFDs {
			g.Samples = append(g.Samples, b.Describe(g.PID, fd))
		}
	}
}
