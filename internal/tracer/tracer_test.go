package tracer

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/stacks"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// Config is the kernel's: the tests say what to trace.
type Config = loader.Config

// load starts the tracer or fails: on a root machine a kernel that cannot
// load the programs is a failure, never a skip.
func load(t *testing.T, cfg Config) *Tracer {
	t.Helper()
	testutil.RequireRoot(t)
	tr, err := Start(cfg)
	if err != nil {
		t.Fatalf("loading the tracer: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// stacksHere says whether this kernel takes user stacks; where it does
// not, it checks that asking for them is refused with words that say why.
func stacksHere(t *testing.T) bool {
	t.Helper()
	testutil.RequireRoot(t)
	if loader.ProbeFeatures().StacksError() == nil {
		return true
	}
	_, err := Start(Config{CaptureStacks: true})
	if !errors.Is(err, loader.ErrNoStacks) || !strings.Contains(err.Error(), "bpf_loop (Linux 5.17)") {
		t.Fatalf("stacks on a kernel without them: got %v, want an error naming bpf_loop", err)
	}
	return false
}

// followFdops traces the children of the test and starts fdops as one.
func followFdops(t *testing.T, cfg Config) (*Tracer, *testutil.Workload, *recorder) {
	t.Helper()
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fdops", "-static", "-pthread")
	cfg.FollowChildrenOf = os.Getpid()
	tr := load(t, cfg)
	w := testutil.StartFdops(t, bin)
	if err := tr.Track(w.PID); err != nil {
		t.Fatal(err)
	}
	return tr, w, &recorder{}
}

// recorder keeps the records the tracer hands out.
type recorder struct{ records []events.Record }

func (r *recorder) add(rec events.Record) error {
	r.records = append(r.records, events.Value(rec))
	return nil
}

func (r *recorder) drain(t *testing.T, tr *Tracer) {
	t.Helper()
	if err := tr.Drain(r.add); err != nil {
		t.Fatal(err)
	}
}

// fdEvent is the part of an open/close record a test can predict.
type fdEvent struct {
	kind    string
	syscall string
	fd      int
	fdType  string
	family  string
}

func (e fdEvent) String() string {
	return fmt.Sprintf("%s %s fd=%d %s %s", e.kind, e.syscall, e.fd, e.fdType, e.family)
}

func (r *recorder) fdEvents(pid int) []fdEvent {
	var out []fdEvent
	for _, rec := range r.records {
		switch e := rec.(type) {
		case events.Open:
			if e.PID == pid {
				out = append(out, fdEvent{"open", e.Syscall, e.FD, e.FDType, e.Family})
			}
		case events.Close:
			if e.PID == pid {
				out = append(out, fdEvent{"close", e.Syscall, e.FD, e.FDType, ""})
			}
		}
	}
	return out
}

func (r *recorder) errorsOf(pid int) []events.Error {
	var out []events.Error
	for _, rec := range r.records {
		if e, ok := rec.(events.Error); ok && e.PID == pid {
			out = append(out, e)
		}
	}
	return out
}

// assertMatchesProc checks fdtrace's count and live-fd set of pid against
// /proc/PID/fd, and each live fd's type against its /proc link.
func assertMatchesProc(t *testing.T, tr *Tracer, pid int) {
	t.Helper()
	if _, err := matchesProc(tr, pid); err != nil {
		t.Fatal(err)
	}
}

// matchesProc is assertMatchesProc's check; it returns the live fds.
func matchesProc(tr *Tracer, pid int) (map[int]FD, error) {
	want, err := procfs.FDs(pid)
	if err != nil {
		return nil, err
	}
	slices.Sort(want)
	live, err := tr.LiveFDs(pid)
	if err != nil {
		return nil, err
	}
	got := slices.Sorted(maps.Keys(live))
	if !slices.Equal(got, want) {
		return nil, fmt.Errorf("live fds of %d: fdtrace has %d, /proc %d; only fdtrace's: %v; only /proc's: %v",
			pid, len(got), len(want), firstFew(without(got, want)), firstFew(without(want, got)))
	}
	p, ok, err := tr.Process(pid)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no counters for pid %d", pid)
	}
	if p.OpenFDs != int64(len(want)) {
		return nil, fmt.Errorf("open_fds of %d: fdtrace says %d, /proc has %d", pid, p.OpenFDs, len(want))
	}
	var errs []error
	for fd, rec := range live {
		target, err := procfs.FDTarget(pid, fd)
		if err != nil {
			return nil, err
		}
		if wantType := procfs.TargetType(target); rec.Type != wantType {
			errs = append(errs, fmt.Errorf("fd %d (%s): fdtrace says %s, /proc says %s", fd, target, rec.Type, wantType))
		}
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more", len(errs)-10))
	}
	return live, errors.Join(errs...)
}

// without is the sorted a less the sorted b.
func without(a, b []int) []int {
	var out []int
	for _, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			out = append(out, x)
		}
	}
	return out
}

