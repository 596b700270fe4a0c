package loader

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

// unwindTables keeps the kernel's DWARF unwinding fed: the rows of each
// file traced processes map executable, loaded once per file, and per
// process where those files are mapped (see struct exec_mappings in
// bpf/fdtrace.h). A process asks (EV_MAPS) when a stack runs into code no
// mapping it has holds: after exec, after dlopen, in new JIT code.
type unwindTables struct {
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
}

// fileTable is one file's unwind table: its id in unwind_tables (0: the
// file has no CFI, or it could not be read) and its loadable segments, to
// relate mapped addresses to the file's virtual addresses.
type fileTable struct {
	id       uint32
	segments []elf.ProgHeader
}

func newUnwindTables(objs *bpfobj.FdtraceObjects, sym *symbolize.Symbolizer) *unwindTables {
	return &unwindTables{tables: objs.UnwindTables, procs: objs.ExecMaps, sym: sym,
		files: map[string]*fileTable{}, rowMaps: map[uint32]*ebpf.Map{},
		mappings: map[int]*bpfobj.FdtraceExecMappings{}, nextID: 1}
}

// errGone: the process exited before its mappings could be read.
var errGone = errors.New("process gone")

// refresh reads pid's executable mappings and hands them to the kernel,
// loading the tables of files not seen before.
func (u *unwindTables) refresh(pid int) error {
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
func (u *unwindTables) forget(pid int) {
	u.procs.Delete(uint32(pid))
	u.mu.Lock()
	delete(u.mappings, pid)
	u.mu.Unlock()
}

// warnings says what the user should know about the unwinding.
func (u *unwindTables) warnings() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.full {
		return []string{fmt.Sprintf("the unwind table store is full (%d files): stacks in files loaded since are walked by frame pointers", len(u.rowMaps))}
	}
	return nil
}

// close releases the tables kept open for user-space unwinding.
func (u *unwindTables) close() {
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
func (u *unwindTables) table(pid int, m symbolize.Mapping) *fileTable {
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
	table := encodeTable(rows)
	if table == nil {
		return t
	}
	id := u.nextID
	if err := u.load(id, table); err != nil {
		u.full = errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC)
		return t
	}
	u.nextID++
	t.id = id
	return t
}

// load makes the kernel array of a table; flush hands it to unwind_tables
// under id.
func (u *unwindTables) load(id uint32, table []uint64) error {
	rows, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8,
		MaxEntries: uint32(len(table)), Flags: unix.BPF_F_INNER_MAP})
	if err != nil {
		return err
	}
	const batch = 1 << 16
	keys := make([]uint32, 0, batch)
	for start := 0; start < len(table); start += batch {
		end := min(start+batch, len(table))
		keys = keys[:0]
		for i := start; i < end; i++ {
			keys = append(keys, uint32(i))
		}
		if _, err := rows.BatchUpdate(keys, table[start:end], nil); err != nil {
			rows.Close()
			return err
		}
	}
	u.rowMaps[id] = rows
	u.pending = append(u.pending, id)
	return nil
}

