package leaks

import (
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/sanitize"
	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// Records turns a report into "leak" records: attributed groups first,
// then the pre-existing, unattributed and outside ones.
func (r Report) Records(atExit bool) []events.Leak {
	var out []events.Leak
	add := func(g Group, pre, unattr, outside bool) {
		stack := g.Stack
		if stack == nil {
			stack = []symbolize.Frame{}
		}
		out = append(out, events.Leak{Type: "leak", Time: events.Time(r.Time), PID: g.PID,
			Comm: g.Comm, Count: g.Count, FDTypes: g.FDTypes, Syscalls: g.Syscalls,
			OldestAgeS: g.Oldest.Seconds(), GrowthPerMin: g.GrowthPerMin, FDs: g.SampleFDs,
			Samples: g.Samples, Stack: stack, Preexisting: pre, Unattributed: unattr,
			OutsideTracedSyscalls: outside, AtExit: atExit})
	}
	for _, g := range r.Groups {
		add(g, false, false, false)
	}
	for _, g := range r.Preexisting {
		add(g, true, false, false)
	}
	for _, g := range r.Unattributed {
		add(g, false, true, false)
	}
	for _, g := range r.Outside {
		add(g, false, false, true)
	}
	return out
}

// OutsideHeading names the group of fds that have no record in the text
// report.
const OutsideHeading = "created outside the traced syscalls (io_uring, ia32 syscalls, ...; no stack)"

// WriteText prints a report for people, like memleak: the groups by count,
// each with its stack, innermost frame first.
func (r Report) WriteText(w io.Writer, heading string) {
	w = sanitize.Writer(w)
	total := 0
	for _, g := range r.Groups {
		total += g.Count
	}
	fmt.Fprintf(w, "[%s] %s: %d fds from %d call sites\n", r.Time.Format(time.TimeOnly), heading, total, len(r.Groups))
	for _, g := range r.Groups {
		fmt.Fprintf(w, "\n  %d fds in pid %d (%s): %s via %s, oldest %s, %+.1f/min\n",
			g.Count, g.PID, sanitize.Text(g.Comm), counts(g.FDTypes), counts(g.Syscalls),
			g.Oldest.Round(100*time.Millisecond), g.GrowthPerMin)
		writeSamples(w, g)
		for i, f := range g.Stack {
			fmt.Fprintf(w, "      #%-2d %s\n", i, sanitize.Text(FrameText(f)))
		}
		if len(g.Stack) == 0 {
			fmt.Fprintln(w, "      (stack unknown)")
		}
	}
	if r.More > 0 {
		fmt.Fprintf(w, "\n  ... and %d more call sites (--top)\n", r.More)
	}
	for _, g := range r.Unattributed {
		fmt.Fprintf(w, "\n  no stack (stack store full): %d fds in pid %d (%s): %s\n", g.Count, g.PID, sanitize.Text(g.Comm), counts(g.FDTypes))
	}
	for _, g := range r.Preexisting {
		fmt.Fprintf(w, "\n  pre-existing (no stack): %d fds in pid %d (%s): %s\n", g.Count, g.PID, sanitize.Text(g.Comm), counts(g.FDTypes))
		writeSamples(w, g)
	}
	for _, g := range r.Outside {
		fmt.Fprintf(w, "\n  %s: %d fds in pid %d (%s): %s\n", OutsideHeading, g.Count, g.PID, sanitize.Text(g.Comm), counts(g.FDTypes))
		writeSamples(w, g)
	}
	fmt.Fprintln(w)
}

func writeSamples(w io.Writer, g Group) {
	var parts []string
	for i, fd := range g.SampleFDs {
		s := fmt.Sprint(fd)
		if i < len(g.Samples) && g.Samples[i] != "" {
			s += " " + sanitize.Text(g.Samples[i])
		}
		parts = append(parts, s)
	}
	more := ""
	if g.Count > len(g.SampleFDs) {
		more = fmt.Sprintf(", ... (%d in all)", g.Count)
	}
	fmt.Fprintf(w, "      fds %s%s\n", strings.Join(parts, ", "), more)
}

// FrameText is one frame as "func file:line (module)", with what is known.
func FrameText(f symbolize.Frame) string {
	var b strings.Builder
	if f.Func != "" {
		b.WriteString(f.Func)
	} else {
		fmt.Fprintf(&b, "0x%x", f.Addr)
	}
	if f.File != "" {
		fmt.Fprintf(&b, " %s:%d", filepath.Base(f.File), f.Line)
	}
	if f.Module != "" {
		fmt.Fprintf(&b, " (%s)", filepath.Base(f.Module))
	}
	if f.Inlined {
		b.WriteString(" [inlined]")
	}
	return b.String()
}

// counts prints {"file": 3, "socket": 1} as "file 3, socket 1", sorted.
func counts(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
