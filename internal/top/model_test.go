package top

import (
	"encoding/json"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
)

// fakeSystem is /proc as the tests want it; it counts what is read.
type fakeSystem struct {
	limits     map[int]uint64
	types      map[int][NumTypes]int64
	pids       []int
	fdCounts   map[int]int64
	limitReads map[int]int
	typeReads  map[int]int
}

func newFake() *fakeSystem {
	return &fakeSystem{limits: map[int]uint64{}, types: map[int][NumTypes]int64{}, fdCounts: map[int]int64{},
		limitReads: map[int]int{}, typeReads: map[int]int{}}
}

func (f *fakeSystem) Limit(pid int) (uint64, error) {
	f.limitReads[pid]++
	return f.limits[pid], nil
}

func (f *fakeSystem) FDTypes(pid int) ([NumTypes]int64, error) {
	f.typeReads[pid]++
	return f.types[pid], nil
}

func (f *fakeSystem) PIDs() ([]int, error) { return f.pids, nil }

func (f *fakeSystem) FDCount(pid int) (int64, error) { return f.fdCounts[pid], nil }

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func rowOf(t *testing.T, rows []Row, pid int) Row {
	t.Helper()
	for _, r := range rows {
		if r.PID == pid {
			return r
		}
	}
	t.Fatalf("no row for pid %d in %v", pid, pids(rows))
	return Row{}
}

func pids(rows []Row) []int {
	var out []int
	for _, r := range rows {
		out = append(out, r.PID)
	}
	return out
}

func TestRatesAreTheCountersDifferencesOverTheTimeBetweenRefreshes(t *testing.T) {
	sys := newFake()
	sys.limits[10] = 100
	m := NewModel(sys)
	m.Update(at(0), []Sample{{PID: 10, StartNs: 1, Comm: "a", OpenFDs: 10, Opened: 5, Closed: 1}}, nil)
	r := rowOf(t, m.Rows(0), 10)
	if r.Rates != nil {
		t.Errorf("rates on the first refresh: %+v", r.Rates)
	}
	if r.Limit != 100 || r.Utilization != 0.1 {
		t.Errorf("limit %d utilization %v, want 100 and 0.1", r.Limit, r.Utilization)
	}
	m.Update(at(0.5), []Sample{{PID: 10, StartNs: 1, Comm: "a", OpenFDs: 15, Opened: 25, Closed: 16, EMFILE: 3, ENFILE: 1, Refused: 2}}, nil)
	r = rowOf(t, m.Rows(0), 10)
	want := Rates{Opened: 40, Closed: 30, Growth: 10, EMFILE: 6, ENFILE: 2, Refused: 4}
	if r.Rates == nil || *r.Rates != want {
		t.Errorf("rates %+v, want %+v", r.Rates, want)
	}
	if !r.Time.Equal(at(0.5)) {
		t.Errorf("row time %v, want the refresh's", r.Time)
	}
}

func TestASeededProcessStaysWithZeroRatesUntilItExits(t *testing.T) {
	sys := newFake()
	sys.pids = []int{7, 8}
	m := NewModel(sys)
	m.Seed(at(0), []Sample{{PID: 7, Comm: "idle", OpenFDs: 4}, {PID: 8, Comm: "gone", OpenFDs: 3}})
	m.Update(at(0), nil, nil)
	if got := pids(m.Rows(0)); len(got) != 2 {
		t.Fatalf("rows %v, want the two seeded processes", got)
	}
	sys.pids = []int{7}
	m.Update(at(1), nil, nil)
	rows := m.Rows(0)
	if got := pids(rows); !slices.Equal(got, []int{7}) {
		t.Fatalf("rows %v, want only the live one", got)
	}
	if r := rows[0]; r.OpenFDs != 4 || r.Rates == nil || *r.Rates != (Rates{}) {
		t.Errorf("idle row %+v rates %+v, want 4 fds and zero rates", r, r.Rates)
	}
}