// flush hands the tables loaded since the last flush to the kernel. One
// batch: every update of a map of maps waits out an RCU grace period
// (~10 ms), which a process starting up should not wait for per library.
func (u *unwindTables) flush() {
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

// unwindPageShift is UNWIND_PAGE_SHIFT: the table's index has an entry
// per 256 bytes of code, which leaves a row or two to search.
const unwindPageShift = 8

// encodeTable lays rows out as the kernel reads them (bpf/fdtrace.h); nil
// for code above 4 GiB, which the layout cannot hold. Rows past 4 GiB of
// the first are left out; rules the encoding cannot hold become
// frame-pointer rows.
func encodeTable(rows []unwind.Row) []uint64 {
	lo := rows[0].PC
	if lo > 1<<32-1 {
		return nil
	}
	for len(rows) > 1 && rows[len(rows)-1].PC-lo > 1<<32-1 {
		rows = rows[:len(rows)-1]
	}
	pages := int((rows[len(rows)-1].PC-lo)>>unwindPageShift) + 1
	base := pages + 1
	out := make([]uint64, base+len(rows))
	out[0] = lo | uint64(pages)<<32
	first, last := 0, 0
	for p := range pages {
		start := lo + uint64(p)<<unwindPageShift
		end := start + 1<<unwindPageShift
		for first+1 < len(rows) && rows[first+1].PC <= start {
			first++
		}
		last = max(last, first)
		for last+1 < len(rows) && rows[last+1].PC < end {
			last++
		}
		out[1+p] = uint64(base+first) | uint64(base+last)<<32
	}
	for i, row := range rows {
		out[base+i] = encodeRow(row, row.PC-lo)
	}
	return out
}

func encodeRow(row unwind.Row, off uint64) uint64 {
	kind, cfaOff, rbp := cfaRule(row.CFA), row.Offset, row.RBPOffset
	if cfaOff != int32(int16(cfaOff)) {
		kind, cfaOff, rbp = 0, 0, 0
	}
	if rbp%8 != 0 || rbp/8 != int32(int8(rbp/8)) {
		rbp = 0
	}
	return off | uint64(uint16(int16(cfaOff)))<<32 | uint64(uint8(int8(rbp/8)))<<48 | uint64(kind)<<56
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

// findRow is the kernel's find_row (bpf/stack_dwarf.bpf.h): the row of a table
// in force at addr, 0 if none; get reads one element of the table.
func findRow(get func(uint32) (uint64, bool), addr uint64) uint64 {
	hdr, ok := get(0)
	lo := hdr & (1<<32 - 1)
	if !ok || addr < lo {
		return 0
	}
	off := addr - lo
	page := off >> unwindPageShift
	if page >= hdr>>32 {
		return 0
	}
	v, ok := get(uint32(1 + page))
	if !ok {
		return 0
	}
	f, l := uint32(v), uint32(v>>32)
	for i := 0; i < 24 && f < l; i++ {
		k := l - (l-f)/2
		v, ok := get(k)
		if !ok {
			return 0
		}
		if uint32(v) <= uint32(off) {
			f = k
		} else {
			l = k - 1
		}
	}
	if v, ok := get(f); ok && uint32(v) <= uint32(off) {
		return v
	}
	return 0
}

// maxStackDepth is MAX_STACK_DEPTH.
const maxStackDepth = len(bpfobj.FdtraceStack{}.Ips)

// unwindCopy unwinds a stack the kernel copied (struct raw_stack) as
// unwind_frame does in the kernel, reading the rows from the kernel's
// tables and the stack from the copy: it ends where the copy does. A
// process gone before its mappings were read is taken to have its
// parent's: a forked child that did not exec. unknown: a pc was in no
// mapping known.
func (u *unwindTables) unwindCopy(pid, parent int, pc, sp, bp uint64, stack []byte) (ips []uint64, unknown bool) {
	u.mu.Lock()
	maps := u.mappings[pid]
	if maps == nil {
		maps = u.mappings[parent]
	}
	u.mu.Unlock()
	base := sp
	read := func(addr uint64) (uint64, bool) {
		if addr < base || addr-base+8 > uint64(len(stack)) {
			return 0, false
		}
		return binary.NativeEndian.Uint64(stack[addr-base:]), true
	}
	for i := 0; i < maxStackDepth; i++ {
		ips = append(ips, pc)
		addr := pc
		if i > 0 {
			addr-- // a return address follows its call
		}
		var row uint64
		m := findExecMap(maps, addr)
		if m == nil {
			unknown = true
		} else if m.Table != 0 {
			row = u.findRow(m.Table, addr-m.Bias)
		}
		off := int64(int16(row >> 32))
		rbpAt := int64(int8(row >> 48))
		var cfa uint64
		switch bpfobj.FdtraceCfaRule(row >> 56 & 0xf) {
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
		if ret < 4096 || ret >= 0x800000000000 {
			return ips, unknown
		}
	}
	return ips, unknown
}

func (u *unwindTables) findRow(table uint32, addr uint64) uint64 {
	u.mu.Lock()
	rows := u.rowMaps[table]
	u.mu.Unlock()
	if rows == nil {
		return 0
	}
	return findRow(func(i uint32) (uint64, bool) {
		var v uint64
		return v, rows.Lookup(i, &v) == nil
	}, addr)
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

// stackKey is the key the kernel gives a stack in the stacks map
// (capture_stack's hash).
func stackKey(tgid uint32, ips []uint64) uint64 {
	h := uint64(0xcbf29ce484222325) ^ uint64(tgid)
	for _, ip := range ips {
		h = (h ^ ip) * 0x100000001b3
	}
	return h | 1
}
