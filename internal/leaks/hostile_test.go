package leaks

import (
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// Names, paths and symbols come from the traced process: none of their
// bytes may reach the terminal as a control sequence.
func TestATextReportCarriesNoControlCharacterFromTheProcess(t *testing.T) {
	evil := "x\x1b]0;pwned\a\x1b[2J\u009b1m\xff"
	r := Report{Time: time.Unix(0, 0), Groups: []Group{{PID: 7, Comm: evil, Count: 2,
		FDTypes: map[string]int{"file": 2}, Syscalls: map[string]int{"openat": 2}, SampleFDs: []int{3, 4},
		Samples: []string{"/tmp/" + evil, ""},
		Stack:   []symbolize.Frame{{Func: evil, File: "/src/" + evil + ".c", Line: 3, Module: "/lib/" + evil}}}},
		Preexisting: []Group{{PID: 7, Comm: evil, Count: 1, FDTypes: map[string]int{"pipe": 1}}},
		Outside: []Group{{PID: 7, Comm: evil, Count: 1, FDTypes: map[string]int{"file": 1}, SampleFDs: []int{5},
			Samples: []string{"/tmp/" + evil}}}}
	var b strings.Builder
	r.WriteText(&b, "leaks")
	if i := strings.IndexFunc(b.String(), func(r rune) bool {
		return (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0)
	}); i >= 0 {
		t.Errorf("control character %q in the report:\n%q", b.String()[i], b.String())
	}
	if strings.Count(b.String(), "\n") != strings.Count(cleanReport(t, r), "\n") {
		t.Error("a name added lines to the report")
	}
}

// cleanReport is the report of r with harmless names: the lines it has.
func cleanReport(t *testing.T, r Report) string {
	t.Helper()
	r.Groups[0].Comm, r.Preexisting[0].Comm, r.Outside[0].Comm = "x", "x", "x"
	r.Outside[0].Samples[0] = "/tmp/x"
	r.Groups[0].Samples[0] = "/tmp/x"
	r.Groups[0].Stack[0] = symbolize.Frame{Func: "x", File: "/src/x.c", Line: 3, Module: "/lib/x"}
	var b strings.Builder
	r.WriteText(&b, "leaks")
	return b.String()
}
