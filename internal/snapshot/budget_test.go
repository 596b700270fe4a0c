package snapshot

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
)

func file(num int, path string) FD { return FD{Num: num, Target: path, Type: "file"} }
func pipe(num, ino int) FD         { return FD{Num: num, Target: "pipe:[" + itoa(ino) + "]", Type: "pipe"} }
func in(num, ino, port int) FD {
	return FD{Num: num, Target: "socket:[" + itoa(ino) + "]", Type: "socket", Dir: Inbound, Port: port}
}
func out(num, ino int, ep string) FD {
	return FD{Num: num, Target: "socket:[" + itoa(ino) + "]", Type: "socket", Dir: Outbound, Endpoint: ep}
}
func itoa(n int) string { return strconv.Itoa(n) }

func TestBudgetAddsUpThePeakOfEachComponentOverTheBaseline(t *testing.T) {
	epoll := FD{Num: 3, Target: "anon_inode:[eventpoll]", Type: "epoll"}
	listener := FD{Num: 4, Target: "socket:[100]", Type: "socket"}
	log := file(5, "/var/log/app.log")
	db := "10.0.0.5:5432"
	samples := [][]FD{
		{epoll, listener, log, out(6, 200, db)},
		// a burst: 3 inbound on :8080, 1 on :9090, 3 to the db, a pipe
		{epoll, listener, log, out(6, 200, db), in(7, 201, 8080), in(8, 202, 8080), in(9, 203, 8080),
			in(10, 204, 9090), out(11, 205, db), out(12, 206, db), pipe(13, 300), pipe(14, 300)},
		// :9090 peaks later, the cache shows up, a file is opened
		{epoll, listener, log, out(6, 200, db), in(7, 201, 9090), in(8, 202, 9090), out(9, 207, "10.0.0.6:6379"),
			file(10, "/tmp/x")},
		// fd 6 is another connection to the db now: not the baseline
		{epoll, listener, log, out(6, 208, db)},
	}
	var b Budget
	start := time.Date(2026, 11, 24, 18, 0, 0, 0, time.UTC)
	for i, s := range samples {
		b.Add(start.Add(time.Duration(i)*200*time.Millisecond), s)
	}
	r := b.Record(42, "api", 200*time.Millisecond, 1.5, Limits{Soft: 1024, Hard: 524288})
	want := []events.BudgetComponent{
		{Name: "inbound", Peak: 4, Baseline: 0, Ports: map[int]int{8080: 3, 9090: 2}},
		{Name: "outbound", Endpoint: db, Peak: 3, Baseline: 0},
		{Name: "outbound", Endpoint: "10.0.0.6:6379", Peak: 1, Baseline: 0},
		{Name: "files", Peak: 2, Baseline: 1},
		{Name: "pipes", Peak: 2, Baseline: 0},
		{Name: "other", Peak: 2, Baseline: 2},
	}
	if len(r.Components) != len(want) {
		t.Fatalf("components %+v, want %+v", r.Components, want)
	}
	for i, c := range r.Components {
		w := want[i]
		if c.Name != w.Name || c.Endpoint != w.Endpoint || c.Peak != w.Peak || c.Baseline != w.Baseline || len(c.Ports) != len(w.Ports) {
			t.Errorf("component %d: %+v, want %+v", i, c, w)
		}
		for p, n := range w.Ports {
			if c.Ports[p] != n {
				t.Errorf("inbound port %d peak %d, want %d", p, c.Ports[p], n)
			}
		}
	}
	if r.Baseline != 3 || r.PeakTotal != 14 || r.PeakOpenFDs != 12 || r.Samples != 4 {
		t.Errorf("baseline %d, peak total %d, peak open %d, samples %d; want 3, 14, 12, 4",
			r.Baseline, r.PeakTotal, r.PeakOpenFDs, r.Samples)
	}
	if r.DurationS != 0.6 || r.IntervalS != 0.2 {
		t.Errorf("duration %vs every %vs, want 0.6s every 0.2s", r.DurationS, r.IntervalS)
	}
	if r.WithMargin != 21 || r.RecommendedLimit != 16384 || r.CurrentLimit != 1024 || r.CurrentLimitHard != 524288 {
		t.Errorf("with margin %d, recommended %d, current %d/%d", r.WithMargin, r.RecommendedLimit, r.CurrentLimit, r.CurrentLimitHard)
	}
	if r.Settings["systemd"] != "LimitNOFILE=16384:524288" || r.Settings["shell"] != "ulimit -Sn 16384" {
		t.Errorf("settings %v", r.Settings)
	}
}

func TestBudgetOfOneSampleIsThatSample(t *testing.T) {
	var b Budget
	b.Add(time.Now(), []FD{pipe(0, 1), pipe(1, 2), file(2, "/dev/null")})
	r := b.Record(1, "x", time.Second, 1, Limits{Soft: 20000, Hard: 20000})
	if r.Baseline != 3 || r.PeakTotal != 3 || r.DurationS != 0 || r.Samples != 1 {
		t.Errorf("%+v", r)
	}
	if len(r.Components) != 4 || r.Components[0].Name != "inbound" || r.Components[0].Ports != nil {
		t.Errorf("components %+v: want inbound, files, pipes and other, even when empty", r.Components)
	}
}

func TestTheMarginIsRoundedUpWithoutFloatNoise(t *testing.T) {
	for _, tc := range []struct {
		total  int
		margin float64
		want   int
	}{
		{100, 1.1, 110}, {83, 1.5, 125}, {0, 1.5, 0}, {10, 1, 10}, {3, 1.0001, 4}, {1000, 2.5, 2500}, {7, 1.3, 10},
	} {
		if got := WithMargin(tc.total, tc.margin); got != tc.want {
			t.Errorf("WithMargin(%d, %v) = %d, want %d", tc.total, tc.margin, got, tc.want)
		}
	}
}

func TestTheRecommendationIsAPowerOfTwoOfAtLeast16384(t *testing.T) {
	for n, want := range map[int]uint64{0: 16384, 125: 16384, 16384: 16384, 16385: 32768, 18800: 32768, 65537: 131072} {
		if got := Recommend(n); got != want {
			t.Errorf("Recommend(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestSettingsKeepAHigherHardLimitAndRaiseALowerOne(t *testing.T) {
	s := Settings(16384, 1<<20)
	if s["systemd"] != "LimitNOFILE=16384:1048576" || s["docker"] != "--ulimit nofile=16384:1048576" ||
		s["docker_compose"] != "ulimits:\n  nofile:\n    soft: 16384\n    hard: 1048576" || s["shell"] != "ulimit -Sn 16384" {
		t.Errorf("with a higher hard limit: %q", s)
	}
	s = Settings(32768, 4096)
	if s["systemd"] != "LimitNOFILE=32768:32768" || s["docker"] != "--ulimit nofile=32768:32768" || s["shell"] != "ulimit -n 32768" {
		t.Errorf("with a lower hard limit: %q", s)
	}
	if s := Settings(16384, math.MaxUint64); s["systemd"] != "LimitNOFILE=16384:16384" {
		t.Errorf("with an unlimited hard limit: %q", s)
	}
}
