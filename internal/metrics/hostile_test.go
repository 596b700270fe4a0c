package metrics

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
)

// A process names itself (printf 'evil\377' > /proc/self/comm) and picks
// its cgroup: neither may break a scrape, nor the ones after it, and what
// the labels carry is printable, valid UTF-8.
func TestAHostileNameOrCgroupIsServedSanitizedAndScrapesGoOn(t *testing.T) {
	sys := newSystem()
	sys.limits[10], sys.limits[11] = 1024, 1024
	sys.cgroups[10] = "/system.slice/x\n# HELP injected\x1b[2J"
	src := &fakeSource{procs: []loader.Counters{proc(10, "evil\xff\x1b]0;pwned\a", 7), proc(11, "fine", 3)}}
	clk := &clock{time.Unix(1000, 0)}
	c := New(src, Options{System: sys, Now: clk.now, Top: 10})
	srv := httptest.NewServer(Handler(c, log.New(io.Discard, "", 0)))
	defer srv.Close()
	for i := range 3 {
		client := srv.Client()
		client.Timeout = 5 * time.Second
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatalf("scrape %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := string(body)
		if resp.StatusCode != 200 || !strings.Contains(text, `fdtrace_process_open_fds{cgroup="/system.slice/x?# HELP injected?[2J",comm="evil`+"\uFFFD"+`?]0;pwned?",container="",pid="10"} 7`) ||
			!strings.Contains(text, `comm="fine"`) {
			t.Fatalf("scrape %d: status %d, the hostile process's series missing or unsanitized:\n%s", i, resp.StatusCode, grepLines(text, "fdtrace_process_open_fds"))
		}
		clk.add(time.Minute) // past the cache: each scrape reads again
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for l := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// EMFILE and ENFILE come from the kernel's host-wide counts of their own:
// exact when the per-errno maps are full, and monotonic as processes
// leave the maps, exit records read or lost.
func TestFdLimitFailuresComeFromTheKernelsTotalsEvenWithTheErrorMapsFull(t *testing.T) {
	a, b := proc(10, "a", 3), proc(11, "b", 1)
	a.EMFILE, b.EMFILE, b.ENFILE = 1, 1, 1 // the per-process counts are not summed
	src := &fakeSource{procs: []loader.Counters{a, b}, totals: loader.Totals{EMFILE: 5, ENFILE: 2},
		stats: events.Stats{ErrorsMapFull: 9}} // no per-errno counts at all
	clk := &clock{time.Unix(1000, 0)}
	c := New(src, Options{System: newSystem(), Now: clk.now})
	check := func(when string) {
		t.Helper()
		got := scrape(t, c)
		if lf := got["fdtrace_fd_limit_failures_total"]; lf["errno=EMFILE"] != 5 || lf["errno=ENFILE"] != 2 {
			t.Errorf("%s: %v, want EMFILE 5, ENFILE 2", when, lf)
		}
		if errs, ok := got["fdtrace_fd_errors_total"]; ok {
			t.Errorf("%s: per-errno series %v from a full map", when, errs)
		}
		clk.add(time.Minute)
	}
	check("live")
	src.procs = src.procs[:1] // b leaves the maps; its record is lost
	check("after b's exit")
}
