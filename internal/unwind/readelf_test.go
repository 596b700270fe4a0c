package unwind

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const fixtureSource = "../../testdata/unwind/fixture.c"

// buildFixture compiles testdata/unwind/fixture.c with gcc and the given
// flags into dir/name.
func buildFixture(t *testing.T, name string, flags ...string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed (CI installs it): cannot build the C fixture")
	}
	out := filepath.Join(t.TempDir(), name)
	args := append([]string{"-O2", "-fomit-frame-pointer", "-o", out}, flags...)
	args = append(args, fixtureSource)
	if b, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out
}

func rowsOf(t *testing.T, path string) []Row {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := Rows(f)
	if err != nil {
		t.Fatalf("Rows(%s): %v", path, err)
	}
	checkInvariants(t, rows)
	for _, r := range rows {
		if r.CFA != CFAPLT {
			continue
		}
		if s := sectionAt(f, r.PC); s == nil || !strings.HasPrefix(s.Name, ".plt") {
			t.Errorf("%s: %v is a PLT row outside .plt", path, r)
		}
	}
	return rows
}

// checkInvariants checks what Rows promises of any result.
func checkInvariants(t testing.TB, rows []Row) {
	t.Helper()
	for i, r := range rows {
		if (r.CFA == CFANone || r.CFA == CFAEnd) && (r.Offset != 0 || r.RBPOffset != 0) {
			t.Fatalf("row %d %v: offsets on a %v row", i, r, r.CFA)
		}
		if r.CFA > CFAEnd {
			t.Fatalf("row %d %v: unknown kind", i, r)
		}
		if i == 0 {
			continue
		}
		if r.PC <= rows[i-1].PC {
			t.Fatalf("row %d %v: PC not above row %d %v", i, r, i-1, rows[i-1])
		}
		if sameRule(r, rows[i-1]) {
			t.Fatalf("row %d %v: same rule as row %d %v", i, r, i-1, rows[i-1])
		}
	}
	if n := len(rows); n > 0 && rows[n-1].CFA != CFANone {
		t.Fatalf("last row %v is not CFANone", rows[n-1])
	}
}

// lookup returns the row that applies at pc.
func lookup(rows []Row, pc uint64) (Row, bool) {
	i := sort.Search(len(rows), func(i int) bool { return rows[i].PC > pc })
	if i == 0 {
		return Row{}, false
	}
	return rows[i-1], true
}

// readelfFDE is one FDE as `readelf --debug-dump=frames-interp` prints it.
type readelfFDE struct {
	start, end uint64
	debug      bool // in .debug_frame
	rows       []readelfRow
}

type readelfRow struct {
	loc          uint64
	cfa, rbp, ra string // the columns; rbp "" when not printed
}

var (
	fdeHeader = regexp.MustCompile(`FDE cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)`)
	cieHeader = regexp.MustCompile(`^([0-9a-f]+) [0-9a-f]+ [0-9a-f]+ CIE`)
)

// readelfFrames runs readelf on path. readelf prints no rows for an FDE
// whose instructions are all nops; such an FDE gets its CIE's rule as a
// row at its start.

