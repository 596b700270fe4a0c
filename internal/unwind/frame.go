package unwind

import (
	"errors"
	"fmt"
	"slices"
)

// section is one CFI section's bytes.
type section struct {
	data []byte
	addr uint64 // sh_addr: what pcrel pointers are relative to
	eh   bool   // .eh_frame rather than .debug_frame: see isCIE and the pointer encodings
}

// cie is what an FDE needs from its CIE.
type cie struct {
	codeAlign uint64
	dataAlign int64
	ra        uint64 // the return-address column
	ptrEnc    byte   // 'R': how FDE addresses are encoded (.eh_frame)
	augData   bool   // 'z': FDEs have augmentation data, with its length
	addrSize  int    // of FDE addresses in .debug_frame
	init      state  // the rules after the initial instructions
}

// Pointer encodings (DW_EH_PE_*), .eh_frame only.
const (
	peAbsptr  = 0x00
	peUleb    = 0x01
	peUdata2  = 0x02
	peUdata4  = 0x03
	peUdata8  = 0x04
	peSleb    = 0x09
	peSdata2  = 0x0a
	peSdata4  = 0x0b
	peSdata8  = 0x0c
	pePcrel   = 0x10
	peAligned = 0x50
	peOmit    = 0xff
)

// Errors of a single CIE or FDE; the first is reported only if nothing in
// the section could be read.
var (
	errTruncated = errors.New("entry truncated")
	errVersion   = errors.New("unsupported CIE version")
	errAug       = errors.New("unsupported CIE augmentation")
	errEncoding  = errors.New("unsupported pointer encoding")
	errCIE       = errors.New("FDE's CIE pointer does not point at a valid CIE")
	errRange     = errors.New("FDE address range overflows")
	errOpcode    = errors.New("unknown DW_CFA opcode")
	errLoc       = errors.New("location goes backwards or overflows")
	errStack     = errors.New("DW_CFA_remember_state nested too deep")
	errTooMany   = errors.New("more than 2^31 rows")
)

// addSection compiles every FDE of sec into t. It returns how many CIEs and
// FDEs were read and the first error met; a bad entry is skipped, and an
// entry whose length is wrong ends the section since nothing after it can
// be found.
func (t *table) addSection(sec section) (read int, err error) {
	p := parser{sec: sec, t: t, cies: map[int]*cie{}}
	data := sec.data
	p.reserve()
	for off := 0; off < len(data); {
		e, ok := p.entry(off)
		if !ok {
			return read, fmt.Errorf("entry at %#x: length past the end of the section", off)
		}
		var eerr error
		switch {
		case e.body == e.end: // zero terminator (or padding)
		case e.short:
			eerr = errTruncated
		case e.isCIE:
			if p.cieAt(off) == nil {
				eerr = p.cieErr[off]
			}
		default:
			eerr = p.fde(e)
		}
		if eerr == nil {
			read++
		} else if err == nil {
			err = fmt.Errorf("entry at %#x: %w", off, eerr)
		}
		off = e.end
	}
	return read, err
}

// reserve grows t's slices for the section at once rather than by
// doubling: node's .eh_frame has about 76,000 FDEs and 300,000 rows, about
// one row per 9 bytes.
func (p *parser) reserve() {
	entries := 0
	for off := 0; off < len(p.sec.data); {
		e, ok := p.entry(off)
		if !ok {
			break
		}
		if e.body != e.end {
			entries++
		}
		off = e.end
	}
	p.t.fdes = slices.Grow(p.t.fdes, entries)
	p.t.rows = slices.Grow(p.t.rows, len(p.sec.data)/8)
}

type parser struct {
	sec    section
	t      *table
	cies   map[int]*cie // by section offset; nil: not a usable CIE
	cieErr map[int]error
}

// entry is one CIE or FDE: its id/pointer field and where it ends.
type entry struct {
	body    int    // after the length field
	end     int    // after the entry
	idOff   int    // of the CIE id / CIE pointer
	id      uint64 // CIE id or CIE pointer
	offSize int    // 4, or 8 in 64-bit DWARF
	isCIE   bool
	short   bool // too short to hold the id
}

func (p *parser) entry(off int) (entry, bool) {
	r := reader{b: p.sec.data, off: off}
	e := entry{offSize: 4}
	length := uint64(r.u32())
	if length == 0xffffffff {
		length = r.u64()
		e.offSize = 8
	}
	if r.bad || length > uint64(len(r.b)-r.off) {
		return e, false
	}
	e.body = r.off
	e.end = r.off + int(length)
	if length == 0 {
		return e, true
	}
	r.b = r.b[:e.end]
	e.idOff = r.off
	e.id = r.uint(e.offSize)
	if r.bad {
		e.short = true
		return e, true
	}
	if p.sec.eh {
		e.isCIE = e.id == 0
	} else {
		e.isCIE = e.id == 0xffffffff || (e.offSize == 8 && e.id == ^uint64(0))
	}
	return e, true
}

// cieAt parses the CIE at off once; nil if there is none usable.
func (p *parser) cieAt(off int) *cie {
	if c, ok := p.cies[off]; ok {
		return c
	}
	c, err := p.parseCIE(off)
	if err != nil {
		if p.cieErr == nil {
			p.cieErr = map[int]error{}
		}
		p.cieErr[off] = err
		c = nil
	}
	p.cies[off] = c
	return c
}

