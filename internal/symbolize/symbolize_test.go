package symbolize

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const pieBias = 0x555555554000

// short keeps the base name of File, so that wants stay readable.
func short(frames []Frame) []Frame {
	out := slices.Clone(frames)
	for i := range out {
		if out[i].File != "" {
			out[i].File = filepath.Base(out[i].File)
		}
	}
	return out
}

func checkFrames(t *testing.T, got, want []Frame) {
	t.Helper()
	if got = short(got); !reflect.DeepEqual(got, want) {
		t.Errorf("frames:\n got %s\nwant %s", dump(got), dump(want))
	}
}

func dump(frames []Frame) string {
	var b strings.Builder
	for _, f := range frames {
		fmt.Fprintf(&b, "\n  %+v", f)
	}
	return b.String()
}

func TestSymbolizesCFunctionsInEveryKindOfELF(t *testing.T) {
	src := testdata(t, "fixture.c")
	line := func(what string) int { return marker(t, src, what) }
	for _, tc := range []struct {
		name    string
		buildID string
		flags   []string
		bias    uint64
		strip   bool // only .dynsym, no DWARF
	}{
		{name: "non-PIE at its link address", buildID: "c0ffee01", flags: []string{"-no-pie"}},
		{name: "PIE at a random base", buildID: "c0ffee02", flags: []string{"-pie", "-fPIE"}, bias: pieBias},
		{name: "PIE stripped to its .dynsym", buildID: "c0ffee03", flags: []string{"-pie", "-fPIE", "-rdynamic"}, bias: pieBias, strip: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := buildC(t, "fixture", tc.buildID, tc.flags...)
			openLo, _ := symbolRange(t, bin, "open_config")
			_, loadHi := symbolRange(t, bin, "load_settings")
			rows := cLines(t, bin, openLo, loadHi)
			if tc.strip {
				run(t, "strip", "--strip-all", bin)
			}
			procRoot := t.TempDir()
			proc{pid: 100, comm: "fixture", maps: mapELF(t, bin, tc.bias), root: "/"}.write(t, procRoot)

			frame := func(vaddr uint64, fn string, line int, inlined bool) Frame {
				f := Frame{Addr: vaddr + tc.bias, Func: fn, Module: bin, Offset: vaddr, BuildID: tc.buildID, Inlined: inlined}
				if !tc.strip {
					f.File, f.Line = "fixture.c", line
				}
				return f
			}
			inlineBody := startOf(t, rows, line("inline body"))
			retIntoLoad := endOf(t, rows, line("open_config call"))
			openCall := startOf(t, rows, line("open call"))
			inlined := []Frame{
				frame(inlineBody, "config_flags", line("inline body"), true),
				frame(inlineBody, "open_config", line("inline call"), false),
			}
			if tc.strip { // no DWARF: no inlined calls either
				inlined = []Frame{frame(inlineBody, "open_config", 0, false)}
			}
			for _, c := range []struct {
				name  string
				addrs []uint64
				want  []Frame
			}{
				{
					name:  "the first instructions of a function name it",
					addrs: []uint64{openLo + tc.bias + 1},
					want:  []Frame{frame(openLo+1, "open_config", line("open_config"), false)},
				},
				{
					name:  "a return address is looked up one byte back, the first address exactly",
					addrs: []uint64{openCall + tc.bias, retIntoLoad + tc.bias},
					want: []Frame{
						frame(openCall, "open_config", line("open call"), false),
						frame(retIntoLoad, "load_settings", line("open_config call"), false),
					},
				},
				{
					name:  "a return address as the first frame is the next line",
					addrs: []uint64{retIntoLoad + tc.bias},
					want:  []Frame{frame(retIntoLoad, "load_settings", line("open_config call")+1, false)},
				},
				{
					name:  "an inlined call expands into the inlined function and its caller",
					addrs: []uint64{inlineBody + tc.bias},
					want:  inlined,
				},
				{
					name:  "an address outside every mapping stays bare",
					addrs: []uint64{0x10},
					want:  []Frame{{Addr: 0x10}},
				},
			} {
				t.Run(c.name, func(t *testing.T) {
					s := New(Options{ProcRoot: procRoot, DebugDir: t.TempDir()})
					checkFrames(t, s.Symbolize(100, c.addrs), c.want)
				})
			}
		})
	}
}

