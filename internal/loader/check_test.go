package loader

import (
	"os"
	"testing"
)

func TestCheckPassesEveryRowAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but not root: the kernel checks must run on CI")
		}
		t.Skip("needs root to load BPF programs")
	}
	countFDs := func() int {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(fds)
	}
	before := countFDs()
	results := Check()
	for _, r := range results {
		if r.Status != StatusOK {
			t.Errorf("%s: %s: %s", r.Name, r.Status, r.Detail)
		}
	}
	if len(results) < 10 {
		t.Errorf("only %d rows: %v", len(results), results)
	}
	if after := countFDs(); after != before {
		t.Errorf("check leaked fds: %d open before, %d after", before, after)
	}
}
