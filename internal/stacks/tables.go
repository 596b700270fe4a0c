package stacks

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/symbolize"
	"github.com/fdtrace/fdtrace/internal/unwind"
)

// tables keeps the kernel's DWARF unwinding fed: the rows of each file
// traced processes map executable, loaded once per file, and per process
// where those files are mapped (see struct exec_mappings in bpf/fdtrace.h).
// A process asks (EV_MAPS) when a stack runs into code no mapping it has
// holds: after exec, after dlopen, in new JIT code.
type tables struct {
	tables *ebpf.Map // unwind_tables: table id -> rows
	procs  *ebpf.Map // exec_maps: tgid -> mappings
	sym    *symbolize.Symbolizer

	mu       sync.Mutex
	files    map[string]*fileTable // by device:inode
	rowMaps  map[uint32]*ebpf.Map  // by table id: for unwinding in user space
	pending  []uint32              // table ids loaded, not yet in unwind_tables
	mappings map[int]*bpfobj.FdtraceExecMappings
	nextID   uint32
	full     bool // unwind_tables is full: later files are walked by frame pointers
	// bytes is what the loaded tables hold, in the kernel (and charged to
	// fdtrace's memory cgroup); past budget, a file gets no table.
	bytes, budget int64
	overBudget    int // files refused a table for the budget
}

// DefaultTableBudget bounds the unwind tables of all files: a few hundred
// distinct binaries and libraries, with room for node's (about 10 MiB).
const DefaultTableBudget = 128 << 20

// admit says whether a table of size bytes fits in the budget, and
// takes it from the budget when it does.
func (u *tables) admit(size int64) bool {
	if u.bytes+size > u.budget {
		u.overBudget++
		return false
	}
	u.bytes += size
	return true
}

// fileTable is one file's unwind table: its id in unwind_tables (0: the
// file has no CFI, or it could not be read) and its loadable segments, to
// relate mapped addresses to the file's virtual addresses.
type fileTable struct {
	id       uint32
	segments []elf.ProgHeader
}

func newTables(unwindTables, execMaps *ebpf.Map, sym *symbolize.Symbolizer) *tables {
	return &tables{tables: unwindTables, procs: execMaps, sym: sym, budget: DefaultTableBudget,
		files: map[string]*fileTable{}, rowMaps: map[uint32]*ebpf.Map{},
		mappings: map[int]*bpfobj.FdtraceExecMappings{}, nextID: 1}
}

// errGone: the process exited before its mappings could be read.
var errGone = errors.New("process gone")

// refresh reads pid's executable mappings and hands them to the kernel,
// loading the tables of files not seen before.
func (u *tables) refresh(pid int) error {
	maps, err := u.sym.ExecMappings(pid)
	if err != nil {
		return errGone
	}
	var v bpfobj.FdtraceExecMappings
	for _, m := range maps {
		e := bpfobj.FdtraceExecMap{Start: m.Start, End: m.End}
		if m.File != "" {
			t := u.table(pid, m)
			if seg := t.segment(m.Offset); t.id != 0 && seg != nil {
				e.Table = t.id
				e.Bias = m.Start - (seg.Vaddr + m.Offset - seg.Off)
			}
		}
		// Neighbours without a table merge: a pc between them is no
		// code of a file either, and V8 maps many small JIT regions.
		if n := v.N; n > 0 && e.Table == 0 && v.Maps[n-1].Table == 0 {
			v.Maps[n-1].End = e.End
			continue
		}
		if int(v.N) == len(v.Maps) {
			break // the rest is walked by frame pointers
		}
		v.Maps[v.N] = e
		v.N++
	}
	u.flush()
	u.mu.Lock()
	u.mappings[pid] = &v
	u.mu.Unlock()
	if err := u.procs.Put(uint32(pid), &v); err != nil {
		return fmt.Errorf("handing pid %d's mappings to the kernel: %w", pid, err)
	}
	return nil
}

// forget drops pid's mappings: it exited (the kernel drops them too, but
// a refresh may have raced with the exit).
func (u *tables) forget(pid int) {
	u.procs.Delete(uint32(pid))
	u.mu.Lock()
	delete(u.mappings, pid)
	u.mu.Unlock()
}

// warnings says what the user should know about the unwinding.
func (u *tables) warnings() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var w []string
	if u.full {
		w = append(w, fmt.Sprintf("the unwind table store is full (%d files): stacks in files loaded since are walked by frame pointers", len(u.rowMaps)))
	}
	if u.overBudget > 0 {
		w = append(w, fmt.Sprintf("the unwind tables' budget (%d MiB) is spent: %d files got no table, and their stacks are walked by frame pointers", u.budget>>20, u.overBudget))
	}
	return w
}