func TestAProcessTheKernelSeesForTheFirstTimeCountsFromZeroSinceTheLastRefresh(t *testing.T) {
	sys := newFake()
	sys.pids = []int{7}
	m := NewModel(sys)
	m.Seed(at(0), []Sample{{PID: 7, Comm: "w", OpenFDs: 4}})
	m.Update(at(0), nil, nil)
	m.Update(at(2), []Sample{{PID: 7, StartNs: 9, Comm: "w", OpenFDs: 8, Opened: 6, Closed: 2}}, nil)
	r := rowOf(t, m.Rows(0), 7)
	if r.OpenFDs != 8 || r.Rates == nil || r.Rates.Opened != 3 || r.Rates.Closed != 1 || r.Rates.Growth != 2 {
		t.Errorf("row %+v rates %+v, want 8 fds, 3 opened/s, 1 closed/s", r, r.Rates)
	}
	// A new process on a reused pid starts over.
	m.Update(at(3), []Sample{{PID: 7, StartNs: 10, Comm: "w", OpenFDs: 3, Opened: 1}}, nil)
	r = rowOf(t, m.Rows(0), 7)
	if r.Rates == nil || r.Rates.Opened != 1 || r.Rates.Closed != 0 {
		t.Errorf("reused pid: rates %+v, want 1 opened/s from zero", r.Rates)
	}
}

func TestAnExitIsShownOnceWithItsFinalCounters(t *testing.T) {
	sys := newFake()
	sys.limits[5] = 50
	m := NewModel(sys)
	m.Update(at(0), []Sample{{PID: 5, StartNs: 1, Comm: "x", OpenFDs: 10, Opened: 10}}, nil)
	m.Rows(0)
	// The map no longer has it; its exit record comes a refresh later.
	m.Update(at(1), nil, nil)
	if rows := m.Rows(0); len(rows) != 0 {
		t.Errorf("a process gone from the map is still shown: %v", pids(rows))
	}
	exit := Sample{PID: 5, Comm: "x", OpenFDs: 12, Opened: 14, Closed: 2, EMFILE: 1, Limit: 50}
	m.Update(at(2), nil, []Sample{exit})
	rows := m.Rows(0)
	if len(rows) != 1 || !rows[0].Exited {
		t.Fatalf("rows %+v, want one exited", rows)
	}
	r := rows[0]
	if r.OpenFDs != 12 || r.Limit != 50 || r.Utilization != 12.0/50 {
		t.Errorf("exit row %+v", r)
	}
	// Against the last counters the map had, 2s before.
	if want := (Rates{Opened: 2, Closed: 1, Growth: 1, EMFILE: 0.5}); r.Rates == nil || *r.Rates != want {
		t.Errorf("exit rates %+v, want %+v", r.Rates, want)
	}
	m.Update(at(3), nil, nil)
	if rows := m.Rows(0); len(rows) != 0 {
		t.Errorf("the exit is shown twice: %+v", rows)
	}
}

func TestACounterReadJustBeforeTheExitIsNotShownNextToIt(t *testing.T) {
	m := NewModel(newFake())
	m.Update(at(0), nil, nil)
	// Born and gone between refreshes, read in the map just before.
	m.Update(at(1), []Sample{{PID: 6, StartNs: 3, Comm: "short", OpenFDs: 4, Opened: 1}},
		[]Sample{{PID: 6, Comm: "short", OpenFDs: 4, Opened: 2}})
	rows := m.Rows(0)
	if len(rows) != 1 || !rows[0].Exited || rows[0].Rates.Opened != 2 {
		t.Errorf("rows %+v, want the exit alone, 2 opened/s", rows)
	}
}

