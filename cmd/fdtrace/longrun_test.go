package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

// driven is a workload started by fdtrace (-- COMMAND) that the test
// drives through fdtrace's stdin and stdout.
type driven struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startDriven(t *testing.T, args ...string) *driven {
	t.Helper()
	d := &driven{cmd: exec.Command(fdtraceBin, args...)}
	d.in, d.out = testutil.StartPiped(t, d.cmd)
	d.expect(t, "ok ready")
	return d
}

// do sends one line to the workload and returns its answer.
func (d *driven) do(t *testing.T, line string) string {
	t.Helper()
	if _, err := io.WriteString(d.in, line+"\n"); err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 1)
	go func() {
		s, _ := d.out.ReadString('\n')
		ch <- strings.TrimSuffix(s, "\n")
	}()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Minute):
		t.Fatalf("no answer to %q", line)
	}
	return ""
}

func (d *driven) expect(t *testing.T, want string) {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		s, _ := d.out.ReadString('\n')
		ch <- strings.TrimSuffix(s, "\n")
	}()
	select {
	case s := <-ch:
		if s != want {
			t.Fatalf("workload said %q, want %q", s, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no %q within 30s", want)
	}
}

// end closes the workload's input, on which it exits, and waits for
// fdtrace, which must exit 0.
func (d *driven) end(t *testing.T) {
	t.Helper()
	d.in.Close()
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("fdtrace: %v", err)
	}
}

// waitUntil polls cond, failing after 30s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countIn(path, s string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), s)
}

// rotatedSet reads path.N ... path.1 and path, oldest first, and fails if
// more than maxFiles rotated files exist.
func rotatedSet(t *testing.T, path string, maxFiles int) []string {
	t.Helper()
	if _, err := os.Stat(fmt.Sprintf("%s.%d", path, maxFiles+1)); err == nil {
		t.Errorf("%s.%d exists: more than --max-files %d kept", path, maxFiles+1, maxFiles)
	}
	var files []string
	for i := maxFiles; i >= 0; i-- {
		name := path
		if i > 0 {
			name = fmt.Sprintf("%s.%d", path, i)
		}
		b, err := os.ReadFile(name)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, string(b))
	}
	return files
}

// fdRecords lists the open and close records as "open 3", "close 3".
func fdRecords(recs []record) []string {
	var out []string
	for _, r := range recs {
		if typ := r.str("type"); typ == "open" || typ == "close" {
			out = append(out, fmt.Sprintf("%s %d", typ, r.num("fd")))
		}
	}
	return out
}

