package tracer

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/symbolize"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// startUringWorkload starts an io_uring workload, reads its first line,
// and skips the test when it says io_uring cannot do what it asks here.
// Its stdin is closed, and it is waited for, when the test ends.
func startUringWorkload(t *testing.T, bin string, args ...string) (*exec.Cmd, io.Writer, *bufio.Reader, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	r := bufio.NewReader(out)
	first, _ := r.ReadString('\n')
	if strings.HasPrefix(first, "no io_uring") {
		t.Skipf("io_uring cannot do this here (%s)", strings.TrimSpace(first))
	}
	return cmd, stdin, r, first
}

// An fd io_uring's IORING_OP_OPENAT makes has its record, from the
// request's completion, with the stack of the io_uring_enter call that
// submitted it; the process's count needs no recount. Before 6.1, whose
// tracepoints do not give the request, it has none (leaks lists it apart).
func TestAnIOUringOpenHasItsRecordWithTheSubmittersStack(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "uring_open", "-static")
	path := filepath.Join(t.TempDir(), "opened-by-io_uring")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	stacks := loader.ProbeFeatures().StacksError() == nil
	tr := load(t, Config{FollowChildrenOf: os.Getpid(), CaptureStacks: stacks})
	hooked := tr.Kernel().UringHooked()
	if hooked != loader.ProbeFeatures().UringComplete {
		t.Fatalf("io_uring hooked %v, but its tracepoints give the request: %v", hooked, !hooked)
	}
	_, stdin, r, first := startUringWorkload(t, bin, path)
	var pid, ring, plain, fd int
	if _, err := fmt.Sscanf(first, "started %d %d %d\n", &pid, &ring, &plain); err != nil {
		t.Fatalf("workload said %q", first)
	}
	io.WriteString(stdin, "go\n")
	line, _ := r.ReadString('\n')
	if _, err := fmt.Sscanf(line, "ready %d\n", &fd); err != nil {
		t.Fatalf("workload said %q", line)
	}
	rec := &recorder{}
	rec.drain(t, tr)
	want := []fdEvent{{"open", "io_uring_setup", ring, "other", ""}, {"open", "openat", plain, "file", ""},
		{"open", "io_uring", fd, "file", ""}}
	if !hooked {
		want = want[:2]
	}
	if got := rec.fdEvents(pid); !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
	if !hooked {
		return
	}
	var open events.Open
	for _, x := range rec.records {
		if o, ok := x.(events.Open); ok && o.PID == pid && o.FD == fd {
			open = o
		}
	}
	if open.UserData != 7 {
		t.Errorf("the io_uring open's user_data is %d, want the request's 7", open.UserData)
	}
	if stacks && !slices.ContainsFunc(open.Stack, func(f symbolize.Frame) bool { return f.Func == "uring_openat" }) {
		t.Errorf("the io_uring open's stack %v does not name the submitting function uring_openat", open.Stack)
	}
	assertMatchesProc(t, tr, pid)
	st, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.KernelDrift != 0 {
		t.Errorf("kernel_drift %d, want 0", st.KernelDrift)
	}
}

// Connections io_uring accepts have their records, with the stack of the
// io_uring_enter that submitted the accepts, whether completed inline, by
// an io-wq worker (IOSQE_ASYNC) or as the completions of one multishot
// accept, which come without their request.
func TestIOUringAcceptsHaveTheirRecordsInlineAsyncAndMultishot(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "uring_accept", "-static")
	stacks := loader.ProbeFeatures().StacksError() == nil
	tr := load(t, Config{FollowChildrenOf: os.Getpid(), CaptureStacks: stacks}) // a load is slow: one for all
	for _, mode := range []string{"single", "async", "multi"} {
		t.Run(mode, func(t *testing.T) {
			cmd, _, _, line := startUringWorkload(t, bin, mode)
			var fds [3]int
			if _, err := fmt.Sscanf(line, "accepted %d %d %d\n", &fds[0], &fds[1], &fds[2]); err != nil {
				t.Fatalf("workload said %q", line)
			}
			rec := &recorder{}
			rec.drain(t, tr)
			var got []int
			var userData []uint64
			for _, x := range rec.records {
				if o, ok := x.(events.Open); ok && o.PID == cmd.Process.Pid && o.Syscall == "io_uring" {
					got = append(got, o.FD)
					userData = append(userData, o.UserData)
					if stacks && !slices.ContainsFunc(o.Stack, func(f symbolize.Frame) bool { return f.Func == "submit_accepts" }) {
						t.Errorf("fd %d's stack %v does not name the submitting function submit_accepts", o.FD, o.Stack)
					}
				}
			}
			if !tr.Kernel().UringHooked() {
				if len(got) != 0 {
					t.Errorf("io_uring records %v where io_uring is not hooked", got)
				}
				return
			}
			if !slices.Equal(got, fds[:]) {
				t.Errorf("io_uring records of fds %v, want the accepted %v", got, fds)
			}
			// The workload's requests carry user_data 42, 43, 44; a
			// multishot accept is one request.
			wantData := []uint64{42, 43, 44}
			if mode == "multi" {
				wantData = []uint64{42, 42, 42}
			}
			slices.Sort(userData)
			if !slices.Equal(userData, wantData) {
				t.Errorf("io_uring records' user_data %v, want %v", userData, wantData)
			}
			assertMatchesProc(t, tr, cmd.Process.Pid)
			if st, err := tr.Stats(); err != nil || st.KernelDrift != 0 {
				t.Errorf("kernel_drift %d (%v), want 0", st.KernelDrift, err)
			}
		})
	}
}
