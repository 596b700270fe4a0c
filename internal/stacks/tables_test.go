package stacks

import (
	"debug/elf"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/unwind"
)

// memTable reads an encoded table as the kernel's array holds it.
type memTable struct{ t table }

func (m memTable) header() (bpfobj.FdtraceUnwindHeader, bool) { return m.t.header, true }

func (m memTable) page(i uint32) (bpfobj.FdtraceUnwindPage, bool) {
	if i < 1 || int(i) > len(m.t.pages) {
		return bpfobj.FdtraceUnwindPage{}, false
	}
	return m.t.pages[i-1], true
}

func (m memTable) row(i uint32) (bpfobj.FdtraceUnwindRow, bool) {
	base := uint32(1 + len(m.t.pages))
	if i < base || int(i-base) >= len(m.t.rows) {
		return bpfobj.FdtraceUnwindRow{}, false
	}
	return m.t.rows[i-base], true
}

// The kernel's lookup (findRow is its twin) over encodeTable's layout
// finds the row a linear search finds, for every kind of address: each
// row's first byte, the byte before it, random ones, and outside the table.
func TestEncodedTablesFindTheRowInForce(t *testing.T) {
	for _, path := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/node"} {
		f, err := elf.Open(path)
		if err != nil {
			t.Logf("%s: %v", path, err)
			continue
		}
		rows, err := unwind.Rows(f)
		f.Close()
		if err != nil || len(rows) == 0 {
			t.Fatalf("%s: %d rows, %v", path, len(rows), err)
		}
		table, ok := encodeTable(rows)
		if !ok {
			t.Fatalf("%s: not encoded", path)
		}
		want := func(addr uint64) (bpfobj.FdtraceUnwindRow, bool) {
			i := sort.Search(len(rows), func(i int) bool { return rows[i].PC > addr })
			if i == 0 || addr >= rows[len(rows)-1].PC+1<<pageShift {
				return bpfobj.FdtraceUnwindRow{}, false // past the last page: no row, as past the end
			}
			return encodeRow(rows[i-1], rows[i-1].PC-rows[0].PC), true
		}
		check := func(addr uint64) {
			got, gotOK := findRow(memTable{table}, addr)
			w, wOK := want(addr)
			if got != w || gotOK != wOK {
				t.Fatalf("%s: row at %#x: got %+v %v, want %+v %v", path, addr, got, gotOK, w, wOK)
			}
		}
		lo, hi := rows[0].PC, rows[len(rows)-1].PC
		for _, r := range rows {
			check(r.PC)
			check(r.PC - 1)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for range 100000 {
			check(lo + rng.Uint64N(hi-lo+1))
		}
		check(hi + 1)
		check(hi + 1<<20)
		t.Logf("%s: %d rows, %d table entries", path, len(rows), table.len())
	}
}

func TestRowsEncodeWhatTheKernelDecodes(t *testing.T) {
	for _, tc := range []struct {
		row  unwind.Row
		rule bpfobj.FdtraceCfaRule
		off  int16
		rbp  int8
	}{
		{unwind.Row{CFA: unwind.CFASP, Offset: 8}, bpfobj.FdtraceCfaRuleCFA_SP, 8, 0},
		{unwind.Row{CFA: unwind.CFAFP, Offset: 16, RBPOffset: -16}, bpfobj.FdtraceCfaRuleCFA_FP, 16, -2},
		{unwind.Row{CFA: unwind.CFASP, Offset: 4096, RBPOffset: -56}, bpfobj.FdtraceCfaRuleCFA_SP, 4096, -7},
		{unwind.Row{CFA: unwind.CFAPLT, Offset: 11}, bpfobj.FdtraceCfaRuleCFA_PLT, 11, 0},
		{unwind.Row{CFA: unwind.CFAEnd}, bpfobj.FdtraceCfaRuleCFA_END, 0, 0},
		// What 16 bits cannot hold falls back to frame pointers.
		{unwind.Row{CFA: unwind.CFASP, Offset: 1 << 16, RBPOffset: -16}, bpfobj.FdtraceCfaRuleCFA_NONE, 0, 0},
	} {
		v := encodeRow(tc.row, 0x1234)
		if v.Addr != 0x1234 || bpfobj.FdtraceCfaRule(v.Rule) != tc.rule || v.CfaOff != tc.off || v.RbpAt != tc.rbp {
			t.Errorf("%+v: encoded %+v", tc.row, v)
		}
	}
}

// The user-space hash of a stack is the kernel's: a stack unwound from a
// copy is one stack with the same stack unwound in the kernel.
func TestKeyIsTheKernelsHash(t *testing.T) {
	// capture_stack's FNV-1a over the ips, seeded with the tgid, odd.
	h := uint64(0xcbf29ce484222325) ^ 42
	for _, ip := range []uint64{0x401000, 0x402000} {
		h = (h ^ ip) * 0x100000001b3
	}
	if got := Key(42, []uint64{0x401000, 0x402000}); got != h|1 {
		t.Errorf("Key = %#x, want %#x", got, h|1)
	}
}

// A file's CFI decides the size of its table: two FDEs 4 GiB apart (a few
// bytes of a crafted ELF) would make a page index of 16M entries, 128 MiB
// here and in the kernel. Such a table is not made: the file's frames are
// walked by frame pointers.
func TestATableOfRowsFarApartIsNotMadeIntoMillionsOfPages(t *testing.T) {
	rows := []unwind.Row{{PC: 0x1000, CFA: unwind.CFASP, Offset: 8}, {PC: 0x1000 + 1<<32 - 16, CFA: unwind.CFASP, Offset: 8}}
	if table, ok := encodeTable(rows); ok && table.len() > 1<<16 {
		t.Errorf("2 rows made a table of %d entries", table.len())
	}
}

// The tables of many files add up: past the budget, a file gets no table
// (its frames are walked by frame pointers) and the refusals are counted
// and said, never an out-of-memory.
func TestTablesPastTheBudgetAreRefusedCountedAndSaid(t *testing.T) {
	u := &tables{budget: 100 << 10}
	admitted := 0
	for range 50 { // 50 files of 8 KiB
		if u.admit(8 << 10) {
			admitted++
		}
	}
	if admitted != 12 || u.bytes != 12*8<<10 || u.overBudget != 38 {
		t.Errorf("%d admitted, %d bytes, %d refused; want 12, %d, 38", admitted, u.bytes, u.overBudget, 12*8<<10)
	}
	w := u.warnings()
	if len(w) != 1 || !strings.Contains(w[0], "38 files got no table") {
		t.Errorf("warnings %q", w)
	}
}