// firstFew shortens a list for a failure message: a table of thousands
// of fds would hide the rest of the test's output.
func firstFew(fds []int) string {
	const few = 20
	if len(fds) <= few {
		return fmt.Sprint(fds)
	}
	return fmt.Sprintf("%v and %d more", fds[:few], len(fds)-few)
}

func TestEveryFDCreatingSyscallGivesExactlyItsOpenAndCloseRecords(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	tmp := filepath.Join(t.TempDir(), "created")
	var want []fdEvent
	open := func(sc string, fd int, typ, family string) {
		want = append(want, fdEvent{"open", sc, fd, typ, family})
	}
	closed := func(sc string, fd int, typ string) {
		want = append(want, fdEvent{"close", sc, fd, typ, ""})
	}

	f1 := w.Do(t, "open /dev/null")[0]
	open("openat", f1, "file", "")
	f2 := w.Do(t, "open /dev/null cloexec")[0]
	open("openat", f2, "file", "")
	f3 := w.Do(t, "sysopen /dev/null")[0]
	open("open", f3, "file", "")
	f4 := w.Do(t, "creat %s", tmp)[0]
	open("creat", f4, "file", "")
	s1 := w.Do(t, "socket inet stream")[0]
	open("socket", s1, "socket", "AF_INET")
	s2 := w.Do(t, "socket unix dgram")[0]
	open("socket", s2, "socket", "AF_UNIX")
	s3 := w.Do(t, "socket inet6 stream")[0]
	open("socket", s3, "socket", "AF_INET6")
	p := w.Do(t, "pipe")
	open("pipe2", p[0], "pipe", "")
	open("pipe2", p[1], "pipe", "")
	p0 := w.Do(t, "pipe0")
	open("pipe", p0[0], "pipe", "")
	open("pipe", p0[1], "pipe", "")
	q := w.Do(t, "socketpair")
	open("socketpair", q[0], "socket", "AF_UNIX")
	open("socketpair", q[1], "socket", "AF_UNIX")
	open("epoll_create1", w.Do(t, "epoll")[0], "epoll", "")
	open("epoll_create", w.Do(t, "epollold")[0], "epoll", "")
	open("eventfd2", w.Do(t, "eventfd")[0], "eventfd", "")
	open("timerfd_create", w.Do(t, "timerfd")[0], "timerfd", "")
	open("signalfd4", w.Do(t, "signalfd")[0], "signalfd", "")
	open("inotify_init1", w.Do(t, "inotify")[0], "inotify", "")
	m := w.Do(t, "memfd")[0]
	open("memfd_create", m, "memfd", "")
	open("pidfd_open", w.Do(t, "pidfd")[0], "pidfd", "")
	l := w.Do(t, "listen")
	open("socket", l[0], "socket", "AF_INET")
	open("socket", w.Do(t, "connect %d", l[1])[0], "socket", "AF_INET")
	open("accept4", w.Do(t, "accept %d", l[0])[0], "socket", "AF_INET")
	open("socket", w.Do(t, "connect %d", l[1])[0], "socket", "AF_INET")
	open("accept", w.Do(t, "acceptold %d", l[0])[0], "socket", "AF_INET")
	open("recvmsg", w.Do(t, "passfd %d %d %d", q[0], q[1], f2)[0], "file", "")
	d1 := w.Do(t, "dup %d", f1)[0]
	open("dup", d1, "file", "")
	w.Do(t, "dup2 %d %d", s1, f3) // over an open fd: closes it first
	closed("dup2", f3, "file")
	open("dup2", f3, "socket", "AF_INET")
	w.Do(t, "dup2 %d %d", f1, f1) // changes nothing
	open("dup3", w.Do(t, "dup3 %d 50", p[0])[0], "pipe", "")
	open("fcntl", w.Do(t, "fcntl %d 60", m)[0], "memfd", "")
	w.Do(t, "close %d", f1)
	closed("close", f1, "file")
	if _, errno := w.Try(t, "close 999"); errno == 0 {
		t.Fatal("closing fd 999 succeeded")
	}
	w.Do(t, "closerange 50 60")
	closed("close_range", 50, "pipe")
	closed("close_range", 60, "memfd")

	rec.drain(t, tr)
	got := rec.fdEvents(w.PID)
	if !slices.Equal(got, want) {
		t.Errorf("records differ from the syscalls made:\n got  %v\n want %v", got, want)
	}
	assertMatchesProc(t, tr, w.PID)

	opens, closes := 0, 0
	for _, e := range want {
		if e.kind == "open" {
			opens++
		} else {
			closes++
		}
	}
	pr, _, err := tr.Process(w.PID)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Opened != uint64(opens) || pr.Closed != uint64(closes) {
		t.Errorf("counters: opened %d closed %d, want %d and %d", pr.Opened, pr.Closed, opens, closes)
	}
}