func readelfFrames(t *testing.T, path string) []readelfFDE {
	t.Helper()
	readelf, err := exec.LookPath("readelf")
	if err != nil {
		t.Skip("readelf (binutils) not installed: nothing to compare with")
	}
	// no-follow-links: with a debug package installed readelf would also
	// dump the separate debug file, whose .eh_frame is NOBITS, and fail.
	cmd := exec.Command(readelf, "--debug-dump=frames-interp", "--debug-dump=no-follow-links", path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var fdes []readelfFDE
	var cur *readelfFDE
	type cieKey struct {
		debug bool
		off   uint64
	}
	cies := map[cieKey]*readelfFDE{} // the CIE's initial row, in rows
	fdeCIE := map[int]cieKey{}       // of each FDE, by index
	var cols []string
	debug := false
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Contents of the "):
			debug = strings.Contains(line, ".debug_frame")
			cur = nil
		case strings.Contains(line, " CIE"):
			m := cieHeader.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("readelf: unexpected CIE line %q", line)
			}
			off, _ := strconv.ParseUint(m[1], 16, 64)
			cur = &readelfFDE{}
			cies[cieKey{debug, off}] = cur
		case strings.Contains(line, " FDE "):
			m := fdeHeader.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("readelf: unexpected FDE line %q", line)
			}
			cieOff, _ := strconv.ParseUint(m[1], 16, 64)
			start, _ := strconv.ParseUint(m[2], 16, 64)
			end, _ := strconv.ParseUint(m[3], 16, 64)
			fdeCIE[len(fdes)] = cieKey{debug, cieOff}
			fdes = append(fdes, readelfFDE{start: start, end: end, debug: debug})
			cur = &fdes[len(fdes)-1]
		case strings.HasPrefix(line, "   LOC "):
			cols = strings.Fields(line)[2:]
		case cur != nil && len(line) > 16 && line[16] == ' ':
			var f []string // a register rule is two words: "r9 (r9)"
			for _, w := range strings.Fields(line) {
				if strings.HasPrefix(w, "(") && len(f) > 0 {
					f[len(f)-1] += " " + w
				} else {
					f = append(f, w)
				}
			}
			loc, err := strconv.ParseUint(f[0], 16, 64)
			if err != nil || len(f) != 2+len(cols) {
				t.Fatalf("readelf: unexpected row %q under columns %q", line, cols)
			}
			row := readelfRow{loc: loc, cfa: f[1]}
			for i, c := range cols {
				switch c {
				case "rbp":
					row.rbp = f[2+i]
				case "ra":
					row.ra = f[2+i]
				}
			}
			cur.rows = append(cur.rows, row)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("readelf: %v", err)
	}
	for i := range fdes {
		if c := cies[fdeCIE[i]]; len(fdes[i].rows) == 0 && c != nil && len(c.rows) > 0 {
			row := c.rows[len(c.rows)-1]
			row.loc = fdes[i].start
			fdes[i].rows = []readelfRow{row}
		}
	}
	return fdes
}

// owned returns the FDEs with the part of their range Rows uses for them:
// .debug_frame FDEs only where no .eh_frame FDE is, and of overlapping
// FDEs the first by start.
func owned(fdes []readelfFDE) []readelfFDE {
	var eh, out []readelfFDE
	for _, f := range fdes {
		if !f.debug && f.start < f.end {
			eh = append(eh, f)
		}
	}
	for _, f := range fdes {
		if f.start >= f.end {
			continue
		}
		if f.debug {
			shadowed := false
			for _, e := range eh {
				if e.start < f.end && f.start < e.end {
					shadowed = true
					break
				}
			}
			if shadowed {
				continue
			}
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].start < out[j].start })
	var covered uint64
	kept := out[:0]
	for i, f := range out {
		if i > 0 && f.start < covered {
			if f.end <= covered {
				continue
			}
			f.start = covered
		}
		covered = f.end
		kept = append(kept, f)
	}
	return kept
}

// comparison counts what a comparison with readelf saw.
type comparison struct {
	rows       int             // readelf rows compared
	kinds      map[CFAKind]int // of those, by the kind Rows gives
	rbpSaved   int             // of those, with RBPOffset set
	accepted   map[string]int  // rows readelf gives a rule for that Rows deliberately does not
	mismatches int
}

// compareWithReadelf checks Rows against readelf's interpretation at every
// location readelf prints a row for.
func compareWithReadelf(t *testing.T, path string, rows []Row, fdes []readelfFDE) comparison {
	t.Helper()
	c := comparison{accepted: map[string]int{}, kinds: map[CFAKind]int{}}
	for _, f := range owned(fdes) {
		for i, want := range f.rows {
			if i+1 < len(f.rows) && f.rows[i+1].loc == want.loc {
				continue // an advance by 0: the later row holds
			}
			if want.loc < f.start || want.loc >= f.end {
				continue
			}
			got, ok := lookup(rows, want.loc)
			c.rows++
			c.kinds[got.CFA]++
			if got.RBPOffset != 0 {
				c.rbpSaved++
			}
			if why := mismatch(got, ok, want, &c); why != "" {
				c.mismatches++
				if c.mismatches <= 20 {
					t.Errorf("%s: at %#x (FDE %#x..%#x) readelf has CFA %s rbp %q ra %s, Rows has %v: %s",
						filepath.Base(path), want.loc, f.start, f.end, want.cfa, want.rbp, want.ra, got, why)
				}
			}
		}
	}
	return c
}