func TestAProcessThatLeftTheMapWithoutAnExitRecordGoesAfterTheGrace(t *testing.T) {
	m := NewModel(newFake())
	m.Update(at(0), []Sample{{PID: 5, StartNs: 1, Comm: "x"}}, nil)
	m.Update(at(1), nil, nil)
	m.Update(at(1+goneGrace.Seconds()+0.1), nil, nil)
	if len(m.procs) != 0 {
		t.Errorf("still held: %v", m.procs)
	}
}

func TestSortKeysOrderTheRows(t *testing.T) {
	sys := newFake()
	for pid, limit := range map[int]uint64{1: 100, 2: 100, 3: 1000, 4: 64} {
		sys.limits[pid] = limit
	}
	m := NewModel(sys)
	first := []Sample{
		{PID: 1, StartNs: 1, Comm: "hold", OpenFDs: 90},
		{PID: 2, StartNs: 1, Comm: "warn", OpenFDs: 75},
		{PID: 3, StartNs: 1, Comm: "grow", OpenFDs: 10},
		{PID: 4, StartNs: 1, Comm: "fail", OpenFDs: 40},
	}
	m.Update(at(0), first, nil)
	second := slices.Clone(first)
	second[2].Opened, second[2].OpenFDs = 50, 60
	second[3].EMFILE = 10
	m.Update(at(1), second, nil)
	for _, tc := range []struct {
		key  SortKey
		want []int
	}{
		{ByUtilization, []int{1, 2, 4, 3}},
		{ByGrowth, []int{3, 1, 2, 4}},
		{ByErrors, []int{4, 1, 2, 3}},
		{ByOpenFDs, []int{1, 2, 3, 4}},
		{ByPID, []int{1, 2, 3, 4}},
	} {
		m.Sort = tc.key
		if got := pids(m.Rows(0)); !slices.Equal(got, tc.want) {
			t.Errorf("sorted by %v: %v, want %v", tc.key, got, tc.want)
		}
	}
	m.Sort = ByUtilization
	if got := pids(m.Rows(2)); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("the first two: %v", got)
	}
	if m.Total != 4 || m.Matched != 4 {
		t.Errorf("total %d matched %d, want 4 and 4", m.Total, m.Matched)
	}
	if m.Sums.EMFILE != 10 || m.Sums.Opened != 50 {
		t.Errorf("sums %+v, want 10 EMFILE/s and 50 opened/s", m.Sums)
	}
}

func TestTheFilterKeepsTheNamesThatHoldItInAnyCase(t *testing.T) {
	m := NewModel(newFake())
	m.Update(at(0), []Sample{{PID: 1, Comm: "nginx"}, {PID: 2, Comm: "Nginx-worker"}, {PID: 3, Comm: "postgres"}}, nil)
	m.Sort = ByPID
	m.Filter = "NGINX"
	if got := pids(m.Rows(0)); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("filter nginx: %v", got)
	}
	m.Filter = ""
	m.Match = func(pid int, comm string) bool { return pid != 1 }
	if got := pids(m.Rows(0)); !slices.Equal(got, []int{2, 3}) {
		t.Errorf("match: %v", got)
	}
	if m.Total != 3 || m.Matched != 2 {
		t.Errorf("total %d matched %d", m.Total, m.Matched)
	}
}

func TestTheLimitIsReadAgainOnlyForTheRowsShown(t *testing.T) {
	sys := newFake()
	sys.limits[1], sys.limits[2] = 10, 1000
	m := NewModel(sys)
	samples := []Sample{{PID: 1, StartNs: 1, Comm: "a", OpenFDs: 9}, {PID: 2, StartNs: 1, Comm: "b", OpenFDs: 9}}
	for i := range 10 {
		m.Update(at(float64(i)), samples, nil)
		m.Rows(1)
	}
	if sys.limitReads[1] < 3 || sys.limitReads[2] != 1 {
		t.Errorf("limit reads %v: want the shown pid 1 every few seconds, the hidden pid 2 once", sys.limitReads)
	}
	if sys.typeReads[1] != 1 || sys.typeReads[2] != 0 {
		t.Errorf("fd type reads %v: want pid 1 once, pid 2 never", sys.typeReads)
	}
	// A new name (an exec) may come with a new limit.
	samples[1].Comm = "b2"
	sys.limits[2] = 10
	m.Update(at(10), samples, nil)
	if r := rowOf(t, m.Rows(0), 2); r.Limit != 10 {
		t.Errorf("limit after exec %d, want 10", r.Limit)
	}
}