// close_range over a table of thousands of fds, as stress-ng's sockfd
// client closes what it received: every record goes and every close
// counts, past the 4096 fds the compat programs once swept.
func TestACloseRangeOfThousandsOfFDsLeavesNoRecord(t *testing.T) {
	tr, w, rec := followFdops(t, Config{ErrorsOnly: true})
	const limit = 12000
	w.Do(t, "limit %d", limit)
	first := w.Do(t, "open /dev/null")[0]
	fill := w.Do(t, "fill")
	if fill[1] != 24 {
		t.Fatalf("fill stopped with errno %d, want EMFILE", fill[1])
	}
	closed := func() uint64 {
		rec.drain(t, tr)
		p, _, err := tr.Process(w.PID)
		if err != nil {
			t.Fatal(err)
		}
		return p.Closed
	}
	var want uint64
	for _, fd := range testutil.ProcFDs(t, w.PID) {
		if fd >= first {
			want++
		}
	}
	before := closed()
	w.Do(t, "closerange %d %d", first, limit)
	if got := closed() - before; got != want {
		t.Errorf("close_range closed %d fds, want %d", got, want)
	}
	assertMatchesProc(t, tr, w.PID)
}

func TestExhaustingTheFDLimitCountsEMFILEPerSyscallAndRefusedConnections(t *testing.T) {
	tr, w, rec := followFdops(t, Config{ErrorsOnly: true})
	l := w.Do(t, "listen")
	w.Do(t, "connect %d", l[1]) // queued, waiting for an accept
	const limit = 16
	w.Do(t, "limit %d", limit)
	fill := w.Do(t, "fill") // opens until openat fails
	if fill[1] != 24 {
		t.Fatalf("fill stopped with errno %d, want EMFILE", fill[1])
	}
	accept := fmt.Sprintf("accept %d", l[0])
	for _, cmd := range []string{"socket inet stream", "pipe", "epoll", accept, accept} {
		if _, errno := w.Try(t, "%s", cmd); errno != 24 {
			t.Fatalf("%s: errno %d, want EMFILE", cmd, errno)
		}
	}
	rec.drain(t, tr)

	if got := rec.fdEvents(w.PID); len(got) != 0 {
		t.Errorf("--errors-only sent %d open/close records", len(got))
	}
	// Fds inherited above the limit count too: /proc says how many.
	open := int64(len(testutil.ProcFDs(t, w.PID)))
	wantSyscalls := []string{"openat", "socket", "pipe2", "epoll_create1", "accept4", "accept4"}
	errs := rec.errorsOf(w.PID)
	var gotSyscalls []string
	for _, e := range errs {
		gotSyscalls = append(gotSyscalls, e.Syscall)
		if e.Errno != "EMFILE" || e.OpenFDs != open || e.FDLimit != limit {
			t.Errorf("error record %+v: want EMFILE with open_fds=%d fd_limit=%d", e, open, limit)
		}
	}
	if !slices.Equal(gotSyscalls, wantSyscalls) {
		t.Errorf("error records for %v, want %v", gotSyscalls, wantSyscalls)
	}

	p, _, err := tr.Process(w.PID)
	if err != nil {
		t.Fatal(err)
	}
	wantErrors := map[string]map[string]uint64{
		"openat": {"EMFILE": 1}, "socket": {"EMFILE": 1}, "pipe2": {"EMFILE": 1},
		"epoll_create1": {"EMFILE": 1}, "accept4": {"EMFILE": 2},
	}
	if fmt.Sprint(p.Errors) != fmt.Sprint(wantErrors) {
		t.Errorf("errors %v, want %v", p.Errors, wantErrors)
	}
	if p.EMFILE != 6 || p.RefusedConnections != 2 || p.FDLimit != limit || p.Utilization != float64(open)/limit {
		t.Errorf("emfile=%d refused=%d limit=%d utilization=%v, want 6, 2, %d, %v",
			p.EMFILE, p.RefusedConnections, p.FDLimit, p.Utilization, limit, float64(open)/limit)
	}
	if p.Opened != uint64(2+fill[0]) {
		t.Errorf("opened %d, want %d (listen, connect and the fill)", p.Opened, 2+fill[0])
	}
	assertMatchesProc(t, tr, w.PID)
}