func TestSymbolizesAStrippedBinaryWithItsSeparateDebugFile(t *testing.T) {
	const buildID = "c0ffee0400000000"
	bin := buildC(t, "fixture", buildID, "-pie", "-fPIE")
	lo, _ := symbolRange(t, bin, "open_config")
	debugDir := t.TempDir()
	dbg := filepath.Join(debugDir, ".build-id", buildID[:2], buildID[2:]+".debug")
	if err := os.MkdirAll(filepath.Dir(dbg), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "objcopy", "--only-keep-debug", bin, dbg)
	run(t, "strip", "--strip-all", bin) // no .dynsym entry for open_config either
	procRoot := t.TempDir()
	proc{pid: 100, comm: "fixture", maps: mapELF(t, bin, pieBias)}.write(t, procRoot)

	s := New(Options{ProcRoot: procRoot, DebugDir: debugDir})
	want := []Frame{{Addr: pieBias + lo, Func: "open_config", File: "fixture.c", Line: marker(t, testdata(t, "fixture.c"), "open_config"),
		Module: bin, Offset: lo, BuildID: buildID}}
	checkFrames(t, s.Symbolize(100, []uint64{pieBias + lo}), want)
}

func TestSymbolizesGoFunctionsAndTheirInlinedCalls(t *testing.T) {
	const buildID = "fdtrace-symbolize-test"
	bin := buildGo(t, buildID)
	src := testdata(t, "goprog", "main.go")
	line := func(what string) int { return marker(t, src, what) }
	tab, fn := goFunc(t, bin, "main.openConfig")
	procRoot := t.TempDir()
	proc{pid: 200, comm: "goprog", maps: mapELF(t, bin, 0), root: "/"}.write(t, procRoot)
	frame := func(pc uint64, fn, what string, inlined bool) Frame {
		return Frame{Addr: pc, Func: fn, File: "main.go", Line: line(what), Module: bin, Offset: pc, BuildID: buildID, Inlined: inlined}
	}
	inlineBody := goStartOf(t, tab, fn, line("inline body"))
	afterOpen := goEndOf(t, tab, fn, line("open call"))
	for _, c := range []struct {
		name  string
		addrs []uint64
		want  []Frame
	}{
		{
			name:  "the entry of a noinline function names it at its declaration",
			addrs: []uint64{fn.Entry},
			want:  []Frame{frame(fn.Entry, "main.openConfig", "openConfig", false)},
		},
		{
			name:  "code inlined from another function expands into two frames",
			addrs: []uint64{inlineBody},
			want: []Frame{
				frame(inlineBody, "main.configName", "inline body", true),
				frame(inlineBody, "main.openConfig", "inline call", false),
			},
		},
		{
			name:  "a return address is looked up one byte back",
			addrs: []uint64{fn.Entry, afterOpen},
			want: []Frame{
				frame(fn.Entry, "main.openConfig", "openConfig", false),
				frame(afterOpen, "main.openConfig", "open call", false),
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := New(Options{ProcRoot: procRoot})
			checkFrames(t, s.Symbolize(200, c.addrs), c.want)
		})
	}
}

//go:noinline
func liveTarget() int { return 42 }

//go:noinline
func liveStack() []uintptr {
	pcs := make([]uintptr, 16)
	return pcs[:runtime.Callers(1, pcs)]
}