func TestRotationKeepsMaxFilesOfWholeLinesHoldingTheLastRecordsEachOnce(t *testing.T) {
	testutil.RequireRoot(t)
	fdops := testutil.BuildC(t, "fdops", "-static", "-pthread")
	out := filepath.Join(t.TempDir(), "trace.jsonl")
	const n, maxSize, maxFiles = 500, 8 << 10, 4
	var script strings.Builder
	var want []string
	for fd := 3; fd < 3+n; fd++ {
		script.WriteString("open /dev/null\n")
		want = append(want, fmt.Sprintf("open %d", fd))
	}
	for fd := 3; fd < 3+n; fd++ {
		fmt.Fprintf(&script, "close %d\n", fd)
		want = append(want, fmt.Sprintf("close %d", fd))
	}
	res := runFdtrace(t, script.String(), "trace", "-o", out, "--max-size", "8KiB",
		"--max-files", strconv.Itoa(maxFiles), "--", fdops)
	if res.code != 0 {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
	files := rotatedSet(t, out, maxFiles)
	if len(files) != maxFiles+1 {
		t.Fatalf("%d files, want FILE and %d rotated", len(files), maxFiles)
	}
	for i, f := range files {
		if len(f) > maxSize || !strings.HasSuffix(f, "\n") {
			t.Errorf("file %d of %d: %d bytes (at most %d), ends in %q", i+1, len(files), len(f), maxSize, f[len(f)-1:])
		}
	}
	recs := readRecords(t, strings.Join(files, ""))
	got := fdRecords(recs)
	if len(got) == 0 || len(got) >= len(want) || strings.Join(want[len(want)-len(got):], ",") != strings.Join(got, ",") {
		t.Errorf("the kept files hold %d open/close records, not the last ones of %d in order:\n%v", len(got), len(want), got)
	}
	if last := recs[len(recs)-1]; last.str("type") != "stats" || recs[len(recs)-2].str("type") != "process" {
		t.Errorf("the newest file does not end with the process and stats records: %v", recs[len(recs)-2:])
	}
}

func TestSIGHUPAfterTheFileWasMovedReopensItAndLosesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	fdops := testutil.BuildC(t, "fdops", "-static", "-pthread")
	out := filepath.Join(t.TempDir(), "trace.jsonl")
	d := startDriven(t, "trace", "-o", out, "--", fdops)
	for fd := 3; fd <= 5; fd++ {
		if got := d.do(t, "open /dev/null"); got != fmt.Sprintf("ok %d", fd) {
			t.Fatalf("open: %q", got)
		}
	}
	// Once written, the records cannot go to the next file.
	waitUntil(t, "3 open records in the file", func() bool { return countIn(out, `"type":"open"`) == 3 })
	if err := os.Rename(out, out+".1"); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "a new file after SIGHUP", func() bool { _, err := os.Stat(out); return err == nil })
	d.do(t, "open /dev/null")
	d.do(t, "open /dev/null")
	for fd := 3; fd <= 7; fd++ {
		d.do(t, fmt.Sprintf("close %d", fd))
	}
	d.end(t)

	files := rotatedSet(t, out, 1)
	old, cur := readRecords(t, files[0]), readRecords(t, files[1])
	if got := strings.Join(fdRecords(old), ","); got != "open 3,open 4,open 5" || len(old) != 3 {
		t.Errorf("the moved file has %d records, fd records %s; want only open 3, 4, 5", len(old), got)
	}
	want := "open 6,open 7,close 3,close 4,close 5,close 6,close 7"
	if got := strings.Join(fdRecords(cur), ","); got != want {
		t.Errorf("the new file has %s, want %s", got, want)
	}
	if n := len(cur); n < 2 || cur[n-2].str("type") != "process" || cur[n-1].str("type") != "stats" {
		t.Errorf("the new file does not end with the process and stats records")
	}
}

func TestSummaryIntervalWritesProcessAndStatsRecordsRepeatedly(t *testing.T) {
	testutil.RequireRoot(t)
	fdops := testutil.BuildC(t, "fdops", "-static", "-pthread")
	out := filepath.Join(t.TempDir(), "trace.jsonl")
	start := time.Now()
	d := startDriven(t, "trace", "-o", out, "--summary-interval", "200ms", "--", fdops)
	d.do(t, "open /dev/null")
	d.do(t, "open /dev/null")
	waitUntil(t, "3 stats records", func() bool { return countIn(out, `"type":"stats"`) >= 3 })
	d.end(t)
	elapsed := time.Since(start)

	b, _ := os.ReadFile(out)
	recs := readRecords(t, string(b))
	// While fdops runs, each stats record follows its process record.
	stats, whileRunning, exited := 0, 0, false
	for i, r := range recs {
		switch r.str("type") {
		case "process":
			exited = exited || r["exited"] == true
		case "stats":
			stats++
			if mem, _ := r["memory"].(map[string]any); mem["rss_bytes"] == nil {
				t.Errorf("stats record %d has no memory: %v", stats, r)
			}
			if exited {
				continue
			}
			whileRunning++
			if p := recs[i-1]; p.str("type") != "process" || p.num("opened") != 2 || p["exited"] != false {
				t.Errorf("stats record %d follows %v, want fdops' process record, running, with opened 2", stats, p)
			}
		}
	}
	if whileRunning < 3 || stats > int(elapsed/(200*time.Millisecond))+1 {
		t.Errorf("%d stats records while fdops ran, %d in all in %v: want 3 or more, at most one per 200ms", whileRunning, stats, elapsed)
	}
}