func TestThreadsShareOneCountPerProcess(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	tid := w.Do(t, "thread 3")[0] // opens 3, closes the first
	rec.drain(t, tr)
	if tid == w.PID {
		t.Fatal("the thread has the process's id")
	}
	var opens, closes int
	for _, r := range rec.records {
		switch e := r.(type) {
		case events.Open:
			if e.TID == tid && e.PID == w.PID {
				opens++
			}
		case events.Close:
			if e.TID == tid && e.PID == w.PID {
				closes++
			}
		}
	}
	if opens != 3 || closes != 1 {
		t.Errorf("thread %d: %d opens, %d closes; want 3 and 1", tid, opens, closes)
	}
	assertMatchesProc(t, tr, w.PID)
}

func TestForkedChildInheritsTheTableAndCountsOnItsOwn(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	f := w.Do(t, "open /dev/null")[0]
	w.Do(t, "pipe")
	child := w.Do(t, "fork %d", f)[0] // child: opens one, closes f, stops
	rec.drain(t, tr)
	assertMatchesProc(t, tr, w.PID)
	assertMatchesProc(t, tr, child)
	live, err := tr.LiveFDs(child)
	if err != nil {
		t.Fatal(err)
	}
	inherited := 0
	for _, fd := range live {
		if fd.Syscall == "pipe2" {
			inherited++
		}
	}
	if inherited != 2 {
		t.Errorf("child has %d fds recorded as made by the parent's pipe2, want 2", inherited)
	}
	p, _, err := tr.Process(child)
	if err != nil {
		t.Fatal(err)
	}
	if p.Opened != 1 || p.Closed != 1 {
		t.Errorf("child opened %d closed %d, want 1 and 1", p.Opened, p.Closed)
	}
	w.Do(t, "reap %d", child)
	rec.drain(t, tr)
	if live, _ := tr.LiveFDs(child); len(live) != 0 {
		t.Errorf("records of the exited child remain: %v", live)
	}
	var exits []events.Process
	for _, r := range rec.records {
		if p, ok := r.(events.Process); ok && p.PID == child {
			exits = append(exits, p)
		}
	}
	if len(exits) != 1 || !exits[0].Exited || exits[0].Opened != 1 {
		t.Errorf("exit records of the child: %+v, want one with exited and opened=1", exits)
	}
}

// A process that shares its parent's table (CLONE_FILES, not a thread)
// and exits leaves the fd it made in the table: its record goes to the
// parent, which counts it.
func TestAProcessSharingItsParentsTableLeavesItsFDsToTheParent(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	// The second time, the child's fd has the number of the first, whose
	// close left its tombstone in the parent's records.
	for range 2 {
		got := w.Do(t, "clonefiles")
		fd, child := got[0], got[1]
		rec.drain(t, tr)
		assertMatchesProc(t, tr, w.PID)
		live, err := tr.LiveFDs(w.PID)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := live[fd]; !ok || r.Syscall != "openat" || r.Type != "file" {
			t.Errorf("parent's record of fd %d, made by its CLONE_FILES child: %+v, want an openat file", fd, r)
		}
		if live, _ := tr.LiveFDs(child); len(live) != 0 {
			t.Errorf("records of the exited child remain: %v", live)
		}
		w.Do(t, "close %d", fd)
		rec.drain(t, tr)
		assertMatchesProc(t, tr, w.PID)
	}
}