func TestSymbolizesTheTestProcessItself(t *testing.T) {
	entry := reflect.ValueOf(liveTarget).Pointer()
	stack := liveStack()[:2] // liveStack, then this test
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want := []Frame{{Func: runtime.FuncForPC(entry).Name()}}
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		want = append(want, Frame{Func: f.Function, File: filepath.Base(f.File), Line: f.Line})
		if !more {
			break
		}
	}
	addrs := []uint64{uint64(entry), uint64(stack[0]), uint64(stack[1])}
	got := short(New(Options{}).Symbolize(os.Getpid(), addrs))
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d: %s", len(got), len(want), dump(got))
	}
	for i := range got {
		if got[i].Module != exe || got[i].BuildID == "" || got[i].Addr != addrs[i] {
			t.Errorf("frame %d: %+v, want module %s and a build ID", i, got[i], exe)
		}
		if i == 0 {
			want[0].File, want[0].Line = got[0].File, got[0].Line // not asserted
		}
		g := Frame{Func: got[i].Func, File: got[i].File, Line: got[i].Line}
		if g != want[i] {
			t.Errorf("frame %d: got %+v, want %+v", i, g, want[i])
		}
	}
	if !strings.HasSuffix(got[0].Func, ".liveTarget") {
		t.Errorf("first frame is %q, want liveTarget", got[0].Func)
	}
}

func TestSymbolizesJITCodeThroughThePerfMap(t *testing.T) {
	perfMap, err := os.ReadFile(testdata(t, "perf-4242.map"))
	if err != nil {
		t.Fatal(err)
	}
	const jit = "7f3a10000000-7f3a10010000 r-xp 00000000 00:00 0 "
	for _, tc := range []struct {
		name  string
		pid   int
		nspid int // 0: same as pid
		file  string
	}{
		{name: "a process in the host pid namespace", pid: 4242, file: "/tmp/perf-4242.map"},
		{name: "a process in a container names its map by its own pid", pid: 5000, nspid: 4242, file: "/tmp/perf-4242.map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			procRoot, root := t.TempDir(), t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, tc.file), perfMap, 0o644); err != nil {
				t.Fatal(err)
			}
			proc{pid: tc.pid, nspid: tc.nspid, comm: "node", maps: []string{jit}, root: root}.write(t, procRoot)
			s := New(Options{ProcRoot: procRoot})
			got := s.Symbolize(tc.pid, []uint64{0x7f3a10001010, 0x7f3a10001041, 0x7f3a10002000})
			want := []Frame{
				{Addr: 0x7f3a10001010, Func: "openConfig", File: "config.js", Line: 12, Module: tc.file},
				{Addr: 0x7f3a10001041, Func: "readSettings", File: "settings.js", Line: 3, Module: tc.file},
				{Addr: 0x7f3a10002000},
			}
			checkFrames(t, got, want)
			if w := s.Warnings(); len(w) != 0 {
				t.Errorf("warnings %q, want none: the perf map exists", w)
			}
		})
	}
}

func TestReadsV8PerfMapNames(t *testing.T) {
	for _, tc := range []struct {
		name, fn, file string
		line           int
	}{
		{"JS:~handleUpload /srv/app/server.js:25:22", "handleUpload", "/srv/app/server.js", 25},
		{"JS:^saveUpload /srv/app/server.js:19:20", "saveUpload", "/srv/app/server.js", 19},
		{"JS:*openSync node:fs:590:18", "openSync", "node:fs", 590},
		{"JS:~ /srv/app/server.js:44:35", "(anonymous)", "/srv/app/server.js", 44},
		{"LazyCompile:*readSettings /srv/app/settings.js:3", "readSettings", "/srv/app/settings.js", 3},
		{"Builtin:InterpreterEntryTrampoline", "Builtin:InterpreterEntryTrampoline", "", 0},
		{"java.lang.String::hashCode", "java.lang.String::hashCode", "", 0},
		{"JS:~odd name without a location", "JS:~odd name without a location", "", 0},
	} {
		fn, file, line := jsFrame(tc.name)
		if fn != tc.fn || file != tc.file || line != tc.line {
			t.Errorf("jsFrame(%q) = %q %q %d, want %q %q %d", tc.name, fn, file, line, tc.fn, tc.file, tc.line)
		}
	}
}