// close releases the tables kept open for user-space unwinding.
func (u *tables) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, m := range u.rowMaps {
		m.Close()
		delete(u.rowMaps, id)
	}
}

// segment is the loadable segment holding file offset off.
func (t *fileTable) segment(off uint64) *elf.ProgHeader {
	for i := range t.segments {
		s := &t.segments[i]
		if s.Off <= off && off < s.Off+s.Filesz {
			return s
		}
	}
	return nil
}

// table returns the table of the file behind m, loading it the first time.
func (u *tables) table(pid int, m symbolize.Mapping) *fileTable {
	u.mu.Lock()
	defer u.mu.Unlock()
	if t, ok := u.files[m.File]; ok {
		return t
	}
	t := &fileTable{}
	u.files[m.File] = t
	f := u.sym.OpenMapped(pid, m)
	if f == nil {
		return t
	}
	defer f.Close()
	// The file is the traced process's: should debug/elf panic on it, it
	// is a file without a table, walked by frame pointers.
	defer func() {
		if r := recover(); r != nil {
			*t = fileTable{}
		}
	}()
	ef, err := elf.NewFile(f)
	if err != nil {
		return t
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			t.segments = append(t.segments, p.ProgHeader)
		}
	}
	rows, err := unwind.Rows(ef)
	if err != nil || len(rows) == 0 || u.full {
		return t
	}
	table, ok := encodeTable(rows)
	if !ok || !u.admit(int64(table.len())*8) {
		return t
	}
	id := u.nextID
	if err := u.load(id, table); err != nil {
		u.bytes -= int64(table.len()) * 8
		u.full = errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC)
		return t
	}
	u.nextID++
	t.id = id
	return t
}

// load makes the kernel array of a table; flush hands it to unwind_tables
// under id.
func (u *tables) load(id uint32, t table) error {
	rows, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8,
		MaxEntries: uint32(t.len()), Flags: unix.BPF_F_INNER_MAP})
	if err != nil {
		return err
	}
	err = rows.Put(uint32(0), &t.header)
	if err == nil {
		err = putAll(rows, 1, t.pages)
	}
	if err == nil {
		err = putAll(rows, uint32(1+len(t.pages)), t.rows)
	}
	if err != nil {
		rows.Close()
		return err
	}
	u.rowMaps[id] = rows
	u.pending = append(u.pending, id)
	return nil
}

// putAll writes vals into an array from index first, in batches.
func putAll[T any](m *ebpf.Map, first uint32, vals []T) error {
	const batch = 1 << 16
	keys := make([]uint32, 0, min(batch, len(vals)))
	for start := 0; start < len(vals); start += batch {
		end := min(start+batch, len(vals))
		keys = keys[:0]
		for i := start; i < end; i++ {
			keys = append(keys, first+uint32(i))
		}
		if _, err := m.BatchUpdate(keys, vals[start:end], nil); err != nil {
			return err
		}
	}
	return nil
}

// flush hands the tables loaded since the last flush to the kernel. One
// batch: every update of a map of maps waits out an RCU grace period
// (~10 ms), which a process starting up should not wait for per library.
func (u *tables) flush() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.pending) == 0 {
		return
	}
	fds := make([]uint32, len(u.pending))
	for i, id := range u.pending {
		fds[i] = uint32(u.rowMaps[id].FD())
	}
	if _, err := u.tables.BatchUpdate(u.pending, fds, nil); err != nil {
		for _, id := range u.pending {
			if err := u.tables.Put(id, u.rowMaps[id]); err != nil {
				// Its frames are walked by frame pointers.
				u.full = u.full || errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC)
			}
		}
	}
	u.pending = u.pending[:0]
}

// pageShift is UNWIND_PAGE_SHIFT: the table's index has an entry per 256
// bytes of code, which leaves a row or two to search.
const pageShift = 8

// table is one file's unwind table as the kernel reads it (struct
// unwind_header, unwind_page and unwind_row in bpf/fdtrace.h): entry 0 the
// header, 1..len(pages) the pages, then the rows.
type table struct {
	header bpfobj.FdtraceUnwindHeader
	pages  []bpfobj.FdtraceUnwindPage
	rows   []bpfobj.FdtraceUnwindRow
}

func (t *table) len() int { return 1 + len(t.pages) + len(t.rows) }

