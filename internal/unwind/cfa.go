package unwind

// x86-64 DWARF register numbers.
const (
	regRBP = 6
	regRSP = 7
)

// cfaHow says how a state computes the CFA.
type cfaHow uint8

const (
	cfaRegOff cfaHow = iota // cfaReg + cfaOff
	cfaPLT                  // the .plt expression, with pltK
	cfaExpr                 // any other DWARF expression
)

// regHow is the rule for a register we follow (rbp, the return address).
type regHow uint8

const (
	regSame      regHow = iota // unchanged: not described, or same_value
	regOffset                  // saved at CFA + offset
	regUndefined               // undefined
	regOther                   // in a register, by an expression, or a val_* value
)

// state is the part of a CFI row the unwinder needs.
type state struct {
	cfaReg uint64
	cfaOff int64
	cfa    cfaHow
	pltK   uint8
	rbp    regHow
	rbpOff int64
	ra     regHow
}

func (s *state) set(c *cie, reg uint64, how regHow, off int64) {
	if reg == regRBP {
		s.rbp, s.rbpOff = how, off
	}
	if reg == c.ra {
		s.ra = how
	}
}

// restore puts reg back to its rule after the CIE's initial instructions.
func (s *state) restore(c *cie, reg uint64) {
	if reg == regRBP {
		s.rbp, s.rbpOff = c.init.rbp, c.init.rbpOff
	}
	if reg == c.ra {
		s.ra = c.init.ra
	}
}

func (s *state) row() Row {
	if s.ra == regUndefined {
		return Row{CFA: CFAEnd}
	}
	var r Row
	switch {
	case s.cfa == cfaPLT:
		r = Row{CFA: CFAPLT, Offset: int32(s.pltK)}
	case s.cfa != cfaRegOff || !fits32(s.cfaOff):
		return Row{}
	case s.cfaReg == regRSP:
		r = Row{CFA: CFASP, Offset: int32(s.cfaOff)}
	case s.cfaReg == regRBP:
		r = Row{CFA: CFAFP, Offset: int32(s.cfaOff)}
	default:
		return Row{}
	}
	if s.rbp == regOffset && fits32(s.rbpOff) {
		r.RBPOffset = int32(s.rbpOff)
	}
	return r
}

func fits32(v int64) bool { return v == int64(int32(v)) }

// pltExpr is the CFA expression GNU ld writes for .plt entries:
// rsp + 8 + ((rip & 15) >= K) << 3, K at index 6 as DW_OP_litK. It adds 8
// once the entry has pushed its relocation index.
var pltExpr = [...]byte{
	0x77, 8, // DW_OP_breg7 (rsp) 8
	0x80, 0, // DW_OP_breg16 (rip) 0
	0x3f, // DW_OP_lit15
	0x1a, // DW_OP_and
	0x30, // DW_OP_litK
	0x2a, // DW_OP_ge
	0x33, // DW_OP_lit3
	0x24, // DW_OP_shl
	0x22, // DW_OP_plus
}

// pltK returns K if expr is the .plt expression.
func pltK(expr []byte) (uint8, bool) {
	if len(expr) != len(pltExpr) {
		return 0, false
	}
	for i, b := range pltExpr {
		if i == 6 {
			if expr[i] < 0x30 || expr[i] > 0x4f {
				return 0, false
			}
		} else if expr[i] != b {
			return 0, false
		}
	}
	return expr[6] - 0x30, true
}

// DW_CFA_* opcodes with the low 6 bits free.
const (
	cfaAdvanceLoc = 0x1
	cfaOffset     = 0x2
	cfaRestore    = 0x3
)