var cfaRule = regexp.MustCompile(`^([a-z0-9]+)([+-][0-9]+)$`)

// mismatch says how got differs from readelf's row, or "" if it agrees.
func mismatch(got Row, ok bool, want readelfRow, c *comparison) string {
	if !ok {
		return "no row"
	}
	if want.ra == "u" {
		if got.CFA != CFAEnd {
			return "want CFAEnd (return address undefined)"
		}
		return ""
	}
	switch m := cfaRule.FindStringSubmatch(want.cfa); {
	case want.cfa == "exp":
		if got.CFA == CFAPLT {
			c.accepted["CFA exp: the .plt expression"]++
			break
		}
		if got.CFA != CFANone {
			return "want CFAPLT or CFANone for an expression"
		}
		c.accepted["CFA exp, not the .plt one: CFANone"]++
		return ""
	case m == nil:
		return "cannot parse readelf's CFA"
	case m[1] == "rsp" || m[1] == "rbp":
		off, _ := strconv.ParseInt(m[2], 10, 32)
		kind := CFASP
		if m[1] == "rbp" {
			kind = CFAFP
		}
		if got.CFA != kind || int64(got.Offset) != off {
			return fmt.Sprintf("want %v%+d", kind, off)
		}
	default:
		if got.CFA != CFANone {
			return "want CFANone for a CFA in " + m[1]
		}
		c.accepted["CFA in "+m[1]+": CFANone"]++
		return ""
	}
	var rbp int64
	switch {
	case want.rbp == "" || want.rbp == "u" || want.rbp == "s":
	case strings.HasPrefix(want.rbp, "c"):
		rbp, _ = strconv.ParseInt(want.rbp[1:], 10, 32)
	default:
		c.accepted["rbp "+strings.TrimRight(want.rbp, "+-0123456789")+": 0"]++
	}
	if int64(got.RBPOffset) != rbp {
		return fmt.Sprintf("want rbp at CFA%+d", rbp)
	}
	return ""
}

// runComparison compares Rows and readelf on path and logs the counts.
func runComparison(t *testing.T, path string) []Row {
	t.Helper()
	fdes := readelfFrames(t, path)
	rows := rowsOf(t, path)
	checkEveryFDEIsRead(t, path, fdes)
	c := compareWithReadelf(t, path, rows, fdes)
	if c.rows == 0 {
		t.Fatalf("%s: readelf printed no rows to compare", path)
	}
	t.Logf("%s: %d FDEs, %d rows; compared %d readelf rows, %d mismatches", path, len(fdes), len(rows), c.rows, c.mismatches)
	t.Logf("  compared by kind: %v; with rbp saved: %d", c.kinds, c.rbpSaved)
	for _, k := range sortedKeys(c.accepted) {
		t.Logf("  accepted %6d: %s", c.accepted[k], k)
	}
	return rows
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestRowsAgreeWithReadelfOnTheFixtureLibrary(t *testing.T) {
	runComparison(t, buildFixture(t, "libfixture.so", "-shared", "-fPIC"))
}

func TestRowsAgreeWithReadelfOnTheFixtureExecutable(t *testing.T) {
	runComparison(t, buildFixture(t, "fixture", "-DFIX_MAIN"))
}

func TestRowsAgreeWithReadelfOnLibc(t *testing.T) {
	const libc = "/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(libc); err != nil {
		t.Skipf("no %s", libc)
	}
	runComparison(t, libc)
}

func TestRowsAgreeWithReadelfOnNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	if node, err = filepath.EvalSymlinks(node); err != nil {
		t.Fatal(err)
	}
	runComparison(t, node)
}

func TestRowsReadDebugFrameWhenThereIsNoEhFrame(t *testing.T) {
	path := buildFixture(t, "fixture-debug-frame", "-DFIX_MAIN", "-fno-asynchronous-unwind-tables", "-g")
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Section(".debug_frame") == nil {
		t.Fatal("gcc -fno-asynchronous-unwind-tables -g wrote no .debug_frame")
	}
	rows := runComparison(t, path)
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	fromDebug := 0
	for _, s := range syms {
		if !strings.HasPrefix(s.Name, "fix_") || elf.ST_TYPE(s.Info) != elf.STT_FUNC {
			continue
		}
		if r, ok := lookup(rows, s.Value); !ok || r.CFA != CFASP || r.Offset != 8 {
			t.Errorf("%s at %#x: row %v, want rsp+8 (from .debug_frame)", s.Name, s.Value, r)
		}
		fromDebug++
	}
	if fromDebug < 5 {
		t.Fatalf("found %d fix_ functions in %s", fromDebug, path)
	}
}