// maxPagesPerRow bounds a table's page index by its rows: real code has a
// row every few dozen bytes, and a page is 256. Only CFI with FDEs far
// apart (a crafted file) has more pages than this many per row, and its
// table would be mostly index.
const maxPagesPerRow = 64

// encodeTable lays rows out as the kernel reads them; false for code above
// 4 GiB, which the layout cannot hold, and for an index out of proportion
// with the rows (maxPagesPerRow). Rows past 4 GiB of the first are
// left out; rules the encoding cannot hold become frame-pointer rows.
func encodeTable(rows []unwind.Row) (table, bool) {
	lo := rows[0].PC
	if lo > 1<<32-1 {
		return table{}, false
	}
	for len(rows) > 1 && rows[len(rows)-1].PC-lo > 1<<32-1 {
		rows = rows[:len(rows)-1]
	}
	pages := int((rows[len(rows)-1].PC-lo)>>pageShift) + 1
	if pages > maxPagesPerRow*len(rows)+1024 {
		return table{}, false
	}
	base := uint32(pages + 1)
	t := table{header: bpfobj.FdtraceUnwindHeader{Addr: uint32(lo), Pages: uint32(pages)},
		pages: make([]bpfobj.FdtraceUnwindPage, pages), rows: make([]bpfobj.FdtraceUnwindRow, len(rows))}
	first, last := 0, 0
	for p := range pages {
		start := lo + uint64(p)<<pageShift
		end := start + 1<<pageShift
		for first+1 < len(rows) && rows[first+1].PC <= start {
			first++
		}
		last = max(last, first)
		for last+1 < len(rows) && rows[last+1].PC < end {
			last++
		}
		t.pages[p] = bpfobj.FdtraceUnwindPage{First: base + uint32(first), Last: base + uint32(last)}
	}
	for i, row := range rows {
		t.rows[i] = encodeRow(row, row.PC-lo)
	}
	return t, true
}

func encodeRow(row unwind.Row, off uint64) bpfobj.FdtraceUnwindRow {
	rule, cfaOff, rbp := cfaRule(row.CFA), row.Offset, row.RBPOffset
	if cfaOff != int32(int16(cfaOff)) {
		rule, cfaOff, rbp = bpfobj.FdtraceCfaRuleCFA_NONE, 0, 0
	}
	if rbp%8 != 0 || rbp/8 != int32(int8(rbp/8)) {
		rbp = 0
	}
	return bpfobj.FdtraceUnwindRow{Addr: uint32(off), CfaOff: int16(cfaOff), RbpAt: int8(rbp / 8), Rule: uint8(rule)}
}

// cfaRule is the kernel's enum cfa_rule for a row's rule.
func cfaRule(k unwind.CFAKind) bpfobj.FdtraceCfaRule {
	switch k {
	case unwind.CFASP:
		return bpfobj.FdtraceCfaRuleCFA_SP
	case unwind.CFAFP:
		return bpfobj.FdtraceCfaRuleCFA_FP
	case unwind.CFAPLT:
		return bpfobj.FdtraceCfaRuleCFA_PLT
	case unwind.CFAEnd:
		return bpfobj.FdtraceCfaRuleCFA_END
	}
	return bpfobj.FdtraceCfaRuleCFA_NONE
}

// entries reads a table's entries, as the kernel's array holds them.
type entries interface {
	header() (bpfobj.FdtraceUnwindHeader, bool)
	page(i uint32) (bpfobj.FdtraceUnwindPage, bool)
	row(i uint32) (bpfobj.FdtraceUnwindRow, bool)
}

// findRow is the kernel's find_row (bpf/stack_dwarf.bpf.h): the row of a
// table in force at addr; false if none.
func findRow(t entries, addr uint64) (bpfobj.FdtraceUnwindRow, bool) {
	var none bpfobj.FdtraceUnwindRow
	hdr, ok := t.header()
	if !ok || addr < uint64(hdr.Addr) {
		return none, false
	}
	off := addr - uint64(hdr.Addr)
	page := off >> pageShift
	if page >= uint64(hdr.Pages) {
		return none, false
	}
	pg, ok := t.page(uint32(1 + page))
	if !ok {
		return none, false
	}
	f, l := pg.First, pg.Last
	for i := 0; i < 24 && f < l; i++ {
		k := l - (l-f)/2
		r, ok := t.row(k)
		if !ok {
			return none, false
		}
		if uint64(r.Addr) <= off {
			f = k
		} else {
			l = k - 1
		}
	}
	if r, ok := t.row(f); ok && uint64(r.Addr) <= off {
		return r, true
	}
	return none, false
}