// A process whose child shares its table exits as the child does: the
// child's exit hands its records to a parent whose own exit may have
// swept its records already. None outlive the processes (they would pass
// for the fds of the next process of that pid); fdops answers once it
// reaped them all.
func TestNoRecordOutlivesProcessesExitingWithASharedTable(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	w.Do(t, "sharedexits 200")
	rec.drain(t, tr)
	var left []FD
	tr.EachFD(func(fd FD) {
		if fd.PID != w.PID {
			left = append(left, fd)
		}
	})
	if len(left) > 0 {
		t.Errorf("%d records of exited processes remain, such as %+v", len(left), left[0])
	}
}

func TestExecDropsCloseOnExecFDsWithARecordEach(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	keep := w.Do(t, "open /dev/null")[0]
	gone1 := w.Do(t, "open /dev/null cloexec")[0]
	gone := w.Do(t, "pipe") // pipe2(O_CLOEXEC)
	w.Do(t, "exec")         // answers "ok exec" from the new image
	rec.drain(t, tr)
	var execCloses []int
	for _, e := range rec.fdEvents(w.PID) {
		if e.kind == "close" && e.syscall == "execve" {
			execCloses = append(execCloses, e.fd)
		}
	}
	slices.Sort(execCloses)
	want := []int{gone1, gone[0], gone[1]}
	if !slices.Equal(execCloses, want) {
		t.Errorf("exec closed %v, want %v", execCloses, want)
	}
	assertMatchesProc(t, tr, w.PID)
	if _, ok := mustLive(t, tr, w.PID)[keep]; !ok {
		t.Errorf("fd %d without O_CLOEXEC lost its record at exec", keep)
	}
}

func mustLive(t *testing.T, tr *Tracer, pid int) map[int]FD {
	t.Helper()
	live, err := tr.LiveFDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	return live
}

func TestAttachingToARunningProcessSeedsItsFDs(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fdops", "-static", "-pthread")
	w := testutil.StartFdops(t, bin)
	before := []int{w.Do(t, "open /dev/null")[0], w.Do(t, "socket inet stream")[0], w.Do(t, "epoll")[0]}
	before = append(before, w.Do(t, "pipe")...)
	tr := load(t, Config{PIDs: []int{w.PID}})
	live := mustLive(t, tr, w.PID)
	for _, fd := range before {
		if rec, ok := live[fd]; !ok || !rec.Seeded || rec.Syscall != "preexisting" {
			t.Errorf("fd %d: record %+v, want a seeded preexisting one", fd, rec)
		}
	}
	if !live[before[3]].Cloexec || live[before[0]].Cloexec {
		t.Errorf("close-on-exec flags of seeded fds are wrong: %+v", live)
	}
	// The first event makes the kernel count the table: exact from there.
	rec := &recorder{}
	w.Do(t, "close %d", before[1])
	w.Do(t, "open /dev/null")
	rec.drain(t, tr)
	assertMatchesProc(t, tr, w.PID)
	if got := rec.fdEvents(w.PID); len(got) != 2 || got[0].fdType != "socket" {
		t.Errorf("records %v, want the close of the seeded socket and one open", got)
	}
}

func TestAProcessTracedByPIDOnlyIsTraced(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fdops", "-static", "-pthread")
	traced := testutil.StartFdops(t, bin)
	other := testutil.StartFdops(t, bin)
	tr := load(t, Config{PIDs: []int{traced.PID}})
	rec := &recorder{}
	traced.Do(t, "open /dev/null")
	other.Do(t, "open /dev/null")
	rec.drain(t, tr)
	if n := len(rec.fdEvents(traced.PID)); n != 1 {
		t.Errorf("traced process: %d records, want 1", n)
	}
	if n := len(rec.fdEvents(other.PID)); n != 0 {
		t.Errorf("untraced process: %d records, want 0", n)
	}
}

