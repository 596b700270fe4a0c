package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

var fdtraceBin string

func TestMain(m *testing.M) { testutil.MainWithFdtrace(m, &fdtraceBin) }

type result struct {
	code   int
	stdout string
	stderr string
}

func runFdtrace(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(fdtraceBin, args...)
	return runCmd(t, cmd, stdin)
}

func runCmd(t *testing.T, cmd *exec.Cmd, stdin string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running %v: %v", cmd.Args, err)
	}
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee != nil {
		r.code = ee.ExitCode()
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic:") {
		t.Fatalf("fdtrace crashed:\n%s", r.stderr)
	}
	return r
}

// record is any output line, decoded loosely after schema validation.
type record map[string]any

func (r record) str(k string) string { s, _ := r[k].(string); return s }
func (r record) num(k string) int    { f, _ := r[k].(float64); return int(f) }

// readRecords validates every line against the schema and decodes it.
func readRecords(t *testing.T, text string) []record {
	t.Helper()
	var out []record
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if err := events.Validate(line); err != nil {
			t.Fatalf("line does not match the schema: %v\n%s", err, line)
		}
		var r record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func ofPID(recs []record, typ string, pid int) []record {
	var out []record
	for _, r := range recs {
		if r.str("type") == typ && r.num("pid") == pid {
			out = append(out, r)
		}
	}
	return out
}

func TestTraceOfACommandRecordsItExactlyAndExitsWithItsStatus(t *testing.T) {
	testutil.RequireRoot(t)
	fdops := testutil.BuildC(t, "fdops", "-static", "-pthread")
	out := filepath.Join(t.TempDir(), "trace.jsonl")
	script := "open /dev/null\npipe\nsocket inet stream\nclose 3\nexit 7\n"
	res := runFdtrace(t, script, "trace", "-o", out, "--", fdops)
	if res.code != 7 {
		t.Fatalf("exit status %d, want the command's 7; stderr:\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "fdtrace: tracing "+fdops) {
		t.Errorf("no tracing notice on stderr:\n%s", res.stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, string(b))
	procs := []record{}
	for _, r := range recs {
		if r.str("type") == "process" {
			procs = append(procs, r)
		}
	}
	if len(procs) != 1 || procs[0]["exited"] != true {
		t.Fatalf("process records %v, want one, of the exited command", procs)
	}
	pid := procs[0].num("pid")
	var got []string
	for _, r := range recs {
		if (r.str("type") == "open" || r.str("type") == "close") && r.num("pid") == pid {
			got = append(got, r.str("type")+" "+r.str("syscall")+" "+r.str("fd_type"))
		}
	}
	want := []string{"open openat file", "open pipe2 pipe", "open pipe2 pipe", "open socket socket", "close close file"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("records of the command: %v, want %v", got, want)
	}
	if procs[0].num("opened") != 4 || procs[0].num("closed") != 1 {
		t.Errorf("process record %v: want opened 4, closed 1", procs[0])
	}
	if last := recs[len(recs)-1]; last.str("type") != "stats" || last.num("lost_events") != 0 {
		t.Errorf("last record %v, want stats with no lost events", last)
	}
}

func TestTraceOfACommandKeepsTheLimitTheUserGaveIt(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command("prlimit", "--nofile=123:456", fdtraceBin, "trace", "-o", os.DevNull, "--",
		"sh", "-c", "echo $(ulimit -Sn) $(ulimit -Hn)")
	res := runCmd(t, cmd, "")
	if res.code != 0 || strings.TrimSpace(res.stdout) != "123 456" {
		t.Errorf("command saw limits %q (exit %d), want \"123 456\"; stderr:\n%s", res.stdout, res.code, res.stderr)
	}
}

func TestTracingByPIDStopsOnSIGINTWithASummaryThatMatchesProc(t *testing.T) {
	testutil.RequireRoot(t)
	w := testutil.StartFdops(t, testutil.BuildC(t, "fdops", "-static", "-pthread"))
	dir := t.TempDir()
	ready, out := filepath.Join(dir, "ready"), filepath.Join(dir, "trace.jsonl")
	cmd := exec.Command(fdtraceBin, "trace", "-p", strconv.Itoa(w.PID), "-o", out, "--ready-file", ready)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitForFile(t, ready)

	w.Do(t, "open /dev/null")
	w.Do(t, "socketpair")
	w.Do(t, "eventfd")
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fdtrace after SIGINT: %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, string(b))
	if n := len(ofPID(recs, "open", w.PID)); n != 4 {
		t.Errorf("%d open records, want 4", n)
	}
	procs := ofPID(recs, "process", w.PID)
	if len(procs) != 1 {
		t.Fatalf("process records %v, want one", procs)
	}
	if got, want := procs[0].num("open_fds"), len(testutil.ProcFDs(t, w.PID)); got != want {
		t.Errorf("summary open_fds %d, /proc has %d", got, want)
	}
	if procs[0]["exited"] != false {
		t.Errorf("summary says the live process exited: %v", procs[0])
	}
}

func TestErrorsOnlyHostWideReportsEMFILEAndNoOpens(t *testing.T) {
	testutil.RequireRoot(t)
	w := testutil.StartFdops(t, testutil.BuildC(t, "fdops", "-static", "-pthread"))
	dir := t.TempDir()
	ready, out := filepath.Join(dir, "ready"), filepath.Join(dir, "trace.jsonl")
	cmd := exec.Command(fdtraceBin, "trace", "--errors-only", "-o", out, "--ready-file", ready)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitForFile(t, ready)
	w.Do(t, "limit 8")
	w.Do(t, "fill")
	if _, errno := w.Try(t, "socket inet stream"); errno != 24 {
		t.Fatalf("socket: errno %d, want EMFILE", errno)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	recs := readRecords(t, string(b))
	for _, r := range recs {
		if r.str("type") == "open" || r.str("type") == "close" {
			t.Fatalf("--errors-only wrote %v", r)
		}
	}
	var syscalls []string
	for _, r := range ofPID(recs, "error", w.PID) {
		syscalls = append(syscalls, r.str("syscall")+" "+r.str("errno"))
	}
	if strings.Join(syscalls, ",") != "openat EMFILE,socket EMFILE" {
		t.Errorf("error records of the workload: %v", syscalls)
	}
	procs := ofPID(recs, "process", w.PID)
	if len(procs) != 1 || procs[0].num("emfile") != 2 {
		t.Errorf("summary of the workload: %v, want one with emfile 2", procs)
	}
}

func TestTraceByCommMountsTracefsWhenItIsMissing(t *testing.T) {
	testutil.RequireRoot(t)
	fdops := testutil.BuildC(t, "fdops", "-static", "-pthread")
	// A private mount namespace without tracefs; the host keeps its own.
	script := fmt.Sprintf(`umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null
test -e /sys/kernel/tracing/events && { echo "tracefs still mounted"; exit 99; }
exec %s trace -c fdops -d 3s`, fdtraceBin)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	var stdout, stderr testutil.LockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// fdops runs outside the namespace: the tracepoints are global.
	waitForLine(t, &stderr, "fdtrace: tracing")
	w := testutil.StartFdops(t, fdops)
	w.Do(t, "open /dev/null")
	w.Close(t)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fdtrace: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "mounted tracefs at /sys/kernel/tracing") {
		t.Errorf("no note about mounting tracefs:\n%s", stderr.String())
	}
	recs := readRecords(t, stdout.String())
	if n := len(ofPID(recs, "open", w.PID)); n != 1 {
		t.Errorf("%d open records for fdops, want 1", n)
	}
	// Records carry the thread's name: fdops names one thread worker-1.
	for _, r := range recs {
		if c := r.str("comm"); c != "" && c != "fdops" && c != "worker-1" {
			t.Fatalf("-c fdops let through %v", r)
		}
	}
}

func TestBadInputGetsOneLineAndANonZeroExit(t *testing.T) {
	testutil.RequireRoot(t) // unknown pids are only checked past the privilege check
	assertRefused(t, []badInput{
		{"an unknown pid", []string{"trace", "-p", "999999999"}, 1, "fdtrace: pid 999999999: no such process\n"},
		{"a pid that is not a number", []string{"trace", "-p", "abc"}, 2, "fdtrace: invalid argument"},
		{"an unknown flag", []string{"trace", "--bogus"}, 2, "fdtrace: unknown flag: --bogus\n"},
		{"a pid with a command", []string{"trace", "-p", "1", "--", "true"}, 2, "fdtrace: -p and a command cannot be combined\n"},
		{"a ring buffer that is not a power of two", []string{"trace", "--ringbuf-size", "3"}, 2, "fdtrace: --ringbuf-size 3: must be a power of two\n"},
		{"a command that does not exist", []string{"trace", "--", "/no/such/command"}, 1, "fdtrace: command \"/no/such/command\""},
		{"an unknown subcommand", []string{"frobnicate"}, 2, "fdtrace: unknown command \"frobnicate\""},
		{"an unknown stack mode", []string{"leaks", "--stack-mode", "lbr", "-p", "1"}, 2,
			"fdtrace: invalid argument \"lbr\" for \"--stack-mode\" flag: stack mode \"lbr\": want dwarf or fp\n"},
		{"a stack mode without stacks", []string{"trace", "--stack-mode", "fp"}, 2, "fdtrace: --stack-mode needs --stacks\n"},
	})
}

func TestWithoutPrivilegesTraceSaysRunAsRoot(t *testing.T) {
	testutil.RequireRoot(t) // to become nobody
	cmd := exec.Command(fdtraceBin, "trace", "-d", "1s")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	res := runCmd(t, cmd, "")
	want := "fdtrace: fdtrace needs CAP_BPF and CAP_PERFMON (run as root)\n"
	if res.code != 1 || res.stderr != want {
		t.Errorf("exit %d, stderr %q; want exit 1 and %q", res.code, res.stderr, want)
	}
}

// waitForFile waits for fdtrace's ready file, failing if fdtrace exits.
func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fdtrace did not write its ready file within %v", startTimeout)
}

// startTimeout bounds the wait for fdtrace to say it is ready: a second
// or two here, half a minute for the compat programs of an old kernel in
// an emulated VM (the kernel matrix), whose verifier is slow.
const startTimeout = 2 * time.Minute

// waitForLine waits until buf holds a line starting with prefix.
func waitForLine(t *testing.T, buf *testutil.LockedBuffer, prefix string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if strings.Contains(buf.String(), prefix) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q within %v; stderr so far:\n%s", prefix, startTimeout, buf.String())
}

// badInput is a command line fdtrace must refuse: with exit code code and
// stderr starting with want, in one line (plus the pointer to --help for
// a usage error).
type badInput struct {
	name string
	args []string
	code int
	want string
}

func assertRefused(t *testing.T, cases []badInput) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := runFdtrace(t, "", tc.args...)
			if res.code != tc.code || !strings.HasPrefix(res.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", res.code, res.stderr, tc.code, tc.want)
			}
			if lines := strings.Count(res.stderr, "\n"); lines > 2 {
				t.Errorf("%d lines of errors:\n%s", lines, res.stderr)
			}
			if tc.code == 2 && !strings.HasSuffix(res.stderr, "Run 'fdtrace --help' for usage.\n") {
				t.Errorf("bad usage without the pointer to --help: %q", res.stderr)
			}
		})
	}
}
