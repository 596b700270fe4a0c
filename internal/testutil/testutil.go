// Package testutil holds what fdtrace's tests share: the root/CI policy for
// kernel tests and the C workloads they drive.
package testutil

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/procfs"
)

// RequireRoot skips a kernel test when not root, except on CI (CI=true),
// where kernel tests must run: there it fails.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but not running as root: the kernel tests must run on CI")
	}
	t.Skip("loading BPF programs needs root (CAP_BPF and CAP_PERFMON)")
}

// RequireNode is the path of node, or skips the test off CI (where it
// fails: CI installs Node.js).
func RequireNode(t testing.TB) string {
	t.Helper()
	return requireTool(t, "node", "Node.js")
}

// RequireStressNG is the path of stress-ng, or skips the test off CI
// (where it fails: .ci/run installs it, and the kernel matrix carries it).
func RequireStressNG(t testing.TB) string {
	t.Helper()
	return requireTool(t, "stress-ng", "stress-ng")
}

func requireTool(t testing.TB, name, what string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s is not installed: the %s tests must run on CI", name, what)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

// Where the tests find what `go test` would give them, when their
// binaries run without the source tree (the kernel matrix's guests).
const (
	// RepoEnv names a directory standing in for the repository: go.mod
	// and the testdata the tests read.
	RepoEnv = "FDTRACE_REPO"
	// PrebuiltEnv names a directory of the C workloads, built beforehand
	// under PrebuiltName.
	PrebuiltEnv = "FDTRACE_PREBUILT"
	// BinEnv names an fdtrace binary to run instead of building one.
	BinEnv = "FDTRACE_BIN"
)

// RepoRoot is the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv(RepoEnv); dir != "" {
		return dir
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// PrebuiltName is the file name of workload NAME built with flags.
func PrebuiltName(name string, flags ...string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.Join(append([]string{name}, flags...), " "))
}

// BuildC compiles testdata/workloads/NAME.c with gcc and returns the binary
// (or the one built beforehand in $FDTRACE_PREBUILT).
func BuildC(t testing.TB, name string, flags ...string) string {
	t.Helper()
	if dir := os.Getenv(PrebuiltEnv); dir != "" {
		bin := filepath.Join(dir, PrebuiltName(name, flags...))
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("workload %s was not built beforehand: %v", PrebuiltName(name, flags...), err)
		}
		return bin
	}
	src := filepath.Join(RepoRoot(t), "testdata", "workloads", name+".c")
	bin := filepath.Join(t.TempDir(), name)
	args := append([]string{"-O1", "-g", "-Wall", "-o", bin, src}, flags...)
	if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// Workload is a running fdops process driven over its stdin.
type Workload struct {
	Cmd *exec.Cmd
	PID int
	in  io.WriteCloser
	out *bufio.Reader
}

// StartPiped starts cmd with pipes to its stdin and from its stdout (its
// stderr is the test's), and kills and reaps it when the test ends.
func StartPiped(t testing.TB, cmd *exec.Cmd) (io.WriteCloser, *bufio.Reader) {
	t.Helper()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return in, bufio.NewReader(out)
}

// StartFdops starts the fdops workload (see testdata/workloads/fdops.c) and
// waits for its ready line.
func StartFdops(t testing.TB, bin string) *Workload {
	t.Helper()
	cmd := exec.Command(bin)
	in, out := StartPiped(t, cmd)
	w := &Workload{Cmd: cmd, PID: cmd.Process.Pid, in: in, out: out}
	w.Expect(t, "ok ready")
	return w
}

// Expect reads one reply line and fails unless it is want.
func (w *Workload) Expect(t testing.TB, want string) {
	t.Helper()
	if got := w.readLine(t); got != want {
		t.Fatalf("workload said %q, want %q", got, want)
	}
}

func (w *Workload) readLine(t testing.TB) string {
	t.Helper()
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := w.out.ReadString('\n')
		ch <- result{strings.TrimSuffix(line, "\n"), err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("reading from workload: %v", r.err)
		}
		return r.line
	case <-time.After(30 * time.Second):
		t.Fatal("workload did not answer within 30s")
	}
	return ""
}

// Do sends one command and returns the numbers of an "ok" reply; an "err"
// reply fails the test.
func (w *Workload) Do(t testing.TB, format string, args ...any) []int {
	t.Helper()
	vals, errno := w.Try(t, format, args...)
	if errno != 0 {
		t.Fatalf("workload %q: errno %d", fmt.Sprintf(format, args...), errno)
	}
	return vals
}

// Try sends one command and returns the numbers of an "ok" reply, or the
// errno of an "err" reply.
func (w *Workload) Try(t testing.TB, format string, args ...any) ([]int, int) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	if _, err := io.WriteString(w.in, line+"\n"); err != nil {
		t.Fatalf("writing to workload: %v", err)
	}
	reply := strings.Fields(w.readLine(t))
	if len(reply) == 0 {
		t.Fatalf("workload %q: empty reply", line)
	}
	var vals []int
	for _, f := range reply[1:] {
		n, err := strconv.Atoi(f)
		if err != nil {
			if reply[0] == "ok" {
				continue // "ok exec"
			}
			t.Fatalf("workload %q: %v", line, reply)
		}
		vals = append(vals, n)
	}
	if reply[0] == "err" {
		return nil, vals[0]
	}
	return vals, 0
}

// Close ends the workload's input and waits for it to exit.
func (w *Workload) Close(t testing.TB) {
	t.Helper()
	w.in.Close()
	if err := w.Cmd.Wait(); err != nil {
		t.Fatalf("workload: %v", err)
	}
}

// ProcFDs is the sorted fd list of pid from /proc.
func ProcFDs(t testing.TB, pid int) []int {
	t.Helper()
	fds, err := procfs.FDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(fds)
	return fds
}

// MainWithFdtrace builds fdtrace into a temporary directory anyone may read
// (tests run it as nobody too), or takes $FDTRACE_BIN, sets *bin to it,
// runs the tests and exits with their status: a TestMain for packages that
// run the CLI.
func MainWithFdtrace(m *testing.M, bin *string) {
	if *bin = os.Getenv(BinEnv); *bin != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "fdtrace-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	*bin = filepath.Join(dir, "fdtrace")
	build := exec.Command("go", "build", "-o", *bin, "github.com/fdtrace/fdtrace/cmd/fdtrace")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building fdtrace: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