func TestTracerLeaksNoFDsAndClosesTwice(t *testing.T) {
	testutil.RequireRoot(t)
	count := func() int { return len(testutil.ProcFDs(t, os.Getpid())) }
	before := count()
	for range 3 {
		tr, err := Start(Config{PIDs: []int{os.Getpid()}})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Drain(func(events.Record) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		if err := tr.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	if after := count(); after != before {
		t.Errorf("fdtrace's own fds: %d before, %d after three load/close cycles", before, after)
	}
}

func TestACommFilterFollowsTheNameAcrossExec(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fdops", "-static", "-pthread")
	tr := load(t, Config{Comm: "fdops"})
	w := testutil.StartFdops(t, bin)
	rec := &recorder{}
	w.Do(t, "open /dev/null")
	rec.drain(t, tr)
	assertMatchesProc(t, tr, w.PID)
	w.Do(t, "exec") // via /proc/self/exe: the new name is "exe"
	w.Do(t, "open /dev/null")
	rec.drain(t, tr)
	if got := rec.fdEvents(w.PID); len(got) != 1 {
		t.Errorf("records %v, want only the open made as fdops", got)
	}
	if _, ok, _ := tr.Process(w.PID); ok {
		t.Error("counters kept for a process that no longer has the traced name")
	}
	if live := mustLive(t, tr, w.PID); len(live) != 0 {
		t.Errorf("records kept for a process that no longer has the traced name: %v", live)
	}
}

func TestABTFFileCanStandInForTheKernelsOwn(t *testing.T) {
	tr := load(t, Config{PIDs: []int{os.Getpid()}, BTFPath: "/sys/kernel/btf/vmlinux"})
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Start(Config{PIDs: []int{os.Getpid()}, BTFPath: "/no/such/btf"})
	if err == nil || !strings.Contains(err.Error(), "reading BTF from /no/such/btf") {
		t.Errorf("a missing BTF file: %v", err)
	}
}

// The busy thread's syscalls race the attach and the seeding from /proc.
// The main thread opens once the process is counted: two threads making
// fds as their process is first seen can count one twice (see
// docs/limitations.md), which is not what this test is about.
func TestAttachingWhileAProcessOpensAndClosesFastKeepsItsCountExact(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fdops", "-static", "-pthread")
	w := testutil.StartFdops(t, bin)
	w.Do(t, "busy") // a thread opens and closes /dev/null in a loop
	tr := load(t, Config{PIDs: []int{w.PID}})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, ok, err := tr.Process(w.PID); err != nil || ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("in 10 s, the busy thread's syscalls did not count the process")
		}
		time.Sleep(time.Millisecond)
	}
	w.Do(t, "open /dev/null")
	w.Do(t, "stop")
	(&recorder{}).drain(t, tr)
	assertMatchesProc(t, tr, w.PID)
}

func TestPidfdsFromCloneAndFdsAfterCredentialsAreCounted(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	pidfd := w.Do(t, "clonepidfd")[0]
	q := w.Do(t, "socketpair")
	w.Do(t, "passcred %d", q[1])
	got := w.Do(t, "passfd %d %d 0", q[0], q[1])[0]
	rec.drain(t, tr)
	var opens []fdEvent
	for _, e := range rec.fdEvents(w.PID) {
		if e.fd == pidfd || e.fd == got {
			opens = append(opens, e)
		}
	}
	want := []fdEvent{{"open", "clone", pidfd, "pidfd", ""}, {"open", "recvmsg", got, "pipe", ""}}
	if !slices.Equal(opens, want) {
		t.Errorf("records %v, want %v", opens, want)
	}
	assertMatchesProc(t, tr, w.PID)
}

func TestACommFilterGoesByTheProcessNameNotTheThreadName(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fdops", "-static", "-pthread")
	tr := load(t, Config{Comm: "fdops"})
	w := testutil.StartFdops(t, bin)
	w.Do(t, "named 4") // a thread named worker-1 opens 4 files
	(&recorder{}).drain(t, tr)
	assertMatchesProc(t, tr, w.PID)
}

