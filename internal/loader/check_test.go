package loader

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

// What each class of kernel must be able to do. A capability worse than
// its row (degraded where ok is wanted) fails the test: it is a
// regression, not a missing feature.
var wantCapabilities = map[string]map[string]string{
	// 5.10 to 5.16: no bpf_loop (and before 5.15 no bpf_task_pt_regs).
	"compat": {
		CapCounting: StatusDegraded, CapErrors: StatusDegraded, CapRefusals: StatusDegraded,
		CapRecords: StatusDegraded, CapFPStacks: StatusUnavailable,
		CapDWARFStack: StatusUnavailable, CapJITNames: StatusUnavailable,
	},
	// 5.17 and later; 6.1 has no bpf_rdonly_cast, which only costs time.
	"full": {
		CapCounting: StatusOK, CapErrors: StatusOK, CapRefusals: StatusOK,
		CapRecords: StatusOK, CapFPStacks: StatusOK,
		CapDWARFStack: StatusOK, CapJITNames: StatusOK,
	},
}

// kernelClass is the row of wantCapabilities for the running kernel, by
// its version: the test's own expectation, independent of the probes it
// checks.
func kernelClass(t *testing.T) string {
	if strings.Contains(os.Getenv(fallbackEnv), "compat") {
		return "compat"
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", u.Release, err)
	}
	if major < 5 || (major == 5 && minor < 17) {
		return "compat"
	}
	return "full"
}

func TestCheckSaysWhatThisKernelCanDoAndPassesAsRoot(t *testing.T) {
	testutil.RequireRoot(t)
	countFDs := func() int {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(fds)
	}
	before := countFDs()
	results := Check()
	class := kernelClass(t)
	want := wantCapabilities[class]
	seen := map[string]bool{}
	for _, r := range results {
		if !strings.HasPrefix(r.Name, "tracepoint ") {
			t.Logf("%s: %s: %s", r.Name, r.Status, r.Detail)
		}
		if w, ok := want[r.Name]; ok {
			seen[r.Name] = true
			if r.Status != w {
				t.Errorf("%s kernel: %s is %s (%s), want %s", class, r.Name, r.Status, r.Detail, w)
			}
			continue
		}
		if r.Status == StatusFail {
			t.Errorf("%s: %s: %s", r.Name, r.Status, r.Detail)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("no %s row", name)
		}
	}
	if !CanTrace(results) {
		t.Error("check says nothing can be traced")
	}
	if after := countFDs(); after != before {
		t.Errorf("check leaked fds: %d open before, %d after", before, after)
	}
}