func (p *parser) parseCIE(off int) (*cie, error) {
	e, ok := p.entry(off)
	if !ok || e.body == e.end || e.short {
		return nil, errTruncated
	}
	if !e.isCIE {
		return nil, errCIE
	}
	r := reader{b: p.sec.data[:e.end], off: e.idOff + e.offSize}
	c := &cie{addrSize: 8}
	version := r.u8()
	if version != 1 && version != 3 && version != 4 {
		return nil, errVersion
	}
	aug := r.cstring()
	if len(aug) >= 2 && aug[0] == 'e' && aug[1] == 'h' {
		// Legacy GCC: an address-sized pointer to exception data follows.
		r.take(8)
		aug = aug[2:]
	}
	if version == 4 {
		c.addrSize = int(r.u8())
		r.u8() // segment selector size
		if c.addrSize != 4 && c.addrSize != 8 {
			return nil, errVersion
		}
	}
	c.codeAlign = r.uleb()
	c.dataAlign = r.sleb()
	if version == 1 {
		c.ra = uint64(r.u8())
	} else {
		c.ra = r.uleb()
	}
	if r.bad {
		return nil, errTruncated
	}
	if err := p.augmentation(c, &r, aug); err != nil {
		return nil, err
	}
	s, err := p.run(c, &r, state{}, 0, 0)
	if err != nil {
		return nil, err
	}
	c.init = s
	return c, nil
}

// augmentation reads the CIE's augmentation data as its string says.
func (p *parser) augmentation(c *cie, r *reader, aug []byte) error {
	if len(aug) == 0 {
		return nil
	}
	if aug[0] != 'z' {
		// Without 'z' the data's length is unknown: accept only letters
		// that have no data.
		for _, a := range aug {
			if a != 'S' && a != 'B' && a != 'G' {
				return errAug
			}
		}
		return nil
	}
	c.augData = true
	n := r.uleb()
	data := r.take(n)
	if r.bad {
		return errTruncated
	}
	// Pointers in the data are relative to their place in the section.
	ar := reader{b: r.b[:r.off], off: r.off - len(data)}
	for _, a := range aug[1:] {
		switch a {
		case 'R':
			c.ptrEnc = ar.u8()
		case 'L':
			ar.u8() // the LSDA's encoding, used in the FDE's data we skip
		case 'P':
			enc := ar.u8()
			if _, err := p.pointer(&ar, enc&^0x80, false); err != nil { // indirect: we skip the value anyway
				return err
			}
		case 'S', 'B', 'G':
		default:
			// An unknown letter: its data is last or not understood;
			// 'z' lets us skip it, as libgcc does.
			return nil
		}
		if ar.bad {
			return errTruncated
		}
	}
	return nil
}

// pointer reads an encoded pointer (DW_EH_PE_*). Without apply only the
// raw value is read, as for an FDE's address range.
func (p *parser) pointer(r *reader, enc byte, apply bool) (uint64, error) {
	if enc == peOmit {
		return 0, errEncoding
	}
	pos := r.off
	if enc&0x70 == peAligned {
		a := (p.sec.addr + uint64(r.off)) % 8
		if a != 0 {
			r.take(8 - a)
		}
		enc = peAbsptr
	}
	var v uint64
	switch enc & 0x0f {
	case peAbsptr, peUdata8, peSdata8:
		v = r.u64()
	case peUleb:
		v = r.uleb()
	case peUdata2:
		v = uint64(r.u16())
	case peUdata4:
		v = uint64(r.u32())
	case peSleb:
		v = uint64(r.sleb())
	case peSdata2:
		v = uint64(int64(int16(r.u16())))
	case peSdata4:
		v = uint64(int64(int32(r.u32())))
	default:
		return 0, errEncoding
	}
	if r.bad {
		return 0, errTruncated
	}
	if !apply {
		return v, nil
	}
	switch enc & 0x70 {
	case 0:
	case pePcrel:
		v += p.sec.addr + uint64(pos)
	default:
		// textrel, datarel, funcrel: x86-64 toolchains use none of
		// them in .eh_frame itself.
		return 0, errEncoding
	}
	if enc&0x80 != 0 {
		return 0, errEncoding // indirect: the address of the address
	}
	return v, nil
}

// fde compiles one FDE into rows of p.t.
func (p *parser) fde(e entry) error {
	cieOff := e.id
	if p.sec.eh {
		if e.id > uint64(e.idOff) {
			return errCIE
		}
		cieOff = uint64(e.idOff) - e.id
	}
	if cieOff >= uint64(len(p.sec.data)) {
		return errCIE
	}
	c := p.cieAt(int(cieOff))
	if c == nil {
		return errCIE
	}
	r := reader{b: p.sec.data[:e.end], off: e.idOff + e.offSize}
	var start, size uint64
	if p.sec.eh {
		var err error
		if start, err = p.pointer(&r, c.ptrEnc, true); err != nil {
			return err
		}
		if size, err = p.pointer(&r, c.ptrEnc&0x0f, false); err != nil {
			return err
		}
	} else {
		start = r.uint(c.addrSize)
		size = r.uint(c.addrSize)
	}
	if c.augData {
		r.take(r.uleb())
	}
	if r.bad {
		return errTruncated
	}
	end := start + size
	if end < start {
		return errRange
	}
	if size == 0 {
		return nil
	}
	return p.t.addFDE(p, c, &r, start, end)
}