func TestFailuresThatAreNotFailuresAreNotCounted(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	if _, errno := w.Try(t, "open /no/such/file"); errno != 2 {
		t.Fatalf("open: errno %d, want ENOENT", errno)
	}
	rec.drain(t, tr)
	if errs := rec.errorsOf(w.PID); len(errs) != 0 {
		t.Errorf("ENOENT gave error records by default: %v", errs)
	}
	p, _, err := tr.Process(w.PID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Errors["openat"]["ENOENT"] != 1 {
		t.Errorf("errors %v, want openat ENOENT counted once", p.Errors)
	}
}

func TestStacksOfExitedProcessesAreCollected(t *testing.T) {
	if !stacksHere(t) {
		return
	}
	// A shell of our own name, whose subshells (forks, same name) each
	// open a file: one stack per process, as the key hashes the process.
	sh := filepath.Join(t.TempDir(), "fdgc")
	b, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sh, b, 0o755); err != nil {
		t.Fatal(err)
	}
	const children = stacks.OrphansBeforeCollection + 100
	tr := load(t, Config{Comm: "fdgc", ErrorsOnly: true, CaptureStacks: true})
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do (exec 3</dev/null); i=$((i+1)); done", children)
	if out, err := exec.Command(sh, "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	kernelStacks := func() int {
		var id uint64
		var st bpfobj.FdtraceStack
		n := 0
		for it := tr.Kernel().StackMaps().Stacks.Iterate(); it.Next(&id, &st); {
			n++
		}
		return n
	}
	// (Fewer than one each: a pid reused gives its process's key again.)
	if n := kernelStacks(); n < children/2 {
		t.Fatalf("%d stacks in the kernel after %d processes opened a file each: the workload was not traced", n, children)
	}
	rec := &recorder{}
	rec.drain(t, tr)
	kernel, known := kernelStacks(), tr.stacks.Len()
	// Collected once enough had piled up: what is left came after.
	if max := children - stacks.OrphansBeforeCollection + 10; kernel > max || known > max {
		t.Errorf("%d stacks in the kernel, %d symbolized after %d processes exited; want at most %d", kernel, known, children, max)
	}
}

// A process exits holding fds far up its table (past 4096, where the
// compat programs' exit sweep once stopped; it reaches 262,144 now, more
// than a hard limit here allows): their records go all the same, and the
// next process with its pid, making fds of those numbers (dup2 onto one,
// F_DUPFD finding one free), counts no close.
func TestAnExitLeavesNoRecordsToTheNextProcessOfItsPID(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	w.Do(t, "limit 6000")
	for _, fd := range []int{100, 4500, 5000, 5999} {
		w.Do(t, "dup2 0 %d", fd)
	}
	pid := w.PID
	w.Close(t)
	rec.drain(t, tr)
	if live, _ := tr.LiveFDs(pid); len(live) != 0 {
		t.Errorf("records of the exited process remain: %v", slices.Sorted(maps.Keys(live)))
	}
	next := startFdopsAs(t, testutil.BuildC(t, "fdops", "-static", "-pthread"), func() int {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Fatalf("pid %d was taken by another process before the test could reuse it", pid)
		}
		return pid
	})
	next.Do(t, "limit 6000")
	next.Do(t, "dup2 0 5000")
	if fd := next.Do(t, "fcntl 0 4500")[0]; fd != 4500 {
		t.Fatalf("F_DUPFD from 4500 made fd %d", fd)
	}
	rec.drain(t, tr)
	assertMatchesProc(t, tr, pid)
	p, _, err := tr.Process(pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.Opened != 2 || p.Closed != 0 {
		t.Errorf("the pid's next process opened %d closed %d, want 2 and 0", p.Opened, p.Closed)
	}
}

