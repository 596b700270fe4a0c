package unwind

import (
	"encoding/binary"
	"slices"
	"testing"
)

// cfiBuilder assembles a .eh_frame or .debug_frame section for tests.
type cfiBuilder struct {
	addr  uint64 // the section's address
	debug bool   // .debug_frame layout
	b     []byte
}

func uleb(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func cat(parts ...[]byte) []byte { return slices.Concat(parts...) }

// entry appends an entry with the given id field and the body made by
// rest, which is told the section offset where it starts.
func (c *cfiBuilder) entry(id []byte, rest func(pos int) []byte) int {
	off := len(c.b)
	body := cat(id, rest(off+4+len(id)))
	c.b = binary.LittleEndian.AppendUint32(c.b, uint32(len(body)))
	c.b = append(c.b, body...)
	return off
}

// cie appends a CIE with code alignment 1, data alignment -8, return
// address column 16. augData is written after a 'z' augmentation.
func (c *cfiBuilder) cie(version byte, aug string, augData []byte, ins ...byte) int {
	id := []byte{0, 0, 0, 0}
	if c.debug {
		id = []byte{0xff, 0xff, 0xff, 0xff}
	}
	return c.entry(id, func(int) []byte {
		b := cat([]byte{version}, []byte(aug), []byte{0})
		if version == 4 {
			b = append(b, 8, 0) // address size, segment selector size
		}
		b = cat(b, uleb(1), sleb(-8))
		if version == 1 {
			b = append(b, 16)
		} else {
			b = append(b, uleb(16)...)
		}
		if len(aug) > 0 && aug[0] == 'z' {
			b = cat(b, uleb(uint64(len(augData))), augData)
		}
		return append(b, ins...)
	})
}

// stdCIE is gcc's x86-64 CIE: "zR", FDE addresses pcrel|sdata4; CFA rsp+8,
// return address at CFA-8.
func (c *cfiBuilder) stdCIE() int {
	return c.cie(1, "zR", []byte{pePcrel | peSdata4}, 0x0c, 7, 8, 0x80|16, 1)
}

// fde appends an FDE. In .eh_frame its addresses are encoded with enc,
// and aug, if not nil, is written as augmentation data with its length.
func (c *cfiBuilder) fde(cieOff int, enc byte, start, size uint64, aug []byte, ins ...byte) int {
	var id []byte
	if c.debug {
		id = binary.LittleEndian.AppendUint32(nil, uint32(cieOff))
	} else {
		id = binary.LittleEndian.AppendUint32(nil, uint32(len(c.b)+4-cieOff))
	}
	return c.entry(id, func(pos int) []byte {
		var b []byte
		if c.debug {
			b = binary.LittleEndian.AppendUint64(b, start)
			b = binary.LittleEndian.AppendUint64(b, size)
		} else {
			v := start
			if enc&0x70 == pePcrel {
				v -= c.addr + uint64(pos)
			}
			b = cat(encode(enc, v), encode(enc&0x0f, size))
		}
		if aug != nil {
			b = cat(b, uleb(uint64(len(aug))), aug)
		}
		return append(b, ins...)
	})
}

// stdFDE appends an FDE for stdCIE's encoding.
func (c *cfiBuilder) stdFDE(cieOff int, start, size uint64, ins ...byte) int {
	if c.debug {
		return c.fde(cieOff, 0, start, size, nil, ins...)
	}
	return c.fde(cieOff, pePcrel|peSdata4, start, size, []byte{}, ins...)
}

func encode(enc byte, v uint64) []byte {
	switch enc & 0x0f {
	case peAbsptr, peUdata8, peSdata8:
		return binary.LittleEndian.AppendUint64(nil, v)
	case peUleb:
		return uleb(v)
	case peSleb:
		return sleb(int64(v))
	case peUdata2, peSdata2:
		return binary.LittleEndian.AppendUint16(nil, uint16(v))
	case peUdata4, peSdata4:
		return binary.LittleEndian.AppendUint32(nil, uint32(v))
	}
	panic("encoding")
}

// DW_CFA instructions for the tests.
func advance(d byte) []byte          { return []byte{0x40 | d} }
func defCFAOffset(n uint64) []byte   { return cat([]byte{0x0e}, uleb(n)) }
func defCFARegister(r byte) []byte   { return []byte{0x0d, r} }
func defCFA(r byte, n uint64) []byte { return cat([]byte{0x0c, r}, uleb(n)) }
func offset(r byte, n uint64) []byte { return cat([]byte{0x80 | r}, uleb(n)) }
func restoreReg(r byte) []byte       { return []byte{0xc0 | r} }
func undefined(r byte) []byte        { return []byte{0x07, r} }

var (
	rememberState = []byte{0x0a}
	restoreState  = []byte{0x0b}
)

func pltCFA(k byte) []byte {
	e := pltExpr
	e[6] = 0x30 + k
	return cat([]byte{0x0f, byte(len(e))}, e[:])
}

func TestRowsFromHandWrittenCFI(t *testing.T) {
	const addr = 0x400000
	tests := []struct {
		name  string
		build func(c *cfiBuilder)
		debug bool
		want  []Row
	}{
		{
			name: "a prologue that pushes rbp and moves the CFA to rbp",
			build: func(c *cfiBuilder) {
				cie := c.stdCIE()
				c.stdFDE(cie, 0x1000, 0x20, cat(
					advance(1), defCFAOffset(16), offset(6, 2),
					advance(3), defCFARegister(6),
					advance(0x10), defCFA(7, 8))...)
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1001, CFA: CFASP, Offset: 16, RBPOffset: -16},
				{PC: 0x1004, CFA: CFAFP, Offset: 16, RBPOffset: -16},
				{PC: 0x1014, CFA: CFASP, Offset: 8, RBPOffset: -16},
				{PC: 0x1020},
			},
		},
		{
			name: "remember_state and restore_state around an early return",
			build: func(c *cfiBuilder) {
				cie := c.stdCIE()
				c.stdFDE(cie, 0x1000, 0x20, cat(
					advance(1), defCFAOffset(16), offset(6, 2),
					advance(4), rememberState, defCFAOffset(8), restoreReg(6),
					advance(1), restoreState)...)
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1001, CFA: CFASP, Offset: 16, RBPOffset: -16},
				{PC: 0x1005, CFA: CFASP, Offset: 8},
				{PC: 0x1006, CFA: CFASP, Offset: 16, RBPOffset: -16},
				{PC: 0x1020},
			},
		},
		{
			name: "the .plt expressions of classic and IBT PLTs",
			build: func(c *cfiBuilder) {
				cie := c.stdCIE()
				c.stdFDE(cie, 0x1000, 0x40, cat(
					advance(6), defCFAOffset(16), advance(6), defCFAOffset(24),
					advance(4), pltCFA(11))...)
				c.stdFDE(cie, 0x2000, 0x40, pltCFA(10)...)
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1006, CFA: CFASP, Offset: 16},
				{PC: 0x100c, CFA: CFASP, Offset: 24},
				{PC: 0x1010, CFA: CFAPLT, Offset: 11},
				{PC: 0x1040},
				{PC: 0x2000, CFA: CFAPLT, Offset: 10},
				{PC: 0x2040},
			},
		},
		{
			name: "an undefined return address ends the stack",
			build: func(c *cfiBuilder) {
				cie := c.stdCIE()
				c.stdFDE(cie, 0x1000, 0x10, cat(undefined(16), advance(4), defCFAOffset(16))...)
			},
			want: []Row{{PC: 0x1000, CFA: CFAEnd}, {PC: 0x1010}},
		},
		{
			name: "a CFA in another register or given by another expression is CFANone",
			build: func(c *cfiBuilder) {
				cie := c.stdCIE()
				c.stdFDE(cie, 0x1000, 0x10, cat(
					advance(1), defCFA(10, 0), offset(6, 2),
					advance(1), []byte{0x0f, 2, 0x76, 0x78}, // DW_OP_breg6 -8
					advance(1), defCFA(6, 16),
					advance(1), []byte{0x12, 7}, sleb(-2), // def_cfa_sf rsp, -2*-8
				)...)
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1001},
				{PC: 0x1003, CFA: CFAFP, Offset: 16, RBPOffset: -16},
				{PC: 0x1004, CFA: CFASP, Offset: 16, RBPOffset: -16},
				{PC: 0x1010},
			},
		},
		{
			name: "rbp rules a row cannot hold give 0",
			build: func(c *cfiBuilder) {
				cie := c.stdCIE()
				c.stdFDE(cie, 0x1000, 0x10, cat(
					advance(1), []byte{0x11, 6}, sleb(-3), // offset_extended_sf rbp -3*-8
					advance(1), []byte{0x14, 6, 2}, // val_offset
					advance(1), []byte{0x2f, 6, 4}, // GNU_negative_offset_extended: -(4*-8)
					advance(1), []byte{0x09, 6, 3}, // register: in rbx
					advance(1), []byte{0x05, 6, 5}, // offset_extended
					advance(1), []byte{0x10, 6, 2, 0x76, 0}, // expression
					advance(1), []byte{0x05, 6, 5}, []byte{0x08, 6}, // same_value
				)...)
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1001, CFA: CFASP, Offset: 8, RBPOffset: 24},
				{PC: 0x1002, CFA: CFASP, Offset: 8},
				{PC: 0x1003, CFA: CFASP, Offset: 8, RBPOffset: 32},
				{PC: 0x1004, CFA: CFASP, Offset: 8},
				{PC: 0x1005, CFA: CFASP, Offset: 8, RBPOffset: -40},
				{PC: 0x1006, CFA: CFASP, Offset: 8},
				{PC: 0x1010},
			},
		},
		{
			name: "unsorted FDEs are sorted and the gaps between them fall back",
			build: func(c *cfiBuilder) {
				cie := c.stdCIE()
				c.stdFDE(cie, 0x3000, 0x10, cat(advance(2), defCFAOffset(16))...)
				c.stdFDE(cie, 0x1000, 0x10)
				c.stdFDE(cie, 0x1010, 0x10) // contiguous, same rule: merged
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1020},
				{PC: 0x3000, CFA: CFASP, Offset: 8},
				{PC: 0x3002, CFA: CFASP, Offset: 16},
				{PC: 0x3010},
			},
		},
		{
			name: "of overlapping FDEs the first by start wins and the other is clipped",
			build: func(c *cfiBuilder) {
				cie := c.stdCIE()
				c.stdFDE(cie, 0x1080, 0x100, cat(advance(0x10), defCFAOffset(16), advance(0x70), defCFAOffset(24))...)
				c.stdFDE(cie, 0x1000, 0x100, cat(advance(0x20), defCFAOffset(32))...)
				c.stdFDE(cie, 0x1010, 0x10, defCFAOffset(48)...) // inside the first: dropped
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1020, CFA: CFASP, Offset: 32},
				{PC: 0x1100, CFA: CFASP, Offset: 24},
				{PC: 0x1180},
			},
		},
		{
			name: "set_loc, advance_loc1/2/4, and rows past the FDE's end dropped",
			build: func(c *cfiBuilder) {
				cie := c.stdCIE()
				c.stdFDE(cie, 0x1000, 0x1000, cat(
					[]byte{0x02, 0x10}, defCFAOffset(16),
					[]byte{0x03, 0x00, 0x01}, defCFAOffset(24),
					[]byte{0x04, 0x00, 0x02, 0, 0}, defCFAOffset(32),
					[]byte{0x01}, encode(pePcrel|peSdata4, 0), // set_loc: filled in below
					defCFAOffset(40),
					[]byte{0x04, 0, 0, 1, 0}, defCFAOffset(48),
				)...)
				// The set_loc operand is the 4 bytes before def_cfa_offset 40 and
				// the advance_loc4: make it 0x1800, relative to its place.
				pos := len(c.b) - 5 - 2 - 2 - 4
				binary.LittleEndian.PutUint32(c.b[pos:], uint32(0x1800-(c.addr+uint64(pos))))
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1010, CFA: CFASP, Offset: 16},
				{PC: 0x1110, CFA: CFASP, Offset: 24},
				{PC: 0x1310, CFA: CFASP, Offset: 32},
				{PC: 0x1800, CFA: CFASP, Offset: 40},
				{PC: 0x2000},
			},
		},
		{
			name: "zPLR CIE with an indirect personality, LSDA in the FDE, absolute udata8 addresses",
			build: func(c *cfiBuilder) {
				aug := cat([]byte{0x9b}, encode(peSdata4, 0x1234), []byte{0x1b, peUdata8})
				cie := c.cie(1, "zPLR", aug, 0x0c, 7, 8, 0x80|16, 1)
				c.fde(cie, peUdata8, 0x1000, 0x10, encode(pePcrel|peSdata4, 0), cat(advance(1), defCFAOffset(16))...)
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1001, CFA: CFASP, Offset: 16},
				{PC: 0x1010},
			},
		},
		{
			name: "CIE version 3, signal frame augmentation, uleb128 addresses",
			build: func(c *cfiBuilder) {
				cie := c.cie(3, "zRS", []byte{peUleb}, 0x0c, 7, 8, 0x80|16, 1)
				c.fde(cie, peUleb, 0x1000, 0x10, []byte{}, cat(advance(1), defCFAOffset(16))...)
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1001, CFA: CFASP, Offset: 16},
				{PC: 0x1010},
			},
		},
		{
			name: "a legacy \"eh\" CIE without augmentation data",
			build: func(c *cfiBuilder) {
				cie := c.entry([]byte{0, 0, 0, 0}, func(int) []byte {
					return cat([]byte{1, 'e', 'h', 0}, make([]byte, 8), uleb(1), sleb(-8), []byte{16, 0x0c, 7, 8, 0x90, 1})
				})
				c.fde(cie, peAbsptr, 0x1000, 0x10, nil, cat(advance(1), defCFAOffset(16))...)
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1001, CFA: CFASP, Offset: 16},
				{PC: 0x1010},
			},
		},
		{
			name: "64-bit DWARF lengths",
			build: func(c *cfiBuilder) {
				c.b = cat([]byte{0xff, 0xff, 0xff, 0xff}, binary.LittleEndian.AppendUint64(nil, 8+1+1+1+1+1+3),
					make([]byte, 8), []byte{1, 0, 1, 0x78, 16, 0x0c, 7, 8})
				body := cat(binary.LittleEndian.AppendUint64(nil, uint64(len(c.b)+12)),
					binary.LittleEndian.AppendUint64(nil, 0x1000), binary.LittleEndian.AppendUint64(nil, 0x10),
					advance(1), defCFAOffset(16))
				c.b = cat(c.b, []byte{0xff, 0xff, 0xff, 0xff}, binary.LittleEndian.AppendUint64(nil, uint64(len(body))), body)
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1001, CFA: CFASP, Offset: 16},
				{PC: 0x1010},
			},
		},
		{
			name:  ".debug_frame: CIE id 0xffffffff, absolute CIE offsets and addresses",
			debug: true,
			build: func(c *cfiBuilder) {
				c.stdFDE(c.cie(1, "", nil, 0x0c, 7, 8, 0x80|16, 1), 0x1000, 0x10, cat(advance(2), defCFAOffset(16))...)
				c.stdFDE(c.cie(4, "", nil), 0x2000, 0x10) // CIE v4 without initial rules
			},
			want: []Row{
				{PC: 0x1000, CFA: CFASP, Offset: 8},
				{PC: 0x1002, CFA: CFASP, Offset: 16},
				{PC: 0x1010},
			},
		},
		{
			name: "a malformed FDE is skipped and the others kept",
			build: func(c *cfiBuilder) {
				cie := c.stdCIE()
				c.stdFDE(cie, 0x1000, 0x10, 0x3f) // unknown opcode
				c.stdFDE(cie, 0x2000, 0x10, 0x0e) // truncated operand
				c.stdFDE(cie, 0x3000, 0x10)
				c.stdFDE(cie+1, 0x4000, 0x10) // CIE pointer into the middle of a CIE
				c.b = append(c.b, 0, 0, 0, 0) // terminator
			},
			want: []Row{{PC: 0x3000, CFA: CFASP, Offset: 8}, {PC: 0x3010}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &cfiBuilder{addr: addr, debug: tt.debug}
			tt.build(c)
			got, err := sectionRows(c.b, addr, !tt.debug)
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("rows:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestSectionsWithoutFDEsGiveNoRowsAndNoError(t *testing.T) {
	for _, data := range [][]byte{nil, {0, 0, 0, 0}} {
		rows, err := sectionRows(data, 0, true)
		if err != nil || len(rows) != 0 {
			t.Errorf("%x: rows %v, err %v; want none", data, rows, err)
		}
	}
	c := &cfiBuilder{}
	c.stdCIE()
	if rows, err := sectionRows(c.b, 0, true); err != nil || len(rows) != 0 {
		t.Errorf("a lone CIE: rows %v, err %v; want none", rows, err)
	}
}

func TestAnUnreadableSectionIsAnError(t *testing.T) {
	for _, data := range [][]byte{
		{0xff, 0, 0, 0, 1},                    // length past the end
		{8, 0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 0}, // CIE version 99
	} {
		if rows, err := sectionRows(data, 0, true); err == nil {
			t.Errorf("%x: rows %v, no error", data, rows)
		}
	}
}

func TestDebugFrameIsUsedOnlyWhereEhFrameHasNoFDE(t *testing.T) {
	eh := &cfiBuilder{addr: 0x5000}
	eh.stdFDE(eh.stdCIE(), 0x1000, 0x10, cat(advance(1), defCFAOffset(16))...)
	dbg := &cfiBuilder{debug: true}
	cie := dbg.cie(1, "", nil, 0x0c, 7, 8, 0x80|16, 1)
	dbg.stdFDE(cie, 0x1008, 0x10, defCFAOffset(32)...) // overlaps: dropped
	dbg.stdFDE(cie, 0x2000, 0x10, defCFAOffset(48)...)
	var tb table
	for _, s := range []section{{data: eh.b, addr: eh.addr, eh: true}, {data: dbg.b}} {
		if _, err := tb.addSection(s); err != nil {
			t.Fatal(err)
		}
	}
	got := tb.build()
	want := []Row{
		{PC: 0x1000, CFA: CFASP, Offset: 8},
		{PC: 0x1001, CFA: CFASP, Offset: 16},
		{PC: 0x1010},
		{PC: 0x2000, CFA: CFASP, Offset: 48},
		{PC: 0x2010},
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows:\n got %v\nwant %v", got, want)
	}
}
