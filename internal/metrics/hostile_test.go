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

// EMFILE and ENFILE come from each process's own counters in the kernel:
// exact when the per-errno map is full or an exit record was lost, and
// monotonic as processes exit.
func TestFdLimitFailuresAreCountedFromTheProcessCountersEvenWithTheErrorMapFull(t *testing.T) {
	a, b := proc(10, "a", 3), proc(11, "b", 1)
	a.EMFILE, b.EMFILE, b.ENFILE = 4, 1, 2
	src := &fakeSource{procs: []loader.Counters{a, b}, stats: events.Stats{ErrorsMapFull: 9}} // no per-errno counts at all
	sys := newSystem()
	clk := &clock{time.Unix(1000, 0)}
	c := New(src, Options{System: sys, Now: clk.now})
	check := func(when string, emfile, enfile float64) {
		t.Helper()
		got := scrape(t, c)["fdtrace_fd_limit_failures_total"]
		if got["errno=EMFILE"] != emfile || got["errno=ENFILE"] != enfile {
			t.Errorf("%s: %v, want EMFILE %v, ENFILE %v", when, got, emfile, enfile)
		}
		clk.add(time.Minute)
	}
	check("live", 5, 2)
	// b exits: it leaves the maps, then its record is observed.
	src.procs = src.procs[:1]
	check("between b's exit and its record", 5, 2)
	c.Observe(events.Process{Type: "process", PID: 11, Exited: true, EMFILE: 1, ENFILE: 2})
	check("after b's record", 5, 2)
}
