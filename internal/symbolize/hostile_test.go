package symbolize

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// loadPerfMapWithin loads pid's perf map, failing the test when that does
// not return within a second.
func loadPerfMapWithin(t *testing.T, s *Symbolizer, pid int) *process {
	t.Helper()
	p := &process{nspid: pid}
	done := make(chan struct{})
	go func() {
		s.loadPerfMap(pid, p)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("reading the perf map blocked")
	}
	return p
}

// A FIFO where the perf map should be would block a plain open, and with
// it the reader of every event: it is no perf map.
func TestAFIFOForAPerfMapIsRefusedWithoutBlocking(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	path := fmt.Sprintf("/tmp/perf-%d.map", pid)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip(err)
	}
	defer os.Remove(path)
	p := loadPerfMapWithin(t, New(Options{}), pid)
	if p.perf != nil {
		t.Errorf("a FIFO was read as a perf map: %+v", p.perf)
	}
	if p.perfErr == nil {
		t.Error("no error says why there is no perf map")
	}
}

// A process with a root of its own (a container) names its perf map: a
// link in it, absolute or with "..", resolves inside that root, never on
// the host.
func TestAPerfMapLinkResolvesInTheProcesssRootNotTheHosts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip(err)
	}
	root := t.TempDir()
	src := filepath.Join(root, "pause.c")
	os.WriteFile(src, []byte("#include <unistd.h>\nint main(void) { pause(); return 0; }\n"), 0o644)
	if out, err := exec.Command(gcc, "-static", "-o", filepath.Join(root, "pause"), src).CombinedOutput(); err != nil {
		t.Skipf("no static build: %v: %s", err, out)
	}
	os.Mkdir(filepath.Join(root, "tmp"), 0o755)
	cmd := exec.Command(filepath.Join(root, "pause"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Path = "/pause"
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid

	// A host-only file, which the process cannot see.
	secret := fmt.Sprintf("/tmp/fdtrace-host-only-%d.map", pid)
	if err := os.WriteFile(secret, []byte("1000 10 host_secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(secret)
	for _, target := range []string{secret, "../../../.." + secret} {
		link := filepath.Join(root, "tmp", fmt.Sprintf("perf-%d.map", pid))
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		p := loadPerfMapWithin(t, New(Options{}), pid)
		if p.perf != nil {
			if name, ok := p.perf.lookup(0x1004); ok {
				t.Errorf("link to %s: the host's file was read (%q)", target, name)
			}
		}
	}
}

// A pid is reused by another process: what was read of the first (its
// maps) must not name the second's addresses.
func TestAReusedPidIsSymbolizedWithTheNewProcesssMaps(t *testing.T) {
	bin := buildC(t, "fixture", "c0ffee09", "-pie", "-fPIE")
	lo, _ := symbolRange(t, bin, "open_config")
	procRoot := t.TempDir()
	writeStat := func(start int) {
		stat := fmt.Sprintf("600 (fix) ture) S 1 600 600 0 -1 4194304 1 0 0 0 0 0 0 0 20 0 1 0 %d 1000 10", start)
		if err := os.WriteFile(filepath.Join(procRoot, "600", "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	proc{pid: 600, comm: "fixture", maps: mapELF(t, bin, pieBias), root: "/"}.write(t, procRoot)
	writeStat(1000)
	s := New(Options{ProcRoot: procRoot})
	if got := s.Symbolize(600, []uint64{pieBias + lo}); got[0].Func != "open_config" {
		t.Fatalf("first process: %s", dump(got))
	}
	// The first exits; another gets its pid, with nothing at that address.
	os.RemoveAll(filepath.Join(procRoot, "600"))
	proc{pid: 600, comm: "other", maps: []string{"7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]"}, root: "/"}.write(t, procRoot)
	writeStat(2000)
	if got := s.Symbolize(600, []uint64{pieBias + lo}); got[0].Func != "" || got[0].Module != "" {
		t.Errorf("the new process's address was named from the old one's maps: %s", dump(got))
	}
}

// Where neither map_files nor the process's root opens the mapped file,
// the path in fdtrace's own view is used only if it is the very file
// mapped (device and inode): in a container it may name another file here.
func TestAPathInFdtracesViewIsUsedOnlyForTheMappedFile(t *testing.T) {
	bin := buildC(t, "fixture", "c0ffee0a", "-pie", "-fPIE")
	lo, _ := symbolRange(t, bin, "open_config")
	var st unix.Stat_t
	if err := unix.Stat(bin, &st); err != nil {
		t.Fatal(err)
	}
	var maps []string
	for _, l := range mapELF(t, bin, pieBias) {
		// The mapped file's inode is not the one at this path here.
		maps = append(maps, strings.Replace(l, fmt.Sprintf(" %d ", st.Ino), fmt.Sprintf(" %d ", st.Ino+1), 1))
	}
	procRoot := t.TempDir()
	proc{pid: 700, comm: "fixture", maps: maps}.write(t, procRoot) // no root link, no map_files
	s := New(Options{ProcRoot: procRoot})
	if got := s.Symbolize(700, []uint64{pieBias + lo}); got[0].Func != "" {
		t.Errorf("named from a file that is not the mapped one: %s", dump(got))
	}
	// The same, with the right inode: named.
	os.RemoveAll(filepath.Join(procRoot, "700"))
	proc{pid: 700, comm: "fixture", maps: mapELF(t, bin, pieBias)}.write(t, procRoot)
	s = New(Options{ProcRoot: procRoot})
	if got := s.Symbolize(700, []uint64{pieBias + lo}); got[0].Func != "open_config" {
		t.Errorf("the mapped file itself: %s", dump(got))
	}
}

// Every process may map files of its own: the parsed files kept for
// processes to come stay bounded, the newest kept.
func TestTheCacheOfParsedFilesStaysBounded(t *testing.T) {
	s := New(Options{})
	for i := range 3 * maxModules {
		s.cache(fmt.Sprintf("fd:01:%d", i), &module{buildID: fmt.Sprintf("%040x", i)})
	}
	if n := len(s.modules); n > 2*maxModules {
		t.Errorf("%d cache entries for %d files, want at most %d", n, 3*maxModules, 2*maxModules)
	}
	if s.modules[fmt.Sprintf("fd:01:%d", 3*maxModules-1)] == nil {
		t.Error("the newest file was dropped")
	}
	if s.modules["fd:01:0"] != nil || s.modules[fmt.Sprintf("build-id:%040x", 0)] != nil {
		t.Error("the oldest file (or its build-id alias) is still kept")
	}
}

// Processes that map many files, or files crafted to be huge, keep the
// parsed files within the budget: the oldest go (and are read again when
// needed), one over the budget alone is not read.
func TestTheParsedFilesStayWithinTheBudgetAcrossProcessesAndFiles(t *testing.T) {
	const files = 4
	procRoot := t.TempDir()
	bins := make([]string, files)
	var each int64
	for i := range bins {
		bins[i] = buildC(t, fmt.Sprintf("fixture%d", i), fmt.Sprintf("b0d9e7%02x", i), "-no-pie")
		proc{pid: 100 + i, comm: "fixture", maps: mapELF(t, bins[i], 0), root: "/"}.write(t, procRoot)
		each = max(each, cost(openELF(t, bins[i])))
	}
	lo, _ := symbolRange(t, bins[0], "open_config") // the same in each
	budget := 2*each + each/2                       // two files at a time
	s := New(Options{ProcRoot: procRoot, DebugDir: t.TempDir(), Budget: budget})
	for round := range 2 {
		for i := range bins {
			f := s.Symbolize(100+i, []uint64{lo + 1})
			if len(f) == 0 || f[0].Func != "open_config" {
				t.Fatalf("round %d, file %d: %s, want open_config", round, i, dump(f))
			}
			if used, _ := s.Usage(); used > budget {
				t.Fatalf("the parsed files take %d bytes, over the budget of %d", used, budget)
			}
		}
	}
	if n := len(s.order); n != 2 {
		t.Errorf("%d files kept, want the 2 the budget holds", n)
	}

	small := New(Options{ProcRoot: procRoot, DebugDir: t.TempDir(), Budget: each / 2})
	f := small.Symbolize(100, []uint64{lo + 1})
	if len(f) != 1 || f[0].Func != "" || f[0].Module != bins[0] || f[0].Offset != lo+1 || f[0].BuildID != "b0d9e700" {
		t.Errorf("a file over the budget gave %s, want its path, offset and build ID only", dump(f))
	}
	if used, refused := small.Usage(); used != 0 || refused != 1 {
		t.Errorf("usage %d bytes, %d refused; want 0 and 1", used, refused)
	}
	if w := small.Warnings(); len(w) != 1 || !strings.Contains(w[0], "budget") {
		t.Errorf("warnings %q, want one on the budget", w)
	}
}
