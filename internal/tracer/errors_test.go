package tracer

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// errorsLeft are the errors map's entries of pid.
func errorsLeft(t *testing.T, tr *Tracer, pid int) map[string]uint64 {
	t.Helper()
	errs, err := tr.Kernel().Errors()
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]uint64{}
	for _, e := range errs {
		if e.Proc.PID == pid {
			left[e.Syscall.String()+" "+events.ErrnoName(e.Errno)] = e.Count
		}
	}
	return left
}

// A process's failed syscalls leave the kernel's errors map at its exit,
// taken by the kernel itself (the first eight kinds, into the exit record)
// or by the reader (the rest): the map does not fill up with the dead.
// The host-wide totals keep them.
func TestAnExitTakesItsErrorCountsOutOfTheKernelsMap(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	// A shell of a name of our own: no other test run's is traced.
	name := fmt.Sprintf("errkinds%d", os.Getpid()%100000)
	sh := filepath.Join(dir, name)
	b, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sh, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"file", "dir/"} {
		if strings.HasSuffix(f, "/") {
			err = os.Mkdir(filepath.Join(dir, f), 0o755)
		} else {
			err = os.WriteFile(filepath.Join(dir, f), nil, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("loop", filepath.Join(dir, "loop")); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Redirections of a builtin that fail, twice each; the EMFILE last.
	script := fmt.Sprintf(`cd %s
for i in 1 2; do
true < missing        # openat ENOENT
true < file/x         # openat ENOTDIR
true < loop           # openat ELOOP
true < %s             # openat ENAMETOOLONG
true > dir            # openat EISDIR
true < sock           # openat ENXIO
true > /sys/kernel/btf/vmlinux  # openat EACCES
true > /proc/self/exe # openat ETXTBSY
true <&9              # dup2 EBADF
done
ulimit -n 3; exec 3</dev/null # openat EMFILE
`, dir, strings.Repeat("n", 300))
	want := map[string]uint64{"openat ENOENT": 2, "openat ENOTDIR": 2, "openat ELOOP": 2,
		"openat ENAMETOOLONG": 2, "openat EISDIR": 2, "openat ENXIO": 2, "openat EACCES": 2,
		"openat ETXTBSY": 2, "dup2 EBADF": 2, "openat EMFILE": 1}

	tr := load(t, Config{Comm: name})
	cmd := exec.Command(sh, "-c", script)
	cmd.Run() // it fails: the EMFILE
	pid := cmd.Process.Pid
	// Before the exit record is read: the kernel took eight kinds out.
	if left, want := errorsLeft(t, tr, pid), map[string]uint64{"dup2 EBADF": 2, "openat EMFILE": 1}; !maps.Equal(left, want) {
		t.Errorf("the errors map holds %v of the exited process, want only the kinds past eight: %v", left, want)
	}
	rec := &recorder{}
	rec.drain(t, tr)
	got := map[string]uint64{}
	for sc, byErrno := range exitRecord(t, rec, pid).Errors {
		for errno, n := range byErrno {
			got[sc+" "+errno] = n
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("exit record errors %v, want %v", got, want)
	}
	if left := errorsLeft(t, tr, pid); len(left) != 0 {
		t.Errorf("the errors map still holds %v of the exited process", left)
	}
	totals, err := tr.Kernel().Totals()
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]uint64{}
	for _, e := range totals.Errors {
		all[e.Syscall.String()+" "+events.ErrnoName(e.Errno)] = e.Count
	}
	if !maps.Equal(all, want) {
		t.Errorf("host-wide totals %v, want %v", all, want)
	}
	if totals.EMFILE != 1 || totals.ENFILE != 0 {
		t.Errorf("totals EMFILE %d ENFILE %d, want 1 and 0", totals.EMFILE, totals.ENFILE)
	}
}