// kernelTable reads a table from its array in the kernel.
type kernelTable struct{ m *ebpf.Map }

func (k kernelTable) header() (h bpfobj.FdtraceUnwindHeader, ok bool) {
	return h, k.m.Lookup(uint32(0), &h) == nil
}

func (k kernelTable) page(i uint32) (p bpfobj.FdtraceUnwindPage, ok bool) {
	return p, k.m.Lookup(i, &p) == nil
}

func (k kernelTable) row(i uint32) (r bpfobj.FdtraceUnwindRow, ok bool) {
	return r, k.m.Lookup(i, &r) == nil
}

// maxStackDepth is MAX_STACK_DEPTH.
const maxStackDepth = len(bpfobj.FdtraceStack{}.Ips)

// unwindCopy unwinds a stack the kernel copied (struct raw_stack) as
// unwind_frame does in the kernel, reading the rows from the kernel's
// tables and the stack from the copy: it ends where the copy does. A
// process gone before its mappings were read is taken to have its
// parent's: a forked child that did not exec. unknown: a pc was in no
// mapping known.
func (u *tables) unwindCopy(c Copy) (ips []uint64, unknown bool) {
	u.mu.Lock()
	maps := u.mappings[c.PID]
	if maps == nil {
		maps = u.mappings[c.Parent]
	}
	u.mu.Unlock()
	pc, sp, bp := c.IP, c.SP, c.BP
	read := func(addr uint64) (uint64, bool) {
		if addr < c.SP || addr-c.SP+8 > uint64(len(c.Data)) {
			return 0, false
		}
		return binary.NativeEndian.Uint64(c.Data[addr-c.SP:]), true
	}
	for i := 0; i < maxStackDepth; i++ {
		ips = append(ips, pc)
		addr := pc
		if i > 0 {
			addr-- // a return address follows its call
		}
		var row bpfobj.FdtraceUnwindRow // CFA_NONE: no row
		m := findExecMap(maps, addr)
		if m == nil {
			unknown = true
		} else if m.Table != 0 {
			row, _ = u.findRow(m.Table, addr-m.Bias)
		}
		off, rbpAt := int64(row.CfaOff), int64(row.RbpAt)
		var cfa uint64
		switch bpfobj.FdtraceCfaRule(row.Rule) {
		case bpfobj.FdtraceCfaRuleCFA_END:
			return ips, unknown
		case bpfobj.FdtraceCfaRuleCFA_SP:
			cfa = sp + uint64(off)
		case bpfobj.FdtraceCfaRuleCFA_FP:
			cfa = bp + uint64(off)
		case bpfobj.FdtraceCfaRuleCFA_PLT:
			cfa = sp + 8
			if int64(pc&15) >= off {
				cfa += 8
			}
		default:
			if bp <= sp || bp-sp >= 64<<20 || bp&7 != 0 {
				return ips, unknown
			}
			cfa, rbpAt = bp+16, -2
		}
		ret, ok := read(cfa - 8)
		if cfa <= sp || !ok {
			return ips, unknown
		}
		if rbpAt != 0 {
			if bp, ok = read(cfa + uint64(rbpAt*8)); !ok {
				return ips, unknown
			}
		}
		sp, pc = cfa, ret
		if !userCode(ret) {
			return ips, unknown
		}
	}
	return ips, unknown
}

// userCode: could this be the address of user code (user_code_addr)?
func userCode(a uint64) bool { return a >= 4096 && a < 1<<47 }

func (u *tables) findRow(id uint32, addr uint64) (bpfobj.FdtraceUnwindRow, bool) {
	u.mu.Lock()
	rows := u.rowMaps[id]
	u.mu.Unlock()
	if rows == nil {
		return bpfobj.FdtraceUnwindRow{}, false
	}
	return findRow(kernelTable{rows}, addr)
}

// findExecMap is the kernel's find_exec_map.
func findExecMap(ms *bpfobj.FdtraceExecMappings, pc uint64) *bpfobj.FdtraceExecMap {
	if ms == nil {
		return nil
	}
	maps := ms.Maps[:min(int(ms.N), len(ms.Maps))]
	i, ok := slices.BinarySearchFunc(maps, pc, func(m bpfobj.FdtraceExecMap, pc uint64) int {
		switch {
		case pc < m.Start:
			return 1
		case pc >= m.End:
			return -1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return &maps[i]
}