func TestWarnsOncePerProcessAboutJITCodeWithoutAPerfMap(t *testing.T) {
	for _, tc := range []struct {
		comm string
		want string
	}{
		{"node", "pid 4242 (node) runs JIT code but has no /tmp/perf-4242.map: start it with node --perf-basic-prof"},
		{"java", "pid 4242 (java) runs JIT code without a perf map (/tmp/perf-4242.map): frames in it stay unnamed"},
	} {
		t.Run(tc.comm, func(t *testing.T) {
			procRoot := t.TempDir()
			maps := []string{"7f3a10000000-7f3a10010000 r-xp 00000000 00:00 0 "}
			proc{pid: 4242, comm: tc.comm, maps: maps, root: t.TempDir()}.write(t, procRoot)
			s := New(Options{ProcRoot: procRoot})
			for range 2 {
				checkFrames(t, s.Symbolize(4242, []uint64{0x7f3a10001010}), []Frame{{Addr: 0x7f3a10001010}})
			}
			if got := s.Warnings(); !slices.Equal(got, []string{tc.want}) {
				t.Errorf("warnings %q, want %q", got, tc.want)
			}
			if got := s.Warnings(); len(got) != 0 {
				t.Errorf("warnings %q after they were taken, want none", got)
			}
		})
	}
}

func TestSymbolizesAfterTheProcessExited(t *testing.T) {
	bin := buildC(t, "fixture", "c0ffee05", "-pie", "-fPIE")
	lo, _ := symbolRange(t, bin, "open_config")
	procRoot := t.TempDir()
	proc{pid: 300, comm: "fixture", maps: mapELF(t, bin, pieBias), root: "/"}.write(t, procRoot)

	s := New(Options{ProcRoot: procRoot})
	if err := s.Snapshot(300); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(procRoot, "300")); err != nil {
		t.Fatal(err)
	}
	got := s.Symbolize(300, []uint64{pieBias + lo})
	if len(got) != 1 || got[0].Func != "open_config" || got[0].Line == 0 {
		t.Errorf("after exit: %s, want open_config with its line", dump(got))
	}

	s.Forget(300)
	checkFrames(t, s.Symbolize(300, []uint64{pieBias + lo}), []Frame{{Addr: pieBias + lo}})
	if err := s.Snapshot(300); err == nil {
		t.Error("Snapshot of an exited process succeeded")
	}
}

func TestReadsTheMapsAgainForAnAddressInANewMapping(t *testing.T) {
	bin := buildC(t, "fixture", "c0ffee06", "-pie", "-fPIE")
	lo, _ := symbolRange(t, bin, "open_config")
	procRoot := t.TempDir()
	p := proc{pid: 400, comm: "fixture", maps: []string{"7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]"}}
	p.write(t, procRoot)
	s := New(Options{ProcRoot: procRoot})
	if err := s.Snapshot(400); err != nil {
		t.Fatal(err)
	}
	// The fixture is mapped later, like a library opened with dlopen.
	p.maps = append(mapELF(t, bin, pieBias), p.maps...) // sorted, as the kernel lists them
	if err := os.RemoveAll(filepath.Join(procRoot, "400")); err != nil {
		t.Fatal(err)
	}
	p.write(t, procRoot)
	got := s.Symbolize(400, []uint64{0x7ffd00000100, pieBias + lo + 1})
	want := []string{"", "open_config"}
	if len(got) != 2 || got[0].Module != "[stack]" || got[0].Func != want[0] || got[1].Func != want[1] {
		t.Errorf("got %s, want [stack] then open_config", dump(got))
	}
}