// run interprets CFA instructions from r, starting from s at location
// start. Rows for [start, end) are appended to p.t.rows; a CIE's initial
// instructions run with end 0 and append nothing.
func (p *parser) run(c *cie, r *reader, s state, start, end uint64) (state, error) {
	lo := len(p.t.rows)
	stack := p.t.stack[:0]
	defer func() { p.t.stack = stack[:0] }()
	loc := start
	for !r.done() {
		op := r.u8()
		var delta uint64 // for advances
		advance := false
		switch op >> 6 {
		case cfaAdvanceLoc:
			delta, advance = uint64(op&0x3f)*c.codeAlign, true
		case cfaOffset:
			s.set(c, uint64(op&0x3f), regOffset, int64(r.uleb())*c.dataAlign)
		case cfaRestore:
			s.restore(c, uint64(op&0x3f))
		default:
			switch op {
			case 0x00: // nop
			case 0x01: // set_loc
				var to uint64
				if p.sec.eh {
					var err error
					if to, err = p.pointer(r, c.ptrEnc, true); err != nil {
						return s, err
					}
				} else {
					to = r.uint(c.addrSize)
				}
				if to < loc {
					return s, errLoc
				}
				delta, advance = to-loc, true
			case 0x02: // advance_loc1
				delta, advance = uint64(r.u8())*c.codeAlign, true
			case 0x03: // advance_loc2
				delta, advance = uint64(r.u16())*c.codeAlign, true
			case 0x04: // advance_loc4
				delta, advance = uint64(r.u32())*c.codeAlign, true
			case 0x1d: // MIPS_advance_loc8
				delta, advance = r.u64()*c.codeAlign, true
			case 0x05: // offset_extended
				reg := r.uleb()
				s.set(c, reg, regOffset, int64(r.uleb())*c.dataAlign)
			case 0x11: // offset_extended_sf
				reg := r.uleb()
				s.set(c, reg, regOffset, r.sleb()*c.dataAlign)
			case 0x2f: // GNU_negative_offset_extended
				reg := r.uleb()
				s.set(c, reg, regOffset, -int64(r.uleb())*c.dataAlign)
			case 0x06: // restore_extended
				s.restore(c, r.uleb())
			case 0x07: // undefined
				s.set(c, r.uleb(), regUndefined, 0)
			case 0x08: // same_value
				s.set(c, r.uleb(), regSame, 0)
			case 0x09: // register
				reg := r.uleb()
				r.uleb()
				s.set(c, reg, regOther, 0)
			case 0x0a: // remember_state
				if len(stack) >= 1024 {
					return s, errStack
				}
				stack = append(stack, s)
			case 0x0b: // restore_state; unmatched ones are ignored, as readelf does
				if n := len(stack); n > 0 {
					s = stack[n-1]
					stack = stack[:n-1]
				}
			case 0x0c: // def_cfa
				s.cfaReg = r.uleb()
				s.cfaOff = int64(r.uleb())
				s.cfa = cfaRegOff
			case 0x12: // def_cfa_sf
				s.cfaReg = r.uleb()
				s.cfaOff = r.sleb() * c.dataAlign
				s.cfa = cfaRegOff
			case 0x0d: // def_cfa_register
				s.cfaReg = r.uleb()
				s.cfa = cfaRegOff
			case 0x0e: // def_cfa_offset; after an expression it changes nothing that counts
				s.cfaOff = int64(r.uleb())
			case 0x13: // def_cfa_offset_sf
				s.cfaOff = r.sleb() * c.dataAlign
			case 0x0f: // def_cfa_expression
				expr := r.take(r.uleb())
				s.cfa = cfaExpr
				if k, ok := pltK(expr); ok {
					s.cfa, s.pltK = cfaPLT, k
				}
			case 0x10, 0x16: // expression, val_expression
				reg := r.uleb()
				r.take(r.uleb())
				s.set(c, reg, regOther, 0)
			case 0x14: // val_offset
				reg := r.uleb()
				r.uleb()
				s.set(c, reg, regOther, 0)
			case 0x15: // val_offset_sf
				reg := r.uleb()
				r.sleb()
				s.set(c, reg, regOther, 0)
			case 0x2e: // GNU_args_size
				r.uleb()
			case 0x2d: // GNU_window_save (SPARC), AArch64's negate_ra_state: no operands
			default:
				return s, errOpcode
			}
		}
		if r.bad {
			return s, errTruncated
		}
		if advance {
			if loc < end {
				p.t.rows = push(p.t.rows, lo, loc, s.row())
			}
			if loc+delta < loc {
				return s, errLoc
			}
			loc += delta
		}
	}
	if loc < end {
		p.t.rows = push(p.t.rows, lo, loc, s.row())
	}
	return s, nil
}

// push appends r at pc to rows[lo:], which is sorted by PC: a row already
// at pc is replaced, and r is dropped when it repeats the rule before it.
func push(rows []Row, lo int, pc uint64, r Row) []Row {
	n := len(rows)
	if n > lo && rows[n-1].PC == pc {
		n--
		rows = rows[:n]
	}
	if n > lo && sameRule(rows[n-1], r) {
		return rows
	}
	r.PC = pc
	return append(rows, r)
}

func sameRule(a, b Row) bool {
	return a.CFA == b.CFA && a.Offset == b.Offset && a.RBPOffset == b.RBPOffset
}