// The kernel keeps a process's counters in the slot of an array at the
// low bits of its pid, or in a hash map when another process holds that
// slot: processes whose pids share a slot are counted apart, each once,
// by Process and by Processes, in either mode, before and after the
// slot's holder exits and the next one takes it.
func TestProcessesWhosePidsShareASlotAreCountedApart(t *testing.T) {
	for _, mode := range []struct {
		name string
		cfg  Config
	}{{"records", Config{}}, {"counting only", Config{CountOnly: true}}} {
		t.Run(mode.name, func(t *testing.T) {
			tr, first, rec := followFdops(t, mode.cfg)
			bin := testutil.BuildC(t, "fdops", "-static", "-pthread")
			second := startFdopsAs(t, bin, func() int { return pidSharingSlot(t, first.PID) })
			if err := tr.Track(second.PID); err != nil {
				t.Fatal(err)
			}
			openClose := func(w *testutil.Workload, opens, closes int) {
				for i := range opens {
					fd := w.Do(t, "open /dev/null")[0]
					if i < closes {
						w.Do(t, "close %d", fd)
					}
				}
			}
			check := func(pid, opened, closed int) {
				t.Helper()
				rec.drain(t, tr)
				if !mode.cfg.CountOnly {
					assertMatchesProc(t, tr, pid)
				}
				p, _, err := tr.Process(pid)
				if err != nil {
					t.Fatal(err)
				}
				fds, err := procfs.FDs(pid)
				if err != nil {
					t.Fatal(err)
				}
				if p.Opened != uint64(opened) || p.Closed != uint64(closed) || p.OpenFDs != int64(len(fds)) {
					t.Errorf("pid %d opened %d closed %d with %d open, want %d and %d with %d (/proc)",
						pid, p.Opened, p.Closed, p.OpenFDs, opened, closed, len(fds))
				}
				all, err := tr.Processes()
				if err != nil {
					t.Fatal(err)
				}
				if n := countPID(all, pid); n != 1 {
					t.Errorf("pid %d is in Processes %d times, want once", pid, n)
				}
			}
			openClose(first, 3, 1)
			openClose(second, 5, 2)
			check(first.PID, 3, 1)
			check(second.PID, 5, 2)

			first.Close(t)
			openClose(second, 2, 2)
			third := startFdopsAs(t, bin, func() int { return pidSharingSlot(t, second.PID) })
			if err := tr.Track(third.PID); err != nil {
				t.Fatal(err)
			}
			openClose(third, 4, 1)
			check(second.PID, 7, 4)
			check(third.PID, 4, 1)
		})
	}
}

// procSlots is the kernel's number of slots for process counters
// (PROC_SLOTS in bpf/account.bpf.h).
const procSlots = 8192

// pidSharingSlot is a free pid whose counters go in pid's slot.
func pidSharingSlot(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for p := pid % procSlots; p < pidMax; p += procSlots {
		if p <= 300 || p == pid { // below 300: the kernel's reserved pids
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); errors.Is(err, fs.ErrNotExist) {
			return p
		}
	}
	t.Fatalf("no free pid shares a slot with %d under pid_max %d", pid, pidMax)
	return 0
}

func countPID(procs []events.Process, pid int) int {
	n := 0
	for _, p := range procs {
		if p.PID == pid {
			n++
		}
	}
	return n
}

// startFdopsAs starts fdops as the process of the free pid pick gives:
// the kernel gives the next fork the pid after ns_last_pid's, unless
// another fork on the host (a test running beside this one) takes it
// first, so it asks pick again then, as that pid may now be taken.
func startFdopsAs(t *testing.T, bin string, pick func() int) *testutil.Workload {
	t.Helper()
	var pid int
	for try := 0; try < 100; try++ {
		pid = pick()
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Fatalf("setting the next pid: %v", err)
		}
		w := testutil.StartFdops(t, bin)
		if w.PID == pid {
			return w
		}
		w.Close(t)
	}
	t.Fatalf("no process got pid %d (the last one tried) in 100 tries", pid)
	return nil
}

// Records are read where they lie in the ring buffer: a small one wraps
// around many times, records straddling its end included, and hands out
// every record once, in order.
func TestASmallRingBufferWrapsAroundWithoutLosingOrReorderingARecord(t *testing.T) {
	tr, w, rec := followFdops(t, Config{RingBufferBytes: 1 << 16})
	var want []fdEvent
	for round := 0; round < 40; round++ {
		var fds []int
		for range 40 {
			fd := w.Do(t, "open /dev/null")[0]
			fds = append(fds, fd)
			want = append(want, fdEvent{"open", "openat", fd, "file", ""})
		}
		for _, fd := range fds {
			w.Do(t, "close %d", fd)
			want = append(want, fdEvent{"close", "close", fd, "file", ""})
		}
		rec.drain(t, tr) // 80 records: under half the ring
	}
	if got := rec.fdEvents(w.PID); !slices.Equal(got, want) {
		t.Errorf("got %d records, want %d; first difference at %d", len(got), len(want), firstDifference(got, want))
	}
	st, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.LostEvents != 0 {
		t.Errorf("lost_events %d, want 0", st.LostEvents)
	}
}

func firstDifference(a, b []fdEvent) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
