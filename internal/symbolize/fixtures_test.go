package symbolize

import (
	"bufio"
	"debug/dwarf"
	"debug/elf"
	"debug/gosym"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

// Helpers that build the fixtures of testdata/symbolize and fake a /proc
// mapping them.

func testdata(t *testing.T, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{testutil.RepoRoot(t), "testdata", "symbolize"}, elem...)...)
}

// marker is the line of src whose comment ends in "MARK what".
func marker(t *testing.T, src, what string) int {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		_, rest, ok := strings.Cut(sc.Text(), "MARK "+what)
		if ok && (rest == "" || rest == " */") {
			return n
		}
	}
	t.Fatalf("%s has no marker %q", src, what)
	return 0
}

// buildC compiles testdata/symbolize/fixture.c at -O0 with the given GNU
// build ID (hex) and flags.
func buildC(t *testing.T, name, buildID string, flags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	args := append([]string{"-O0", "-g", "-o", bin, testdata(t, "fixture.c"), "-Wl,--build-id=0x" + buildID}, flags...)
	run(t, "gcc", args...)
	return bin
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// buildGo builds testdata/symbolize/goprog with a known Go build ID and no
// GNU one.
func buildGo(t *testing.T, buildID string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "goprog")
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", bin, "-ldflags=-B=none -buildid="+buildID, ".")
	cmd.Dir = testdata(t, "goprog")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func openELF(t *testing.T, bin string) *elf.File {
	t.Helper()
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ef.Close() })
	return ef
}

// symbolRange is where the function name lies, from .symtab or .dynsym.
func symbolRange(t *testing.T, bin, name string) (lo, hi uint64) {
	t.Helper()
	ef := openELF(t, bin)
	syms, _ := ef.Symbols()
	dyn, _ := ef.DynamicSymbols()
	for _, s := range append(syms, dyn...) {
		if s.Name == name && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			return s.Value, s.Value + s.Size
		}
	}
	t.Fatalf("%s has no symbol %s", bin, name)
	return 0, 0
}

type cLine struct {
	addr uint64
	line int
}

// cLines is bin's DWARF line table in [lo, hi).
func cLines(t *testing.T, bin string, lo, hi uint64) []cLine {
	t.Helper()
	d, err := openELF(t, bin).DWARF()
	if err != nil {
		t.Fatal(err)
	}
	var rows []cLine
	r := d.Reader()
	for {
		cu, err := r.Next()
		if err != nil || cu == nil {
			break
		}
		r.SkipChildren()
		lr, err := d.LineReader(cu)
		if err != nil || lr == nil {
			continue
		}
		var le dwarf.LineEntry
		for lr.Next(&le) == nil {
			if lo <= le.Address && le.Address < hi && !le.EndSequence {
				rows = append(rows, cLine{le.Address, le.Line})
			}
		}
	}
	return rows
}

// startOf is the first address of line's code among rows.
func startOf(t *testing.T, rows []cLine, line int) uint64 {
	t.Helper()
	for _, r := range rows {
		if r.line == line {
			return r.addr
		}
	}
	t.Fatalf("no code for line %d", line)
	return 0
}

// endOf is the first address after line's code among rows: the return
// address when the line ends with a call.
func endOf(t *testing.T, rows []cLine, line int) uint64 {
	t.Helper()
	for i, r := range rows {
		if r.line == line && i+1 < len(rows) && rows[i+1].line != line {
			return rows[i+1].addr
		}
	}
	t.Fatalf("no code after line %d", line)
	return 0
}

// goFunc is the Go function name of bin, with its line table.
func goFunc(t *testing.T, bin, name string) (*gosym.Table, *gosym.Func) {
	t.Helper()
	ef := openELF(t, bin)
	data, err := ef.Section(".gopclntab").Data()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, ef.Section(".text").Addr))
	if err != nil {
		t.Fatal(err)
	}
	fn := tab.LookupFunc(name)
	if fn == nil {
		t.Fatalf("%s has no function %s", bin, name)
	}
	return tab, fn
}

// goStartOf is the first pc of fn at line; goEndOf the first pc after some
// code of line (a pc whose previous byte is at line and which is not).
func goStartOf(t *testing.T, tab *gosym.Table, fn *gosym.Func, line int) uint64 {
	t.Helper()
	for pc := fn.Entry; pc < fn.End; pc++ {
		if _, l, _ := tab.PCToLine(pc); l == line {
			return pc
		}
	}
	t.Fatalf("%s has no code for line %d", fn.Name, line)
	return 0
}

func goEndOf(t *testing.T, tab *gosym.Table, fn *gosym.Func, line int) uint64 {
	t.Helper()
	for pc := fn.Entry + 1; pc < fn.End; pc++ {
		_, prev, _ := tab.PCToLine(pc - 1)
		if _, l, _ := tab.PCToLine(pc); prev == line && l != line {
			return pc
		}
	}
	t.Fatalf("%s has no code after line %d", fn.Name, line)
	return 0
}

// proc is one fake process under a fake /proc.
type proc struct {
	pid   int
	comm  string
	nspid int
	maps  []string
	root  string // target of the root symlink, "" for none
}

func (p proc) write(t *testing.T, procRoot string) {
	t.Helper()
	dir := filepath.Join(procRoot, fmt.Sprint(p.pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	nspid := fmt.Sprint(p.pid)
	if p.nspid != 0 {
		nspid += "\t" + fmt.Sprint(p.nspid)
	}
	files := map[string]string{
		"maps":   strings.Join(p.maps, "\n") + "\n",
		"comm":   p.comm + "\n",
		"status": fmt.Sprintf("Name:\t%s\nTgid:\t%d\nNSpid:\t%s\n", p.comm, p.pid, nspid),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if p.root != "" {
		if err := os.Symlink(p.root, filepath.Join(dir, "root")); err != nil {
			t.Fatal(err)
		}
	}
}

// mapELF gives the maps lines of bin loaded with the given bias (0 for
// non-PIE), page-aligned as the kernel maps PT_LOAD segments.
func mapELF(t *testing.T, bin string, bias uint64) []string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(bin, &st); err != nil {
		t.Fatal(err)
	}
	const page = 0x1000
	var lines []string
	for _, p := range openELF(t, bin).Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		perms := []byte("---p")
		if p.Flags&elf.PF_R != 0 {
			perms[0] = 'r'
		}
		if p.Flags&elf.PF_W != 0 {
			perms[1] = 'w'
		}
		if p.Flags&elf.PF_X != 0 {
			perms[2] = 'x'
		}
		start := bias + p.Vaddr&^(page-1)
		end := (bias + p.Vaddr + p.Filesz + page - 1) &^ (page - 1)
		lines = append(lines, fmt.Sprintf("%x-%x %s %08x %02x:%02x %d                  %s",
			start, end, perms, p.Off&^(page-1), unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino, bin))
	}
	return lines
}