func TestTheTopTypeAddsWhatOpenedAndClosedSinceProcWasRead(t *testing.T) {
	sys := newFake()
	sys.types[1] = [NumTypes]int64{1: 5, 2: 3} // 5 files, 3 sockets
	m := NewModel(sys)
	s := Sample{PID: 1, StartNs: 1, Comm: "a", OpenFDs: 8}
	s.OpenedByType[2] = 100 // before it was first shown: in /proc's count
	m.Update(at(0), []Sample{s}, nil)
	if r := rowOf(t, m.Rows(0), 1); r.TopType != "file" || r.TopTypeFDs != 5 {
		t.Errorf("top type %s %d, want file 5", r.TopType, r.TopTypeFDs)
	}
	s.OpenedByType[2] += 4
	s.ClosedByType[1] += 1
	m.Update(at(1), []Sample{s}, nil)
	if r := rowOf(t, m.Rows(0), 1); r.TopType != "socket" || r.TopTypeFDs != 7 {
		t.Errorf("top type %s %d, want socket 7", r.TopType, r.TopTypeFDs)
	}
}

func TestParseSortKeyTakesAUniquePrefix(t *testing.T) {
	for in, want := range map[string]int{"utilization": 0, "util": 0, "u": 0, "g": 1, "errors": 2, "fds": 3, "pid": 4, "": -1, "x": -1} {
		k, ok := ParseSortKey(in)
		if (want < 0 && ok) || (want >= 0 && (!ok || int(k) != want)) {
			t.Errorf("ParseSortKey(%q) = %v, %v; want %d", in, k, ok, want)
		}
	}
}

func TestARecordMatchesTheSchema(t *testing.T) {
	sys := newFake()
	sys.limits[1] = Unlimited
	sys.types[1] = [NumTypes]int64{1: 2}
	m := NewModel(sys)
	s := Sample{PID: 1, StartNs: 1, Comm: "a", OpenFDs: 2}
	m.Update(at(0), []Sample{s}, nil)
	s.Opened, s.OpenedByType[1] = 3, 3
	s.Errors = map[string]map[string]uint64{"openat": {"EMFILE": 1}}
	m.Update(at(1), []Sample{s}, []Sample{{PID: 2, Comm: "b", Limit: 1024, OpenFDs: 3}})
	rows := m.Rows(0)
	if len(rows) != 2 {
		t.Fatalf("rows %v", pids(rows))
	}
	for _, r := range rows {
		b, err := json.Marshal(r.Record())
		if err != nil {
			t.Fatal(err)
		}
		if err := events.Validate(b); err != nil {
			t.Errorf("%v\n%s", err, b)
		}
		var back map[string]any
		json.Unmarshal(b, &back)
		if r.PID == 1 && (back["top_fd_type"] != "file" || back["rates"] == nil || back["fd_limit"] != float64(math.MaxUint64)) {
			t.Errorf("record %s", b)
		}
	}
}

func TestACountTheKernelTookBelowZeroIsProcs(t *testing.T) {
	sys := newFake()
	sys.limits[1], sys.fdCounts[1] = 100, 12
	m := NewModel(sys)
	m.Update(at(0), []Sample{{PID: 1, StartNs: 1, Comm: "bpfuser", OpenFDs: -3}}, nil)
	if r := rowOf(t, m.Rows(0), 1); r.OpenFDs != 12 || r.Utilization != 0.12 {
		t.Errorf("row %d fds, utilization %v; want /proc's 12 and 0.12", r.OpenFDs, r.Utilization)
	}
}
