package main

import (
	"bufio"
	"bytes"
	"encoding/json"
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

// soakChurn is how long the soak test churns processes after its warm-up;
// FDTRACE_SOAK (10m, 2h) makes it longer.
func soakChurn(t *testing.T) time.Duration {
	v := os.Getenv("FDTRACE_SOAK")
	if v == "" {
		return 40 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("FDTRACE_SOAK=%q: want a duration such as 10m", v)
	}
	return d
}

const (
	soakRate    = 100 // children a second: 6,000 a minute
	soakWarmUp  = 10 * time.Second
	soakMaxSize = 1 << 20
	// What fdtrace's resident memory may grow by after the warm-up.
	soakRSSSlack = 16 << 20
)

func TestSoakUnderProcessChurnKeepsMemoryFlatCountsExactAndOutputWhole(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("the soak test takes a minute")
	}
	churnFor := soakChurn(t)
	// A name of its own: another soak test may be running on the host.
	name := fmt.Sprintf("churn%d", os.Getpid())
	bin := filepath.Join(t.TempDir(), name)
	if err := os.Rename(testutil.BuildC(t, "churn", "-static"), bin); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, ready := filepath.Join(dir, "trace.jsonl"), filepath.Join(dir, "ready")
	// Room for everything: about 0.3 MiB of records a second.
	maxFiles := int(churnFor/time.Second) + 64
	cmd := exec.Command(fdtraceBin, "trace", "-c", name, "-o", out, "--max-size", strconv.Itoa(soakMaxSize),
		"--max-files", strconv.Itoa(maxFiles), "--summary-interval", "1s", "--ready-file", ready)
	var stderr testutil.LockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitForFile(t, ready)

	w := &driven{cmd: exec.Command(bin)}
	w.in, w.out = testutil.StartPiped(t, w.cmd)
	w.expect(t, "ok ready")
	children, pairs := 0, 0
	churn := func(d time.Duration) {
		n := int(d.Seconds() * soakRate)
		var gotN, gotPairs int
		if reply := w.do(t, fmt.Sprintf("churn %d %d", n, soakRate)); fmt.Sprintf("ok %d", n) != strings.Join(strings.Fields(reply)[:2], " ") {
			t.Fatalf("churn: %q", reply)
		} else {
			fmt.Sscanf(reply, "ok %d %d", &gotN, &gotPairs)
		}
		children += gotN
		pairs += gotPairs
	}
	churn(soakWarmUp)
	base := soakStats(t, cmd, out)
	churnStart := time.Now()
	churn(churnFor)
	end := soakStats(t, cmd, out)
	w.end(t)
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fdtrace: %v\n%s", err, stderr.String())
	}

	b, e := base.Memory, end.Memory
	t.Logf("%d children, %d open/close pairs; after the warm-up: rss %d KiB, maps %d KiB, entries %+v; at the end: rss %d KiB (peak %d KiB), maps %d KiB, entries %+v",
		children, pairs, b.RSSBytes>>10, b.MapBytes>>10, b.MapEntries, e.RSSBytes>>10, e.PeakRSSBytes>>10, e.MapBytes>>10, e.MapEntries)
	if e.MapEntries != b.MapEntries {
		t.Errorf("map entries %+v once the churn stopped, %+v after the warm-up: want the same", e.MapEntries, b.MapEntries)
	}
	if e.MapBytes > b.MapBytes+64<<10 {
		t.Errorf("map memory grew from %d to %d bytes", b.MapBytes, e.MapBytes)
	}
	if e.RSSBytes > b.RSSBytes+soakRSSSlack {
		t.Errorf("resident memory grew from %d to %d KiB: more than %d KiB", b.RSSBytes>>10, e.RSSBytes>>10, soakRSSSlack>>10)
	}

	files := rotatedSet(t, out, maxFiles)
	if len(files) < 2 || len(files) > maxFiles {
		t.Fatalf("%d files: want rotation, and room for all of them", len(files))
	}
	counts := map[string]int{}
	var last events.Stats
	var peak events.MapEntries // during the churn
	for i, f := range files {
		if len(f) > soakMaxSize || !strings.HasSuffix(f, "\n") {
			t.Errorf("file %d of %d: %d bytes (at most %d), not whole lines", i+1, len(files), len(f), soakMaxSize)
		}
		sc := bufio.NewScanner(strings.NewReader(f))
		for sc.Scan() {
			line := sc.Bytes()
			if err := events.Validate(line); err != nil {
				t.Fatalf("file %d: %v\n%s", i+1, err, line)
			}
			var r struct {
				Type   string
				PID    int
				Exited bool
			}
			json.Unmarshal(line, &r)
			who := "child"
			if r.PID == w.cmd.Process.Pid {
				who = "parent"
			}
			switch r.Type {
			case "stats":
				json.Unmarshal(line, &last)
				if last.Memory != nil && time.Time(last.Time).After(churnStart) {
					m := last.Memory.MapEntries
					peak.Procs, peak.FDs = max(peak.Procs, m.Procs), max(peak.FDs, m.FDs)
				}
				continue
			case "process":
				if !r.Exited {
					continue
				}
			}
			counts[r.Type+" "+who]++
		}
	}
	want := map[string]int{
		"open child": 4 * children, "close child": children, "process child": children,
		"open parent": pairs, "close parent": pairs, "process parent": 1,
	}
	t.Logf("most entries in a stats record during the churn: procs %d, fds %d", peak.Procs, peak.FDs)
	// A few children alive at a time, each with 6 fds at most.
	if peak.Procs > 64 || peak.FDs > b.MapEntries.FDs+64*6 {
		t.Errorf("during the churn, up to %d procs and %d fds entries", peak.Procs, peak.FDs)
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("records %v, want %v", counts, want)
	}
	if last.LostEvents+last.KernelDrift+last.FDsMapFull+last.ProcsMapFull+last.ErrorsMapFull+last.PortsMapFull+last.StacksFull != 0 {
		t.Errorf("losses in the last stats record: %+v", last)
	}
}

// soakStats has fdtrace write its summary (SIGUSR1) and returns the stats
// record it wrote.
func soakStats(t *testing.T, cmd *exec.Cmd, out string) events.Stats {
	t.Helper()
	asked := time.Now()
	cmd.Process.Signal(syscall.SIGUSR1)
	var s events.Stats
	waitUntil(t, "a stats record after SIGUSR1", func() bool {
		// The newest records are at the end of FILE, or of FILE.1 when
		// FILE was just started.
		for _, name := range []string{out, out + ".1"} {
			b, _ := os.ReadFile(name)
			lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
			for i := len(lines) - 1; i >= 0; i-- {
				if bytes.Contains(lines[i], []byte(`"type":"stats"`)) {
					if json.Unmarshal(lines[i], &s) == nil && s.Memory != nil && !time.Time(s.Time).Before(asked) {
						return true
					}
					break
				}
			}
		}
		return false
	})
	return s
}