func TestIsSafeForConcurrentUse(t *testing.T) {
	bin := buildC(t, "fixture", "c0ffee07", "-pie", "-fPIE")
	lo, _ := symbolRange(t, bin, "open_config")
	procRoot := t.TempDir()
	for pid := 500; pid < 504; pid++ {
		proc{pid: pid, comm: "fixture", maps: mapELF(t, bin, pieBias), root: "/"}.write(t, procRoot)
	}
	s := New(Options{ProcRoot: procRoot})
	var wg sync.WaitGroup
	for pid := 500; pid < 504; pid++ {
		wg.Go(func() {
			for range 20 {
				if got := s.Symbolize(pid, []uint64{pieBias + lo}); got[0].Func != "open_config" {
					t.Errorf("pid %d: %s", pid, dump(got))
					return
				}
			}
			s.Forget(pid)
		})
	}
	wg.Wait()
	if n := len(s.modules); n != 2 { // one module, by inode and by build ID
		t.Errorf("%d module cache entries for one file, want 2", n)
	}
}

func TestSymbolizesAFunctionOfASharedLibraryInALiveProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	pid := cmd.Process.Pid
	// Wait until the dynamic loader has mapped libc.
	var libc *mapping
	for deadline := time.Now().Add(10 * time.Second); libc == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("sleep has no executable libc mapping")
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			t.Fatal(err)
		}
		maps, err := parseMaps(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range maps {
			if strings.Contains(filepath.Base(m.path), "libc.so") && m.exec() {
				libc = m
			}
		}
	}
	// Where clock_nanosleep is in the file, then in the process.
	ef := openELF(t, libc.path)
	syms, err := ef.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	var vaddr uint64
	names := map[string]bool{}
	for _, s := range syms {
		if s.Name == "clock_nanosleep" && s.Value != 0 {
			vaddr = s.Value
		}
	}
	for _, s := range syms {
		if s.Value == vaddr && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			names[s.Name] = true // aliases
		}
	}
	var addr uint64
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr <= vaddr && vaddr < p.Vaddr+p.Filesz {
			addr = libc.start + (vaddr - p.Vaddr + p.Off) - libc.offset
		}
	}
	if vaddr == 0 || !libc.contains(addr) {
		t.Fatalf("clock_nanosleep of %s at %#x is not in %+v", libc.path, vaddr, libc)
	}
	got := New(Options{}).Symbolize(pid, []uint64{addr + 2})
	if len(got) == 0 || !names[got[0].Func] || got[0].Module != libc.path || got[0].Offset != vaddr+2 {
		t.Errorf("got %s, want one of %v in %s at offset %#x", dump(got), names, libc.path, vaddr+2)
	}
}

func TestSymbolizesADeletedBinaryThroughMapFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("opening /proc/PID/map_files needs CAP_SYS_ADMIN (run as root)")
	}
	bin := buildC(t, "fixture", "c0ffee08", "-pie", "-fPIE")
	lo, _ := symbolRange(t, bin, "open_config")
	cmd := exec.Command(bin, "/dev/null")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "loaded\n" {
		t.Fatalf("fixture said %q (%v), want loaded", line, err)
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	s := New(Options{})
	var base uint64
	for _, line := range strings.Split(readFile(t, fmt.Sprintf("/proc/%d/maps", cmd.Process.Pid)), "\n") {
		if strings.HasSuffix(line, bin+" (deleted)") && base == 0 {
			maps, err := parseMaps(strings.NewReader(line))
			if err != nil {
				t.Fatal(err)
			}
			base = maps[0].start - maps[0].offset // the first PT_LOAD is at vaddr 0
		}
	}
	if base == 0 {
		t.Fatalf("%s (deleted) is not in the fixture's maps", bin)
	}
	got := s.Symbolize(cmd.Process.Pid, []uint64{base + lo})
	want := []Frame{{Addr: base + lo, Func: "open_config", File: "fixture.c", Line: marker(t, testdata(t, "fixture.c"), "open_config"),
		Module: bin, Offset: lo, BuildID: "c0ffee08"}}
	checkFrames(t, got, want)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