func TestLongRunningFlagsRefuseBadInput(t *testing.T) {
	assertRefused(t, []badInput{
		{"a negative size", []string{"trace", "-o", "x", "--max-size", "-1"}, 2,
			"fdtrace: invalid argument \"-1\" for \"--max-size\" flag: a size must not be negative\n"},
		{"a size that is no size", []string{"trace", "-o", "x", "--max-size", "lots"}, 2,
			"fdtrace: invalid argument \"lots\" for \"--max-size\" flag: \"lots\" is not a size (such as 100MiB)\n"},
		{"a size without -o", []string{"trace", "--max-size", "1MiB"}, 2, "fdtrace: --max-size needs -o FILE\n"},
		{"max-files without -o", []string{"trace", "--max-files", "3"}, 2, "fdtrace: --max-files needs -o FILE\n"},
		{"max-files without max-size", []string{"trace", "-o", "x", "--max-files", "3"}, 2,
			"fdtrace: --max-files needs --max-size (without it FILE is never rotated)\n"},
		{"negative max-files", []string{"trace", "-o", "x", "--max-size", "1MiB", "--max-files", "-2"}, 2,
			"fdtrace: --max-files -2: must not be negative\n"},
		{"a negative summary interval", []string{"trace", "--summary-interval", "-1s"}, 2,
			"fdtrace: --summary-interval must be positive\n"},
	})
}

// With rotation, a restart moves the earlier run's FILE aside as FILE.1
// (without, it appends: TestARestartWithoutMaxSizeAppendsToTheOutputFile).
func TestARestartWithMaxSizeKeepsTheEarlierRunsFileAsFILE1(t *testing.T) {
	testutil.RequireRoot(t)
	out := filepath.Join(t.TempDir(), "trace.jsonl")
	for run := range 2 {
		if res := runFdtrace(t, "", "trace", "-o", out, "--max-size", "100MiB", "--", "true"); res.code != 0 {
			t.Fatalf("run %d: exit %d: %s", run, res.code, res.stderr)
		}
	}
	for _, name := range []string{out + ".1", out} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if last := lines[len(lines)-1]; !strings.Contains(last, `"type":"stats"`) {
			t.Errorf("%s does not end with a run's stats record: %q", filepath.Base(name), last)
		}
	}
	if _, err := os.Stat(out + ".2"); err == nil {
		t.Error("two runs left three files")
	}
}

// A restart without --max-size (after a crash, say) appends to FILE: what
// the earlier run wrote stays where it was, and nothing is deleted.
func TestARestartWithoutMaxSizeAppendsToTheOutputFile(t *testing.T) {
	testutil.RequireRoot(t)
	out := filepath.Join(t.TempDir(), "fd.jsonl")
	for run := range 2 {
		r := runFdtrace(t, "", "trace", "-o", out, "--", "sh", "-c", "exec 3</dev/null")
		if r.code != 0 {
			t.Fatalf("run %d: exit %d: %s", run, r.code, r.stderr)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	stats := 0
	for _, r := range readRecords(t, string(b)) {
		if r.str("type") == "stats" {
			stats++
		}
	}
	if stats != 2 {
		t.Errorf("%d stats records in FILE, want one per run", stats)
	}
	if _, err := os.Stat(out + ".1"); !os.IsNotExist(err) {
		t.Errorf("FILE.1 exists (%v): the restart rotated", err)
	}
	if st, err := os.Stat(out); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("FILE has mode %v, want 0600", st.Mode().Perm())
	}
}

// A full disk under -o FILE drops records and says how many, and the
// tracer (its summaries, its metrics) goes on: the command's exit status is
// fdtrace's.
func TestAFullDiskDropsRecordsSaysHowManyAndTracingGoesOn(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip(err)
	}
	r := runFdtrace(t, "", "trace", "-o", "/dev/full", "--", "sh", "-c", "exec 3</dev/null; exit 3")
	if r.code != 3 {
		t.Fatalf("exit %d, want the command's 3: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "records could not be written to /dev/full (output_dropped)") {
		t.Errorf("stderr does not say what was dropped:\n%s", r.stderr)
	}
}
