package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

// stress-ng's fd stressors, each under trace: fdtrace's count of every
// process stays exact without a recount, lossless. Left out: close (two
// threads closing one fd at once race the count: docs/limitations.md) and
// fanotify (the events read before the read hook is attached, a few
// milliseconds after the first group, are counted at their close).
func TestStressNgsFDStressorsNeedNoRecount(t *testing.T) {
	testutil.RequireRoot(t)
	stressNG, err := exec.LookPath("stress-ng")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("stress-ng is not installed (.ci/run installs it)")
		}
		t.Skip("stress-ng is not installed")
	}
	for _, stressor := range []string{"dup", "pipe", "eventfd", "sockfd", "sockpair", "open",
		"inotify", "memfd", "timerfd", "sigfd", "userfaultfd", "io-uring"} {
		t.Run(stressor, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "trace.jsonl")
			res := runFdtrace(t, "", "trace", "--errors-only", "-o", out, "--",
				stressNG, "--"+stressor, "1", "-t", "1s", "--quiet")
			if res.code != 0 {
				t.Fatalf("exit status %d; stderr:\n%s", res.code, res.stderr)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			recs := readRecords(t, string(b))
			st := recs[len(recs)-1]
			if st.str("type") != "stats" {
				t.Fatalf("the last record is %v, want the stats", st)
			}
			for _, name := range []string{"kernel_drift", "reconciled_fds", "lost_events"} {
				if st.num(name) != 0 {
					t.Errorf("%s %d, want 0", name, st.num(name))
				}
			}
		})
	}
}
