package tracer

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// TestRandomFDSyscallsKeepFdtraceEqualToProc runs random sequences of fd
// syscalls and compares fdtrace's count and live-fd set with /proc after
// every batch. Seeds are fixed so that a failure reproduces; FDTRACE_SEED
// adds one.
func TestRandomFDSyscallsKeepFdtraceEqualToProc(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if s, err := strconv.ParseUint(os.Getenv("FDTRACE_SEED"), 10, 64); err == nil {
		seeds = append(seeds, s)
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			tr, w, rec := followFdops(t, Config{})
			rng := rand.New(rand.NewPCG(seed, seed))
			for batch := range 20 {
				for range 12 {
					op := randomOp(t, rng, w)
					if _, errno := w.Try(t, "%s", op); errno != 0 && !strings.HasPrefix(op, "close 9") {
						t.Fatalf("seed %d batch %d: %q failed with errno %d", seed, batch, op, errno)
					}
					if strings.HasPrefix(op, "fork") {
						// The stopped child is checked, then reaped.
						rec.drain(t, tr)
						child := lastForkChild(t, w)
						assertMatchesProc(t, tr, child)
						w.Do(t, "reap %d", child)
					}
				}
				rec.drain(t, tr)
				assertMatchesProc(t, tr, w.PID)
			}
		})
	}
}

// randomOp picks a command for fdops; fds 0-2 carry the protocol and stay.
func randomOp(t *testing.T, rng *rand.Rand, w *testutil.Workload) string {
	var mine []int
	for _, fd := range testutil.ProcFDs(t, w.PID) {
		if fd > 2 {
			mine = append(mine, fd)
		}
	}
	some := func() int {
		if len(mine) == 0 {
			return 2
		}
		return mine[rng.IntN(len(mine))]
	}
	target := 3 + rng.IntN(40)
	creators := []string{"open /dev/null", "open /dev/null cloexec", "socket inet stream",
		"socket unix dgram", "pipe", "pipe0", "socketpair", "epoll", "eventfd", "memfd",
		"timerfd", "inotify", "thread 2"}
	switch n := rng.IntN(20); {
	case n < 7:
		return creators[rng.IntN(len(creators))]
	case n < 11 && len(mine) > 0:
		return fmt.Sprintf("close %d", some())
	case n == 11:
		return fmt.Sprintf("dup %d", some())
	case n == 12:
		return fmt.Sprintf("dup2 %d %d", some(), target)
	case n == 13:
		src := some()
		if src == target {
			target++ // dup3 refuses equal fds
		}
		return fmt.Sprintf("dup3 %d %d", src, target)
	case n == 14:
		return fmt.Sprintf("fcntl %d %d", some(), target)
	case n == 15:
		return fmt.Sprintf("closerange %d %d", target, target+rng.IntN(8))
	case n == 16:
		return "close 999" // EBADF: no record, no count
	case n == 17:
		return fmt.Sprintf("fork %d", some())
	case n == 18 && rng.IntN(4) == 0:
		return "exec"
	}
	return "open /dev/null"
}

// lastForkChild is the pid of the child the last fork made: fdops's only
// stopped child.
func lastForkChild(t *testing.T, w *testutil.Workload) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", w.PID, w.PID))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		t.Fatalf("fdops has children %v, want one", f)
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}

func TestCountingOnlyKeepsCountsAndTypesEqualToProc(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			tr, w, rec := followFdops(t, Config{ErrorsOnly: true, CountOnly: true})
			start := procTypes(t, w.PID)
			rng := rand.New(rand.NewPCG(seed, seed))
			for batch := range 20 {
				for range 12 {
					op := randomOp(t, rng, w)
					for op == "exec" { // closes close-on-exec fds without a type
						op = randomOp(t, rng, w)
					}
					if _, errno := w.Try(t, "%s", op); errno != 0 && !strings.HasPrefix(op, "close 9") {
						t.Fatalf("seed %d batch %d: %q failed with errno %d", seed, batch, op, errno)
					}
					if strings.HasPrefix(op, "fork") {
						child := lastForkChild(t, w)
						assertCountMatchesProc(t, tr, child)
						w.Do(t, "reap %d", child)
					}
				}
				rec.drain(t, tr)
				p := assertCountMatchesProc(t, tr, w.PID)
				// By type: what was there, plus opened, minus closed.
				now := procTypes(t, w.PID)
				for i := range events.NumFDTypes {
					typ := events.FDType(i).String()
					if got := int64(start[typ]) + int64(p.OpenedByType[typ]) - int64(p.ClosedByType[typ]); got != int64(now[typ]) {
						t.Errorf("seed %d batch %d: %s fds: %d at start + %d opened - %d closed = %d, /proc has %d",
							seed, batch, typ, start[typ], p.OpenedByType[typ], p.ClosedByType[typ], got, now[typ])
					}
				}
			}
			if live, err := tr.LiveFDs(w.PID); err != nil || len(live) != 0 {
				t.Errorf("counting only, the fds map holds %d records (%v)", len(live), err)
			}
		})
	}
}

// assertCountMatchesProc checks fdtrace's open_fds of pid against /proc.
func assertCountMatchesProc(t *testing.T, tr *Tracer, pid int) events.Process {
	t.Helper()
	p, ok, err := tr.Process(pid)
	if err != nil || !ok {
		t.Fatalf("no counters for pid %d (%v)", pid, err)
	}
	if want := len(testutil.ProcFDs(t, pid)); p.OpenFDs != int64(want) {
		t.Fatalf("open_fds of %d: fdtrace says %d, /proc has %d", pid, p.OpenFDs, want)
	}
	return p
}

// procTypes counts pid's fds by type, as /proc shows them.
func procTypes(t *testing.T, pid int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, fd := range testutil.ProcFDs(t, pid) {
		target, err := procfs.FDTarget(pid, fd)
		if err != nil {
			t.Fatal(err)
		}
		out[procfs.TargetType(target)]++
	}
	return out
}
