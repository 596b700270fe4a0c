package tracer

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/symbolize"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// fds a syscall installs besides its return value, or by a call that is no
// fd-creating syscall by name: each has its record, with its creating call,
// and the count stays exact (no recount at their close).
func TestFDsInstalledOutsideTheCreatingSyscallsHaveRecords(t *testing.T) {
	tr, w, rec := followFdops(t, Config{})
	var want []fdEvent
	open := func(sc string, fd int, typ, family string) {
		want = append(want, fdEvent{"open", sc, fd, typ, family})
	}
	closed := func(sc string, fd int, typ string) {
		want = append(want, fdEvent{"close", sc, fd, typ, ""})
	}

	open("bpf", w.Do(t, "bpfmap")[0], "other", "")
	pt := w.Do(t, "ptpeer")
	open("openat", pt[0], "file", "")
	open("ioctl", pt[1], "file", "")
	q := w.Do(t, "socketpair")
	open("socketpair", q[0], "socket", "AF_UNIX")
	open("socketpair", q[1], "socket", "AF_UNIX")
	if fds, errno := w.Try(t, "peerpidfd %d", q[0]); errno == 0 {
		open("getsockopt", fds[0], "pidfd", "")
	} else {
		t.Logf("getsockopt(SO_PEERPIDFD): errno %d (Linux 6.5): not tried", errno)
	}
	f := w.Do(t, "open /dev/null")[0]
	open("openat", f, "file", "")
	r := w.Do(t, "recvmmsg %d", f)
	open("socketpair", r[2], "socket", "AF_UNIX")
	open("socketpair", r[3], "socket", "AF_UNIX")
	open("recvmmsg", r[0], "file", "")
	open("recvmmsg", r[1], "file", "")
	closed("close", r[2], "socket")
	closed("close", r[3], "socket")

	dir := t.TempDir()
	watched := filepath.Join(dir, "watched")
	if err := os.WriteFile(watched, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g := w.Do(t, "fanotify %s", dir)[0]
	open("fanotify_init", g, "other", "")
	// Reads are hooked once a traced process has a fanotify group.
	rec.drain(t, tr)
	if !tr.Kernel().ReadHooked() {
		t.Fatal("a traced process made a fanotify group: the read hook is not attached")
	}
	ev := w.Do(t, "fanread %d %s", g, watched)
	open("openat", ev[0], "file", "") // the open that made the event
	closed("close", ev[0], "file")
	open("read", ev[0], "file", "")
	u := w.Do(t, "uffdfork")
	open("userfaultfd", u[0], "other", "")
	open("read", u[1], "other", "")
	if fds, errno := w.Try(t, "uffddev"); errno == 0 {
		open("openat", fds[0], "file", "")
		open("userfaultfd", fds[1], "other", "")
	} else {
		t.Logf("/dev/userfaultfd: errno %d (Linux 6.1): not tried", errno)
	}

	rec.drain(t, tr)
	if got := rec.fdEvents(w.PID); !slices.Equal(got, want) {
		t.Errorf("records differ from the syscalls made:\n got  %v\n want %v", got, want)
	}
	assertMatchesProc(t, tr, w.PID)
	st, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.KernelDrift != 0 {
		t.Errorf("kernel_drift %d, want 0", st.KernelDrift)
	}
}

// A fanotify listener that keeps the fds its events bring: each is
// recorded as made by its read, with the stack of the function that read.
func TestAFanotifyListenersEventFDsAreAttributedToItsRead(t *testing.T) {
	testutil.RequireRoot(t)
	stacks := loader.ProbeFeatures().StacksError() == nil
	tr, w, rec := followFdops(t, Config{CaptureStacks: stacks})
	dir := t.TempDir()
	watched := filepath.Join(dir, "watched")
	if err := os.WriteFile(watched, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g := w.Do(t, "fanotify %s", dir)[0]
	rec.drain(t, tr) // the group asks for the read hook
	var leaked []int
	for range 3 {
		leaked = append(leaked, w.Do(t, "fanread %d %s", g, watched)[0])
	}
	rec.drain(t, tr)
	live, err := tr.LiveFDs(w.PID)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range leaked {
		if live[fd].Syscall != "read" {
			t.Errorf("event fd %d: made by %q, want read", fd, live[fd].Syscall)
		}
	}
	var opens int
	for _, r := range rec.records {
		o, ok := r.(events.Open)
		if !ok || o.PID != w.PID || o.Syscall != "read" {
			continue
		}
		opens++
		if stacks && !slices.ContainsFunc(o.Stack, func(f symbolize.Frame) bool { return f.Func == "fanotify_read" }) {
			t.Errorf("event fd %d's stack %v does not name the reading function fanotify_read", o.FD, o.Stack)
		}
	}
	if opens != len(leaked) {
		t.Errorf("%d records of fds made by read, want %d", opens, len(leaked))
	}
	assertMatchesProc(t, tr, w.PID)
}