func sectionAt(f *elf.File, addr uint64) *elf.Section {
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Addr <= addr && addr-s.Addr < s.Size {
			return s
		}
	}
	return nil
}

func symbol(t *testing.T, f *elf.File, name string) elf.Symbol {
	t.Helper()
	syms, _ := f.Symbols()
	dyn, _ := f.DynamicSymbols()
	for _, s := range append(syms, dyn...) {
		if s.Name == name && s.Value != 0 {
			return s
		}
	}
	t.Fatalf("no symbol %s", name)
	return elf.Symbol{}
}

// rowsIn returns the rows that apply within [start, end).
func rowsIn(rows []Row, start, end uint64) []Row {
	i := sort.Search(len(rows), func(i int) bool { return rows[i].PC > start })
	if i > 0 {
		i--
	}
	var in []Row
	for ; i < len(rows) && rows[i].PC < end; i++ {
		in = append(in, rows[i])
	}
	return in
}

func TestTheFixtureHasTheRulesItWasWrittenFor(t *testing.T) {
	lib := buildFixture(t, "libfixture.so", "-shared", "-fPIC")
	exe := buildFixture(t, "fixture", "-DFIX_MAIN")
	has := func(rows []Row, match func(Row) bool) bool { return slices.ContainsFunc(rows, match) }
	for _, path := range []string{lib, exe} {
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rows := rowsOf(t, path)
		fn := func(name string) []Row {
			s := symbol(t, f, name)
			return rowsIn(rows, s.Value, s.Value+s.Size)
		}
		for _, name := range []string{"fix_alloca", "fix_vla"} {
			if !has(fn(name), func(r Row) bool { return r.CFA == CFAFP && r.Offset == 16 && r.RBPOffset == -16 }) {
				t.Errorf("%s %s: no rbp+16 row with rbp at CFA-16: %v", filepath.Base(path), name, fn(name))
			}
		}
		if !has(fn("fix_realign_alloca"), func(r Row) bool { return r.CFA == CFANone }) {
			t.Errorf("%s fix_realign_alloca: no CFANone row for its r10 and expression CFAs: %v", filepath.Base(path), fn("fix_realign_alloca"))
		}
		if !has(fn("fix_pushes"), func(r Row) bool { return r.CFA == CFASP && r.Offset > 8 && r.RBPOffset < 0 }) {
			t.Errorf("%s fix_pushes: no rsp row with rbp saved: %v", filepath.Base(path), fn("fix_pushes"))
		}
		plt := f.Section(".plt")
		if plt == nil {
			t.Fatalf("%s has no .plt", path)
		}
		if !has(rowsIn(rows, plt.Addr, plt.Addr+plt.Size), func(r Row) bool { return r.CFA == CFAPLT && r.Offset == 11 }) {
			t.Errorf("%s: no CFAPLT 11 row in .plt: %v", filepath.Base(path), rowsIn(rows, plt.Addr, plt.Addr+plt.Size))
		}
		if path == exe {
			start := symbol(t, f, "_start")
			if r, _ := lookup(rows, start.Value); r.CFA != CFAEnd {
				t.Errorf("_start: %v, want CFAEnd", r)
			}
		}
	}
}

// checkEveryFDEIsRead checks that the parser reads as many FDEs as readelf
// prints (those with a non-empty range), without an error.
func checkEveryFDEIsRead(t *testing.T, path string, fdes []readelfFDE) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tb table
	for _, name := range []string{".eh_frame", ".debug_frame"} {
		s := f.Section(name)
		if s == nil {
			continue
		}
		data, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.addSection(section{data: data, addr: s.Addr, eh: name == ".eh_frame"}); err != nil {
			t.Errorf("%s %s: %v", path, name, err)
		}
	}
	want := 0
	for _, f := range fdes {
		if f.start < f.end {
			want++
		}
	}
	if len(tb.fdes) != want {
		t.Errorf("%s: read %d FDEs, readelf has %d with a non-empty range", path, len(tb.fdes), want)
	}
}
