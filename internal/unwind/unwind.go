// Package unwind compiles an x86-64 ELF file's DWARF call frame information
// (.eh_frame, and .debug_frame for functions .eh_frame does not describe)
// into a flat table of rows that a BPF stack unwinder can search by PC.
//
// Only what such an unwinder can use is kept: how to find the CFA, where the
// caller's rbp was saved, and whether the stack ends. Everything else a
// frame may say (other registers, expressions) is dropped or, where it
// matters for finding the caller, turned into CFANone so the unwinder
// falls back to frame pointers. Besides gaps, CFANone comes from a CFA in
// a register other than rsp and rbp (OpenSSL's assembly, stack realignment
// through r10) and from CFA expressions other than the .plt one: signal
// trampolines such as glibc's __restore_rt, OpenSSL's *(rsp+N)+8, and
// realigned frames' *(rbp-8).
package unwind

import (
	"debug/elf"
	"errors"
	"fmt"
)

// CFAKind says how to find the canonical frame address (CFA) of a frame: the
// value of rsp in the caller just before the call, so the return address is at CFA-8.
type CFAKind uint8

const (
	CFANone CFAKind = iota // no CFI covers this address (gaps between FDEs, or a rule we cannot express): the unwinder falls back to frame pointers
	CFASP                  // CFA = rsp + Offset
	CFAFP                  // CFA = rbp + Offset
	CFAPLT                 // the PLT expression: CFA = rsp + 8 + ((rip & 15) >= Offset ? 8 : 0)
	CFAEnd                 // the return address is undefined (DW_CFA_undefined rip, e.g. _start, clone's child): the stack ends here
)

func (k CFAKind) String() string {
	switch k {
	case CFANone:
		return "none"
	case CFASP:
		return "rsp"
	case CFAFP:
		return "rbp"
	case CFAPLT:
		return "plt"
	case CFAEnd:
		return "end"
	}
	return fmt.Sprintf("CFAKind(%d)", uint8(k))
}

// Row is the unwind rule from PC up to the next row's PC.
//
// CFANone and CFAEnd rows always have Offset and RBPOffset 0. RBPOffset is
// 0 also when rbp's rule is undefined, or one a row cannot hold: saved in
// another register, at an address given by an expression, a
// val_offset/val_expression value, or (never seen) saved at CFA+0. Those
// appear in hand-written assembly and in stack-realigning functions,
// whose CFA is then an expression and so CFANone anyway.
type Row struct {
	PC        uint64 // ELF virtual address (as in the file, not relocated)
	CFA       CFAKind
	Offset    int32 // see CFAKind
	RBPOffset int32 // the caller's rbp is saved at CFA + RBPOffset (negative, e.g. -16); 0: rbp is unchanged in this frame
}

// String is for tests and debugging: "0x1139 cfa=rsp+16 rbp=cfa-16".
func (r Row) String() string {
	switch r.CFA {
	case CFASP, CFAFP:
		s := fmt.Sprintf("%#x cfa=%v%+d", r.PC, r.CFA, r.Offset)
		if r.RBPOffset != 0 {
			s += fmt.Sprintf(" rbp=cfa%+d", r.RBPOffset)
		}
		return s
	case CFAPLT:
		return fmt.Sprintf("%#x cfa=plt(%d)", r.PC, r.Offset)
	}
	return fmt.Sprintf("%#x %v", r.PC, r.CFA)
}

// maxCFIBytes bounds a CFI section (inflated, when compressed): the
// largest binaries' .eh_frame holds a few MiB.
const maxCFIBytes = 64 << 20

// Rows compiles the CFI of f into rows sorted by PC, strictly increasing. Gaps between
// FDEs get a CFANone row at the end of the preceding FDE's range; consecutive rows with
// equal rules are merged into one. A file without CFI gives no rows and no error.
//
// .debug_frame is read too, and its FDEs are used where they overlap no
// .eh_frame FDE. Where FDEs overlap each other, the one that starts first
// wins and the later one is clipped. A malformed CIE or FDE is skipped;
// Rows fails only when no CIE or FDE at all could be read from the CFI
// sections present. f should be a linked executable or shared library:
// the relocations of an object file are not applied.
func Rows(f *elf.File) (_ []Row, err error) {
	// debug/elf and the parsers below read what a traced process maps:
	// whatever they do with it, a panic is a file without CFI.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unwind: malformed CFI: %v", r)
		}
	}()
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("unwind: %v %v: only x86-64 is supported", f.Class, f.Machine)
	}
	var t table
	var errs []error
	present, failed := 0, 0
	for _, name := range []string{".eh_frame", ".debug_frame"} {
		s := f.Section(name)
		if s == nil || s.Type == elf.SHT_NOBITS || s.Size == 0 {
			continue
		}
		present++
		if s.Size > maxCFIBytes {
			failed++
			errs = append(errs, fmt.Errorf("%s: %d bytes, more than the %d read", name, s.Size, maxCFIBytes))
			continue
		}
		data, err := s.Data()
		if err != nil {
			failed++
			errs = append(errs, fmt.Errorf("reading %s: %w", name, err))
			continue
		}
		read, err := t.addSection(section{data: data, addr: s.Addr, eh: name == ".eh_frame"})
		if read == 0 && err != nil {
			failed++
			errs = append(errs, fmt.Errorf("parsing %s: %w", name, err))
		}
	}
	if present > 0 && failed == present {
		return nil, fmt.Errorf("unwind: %w", errors.Join(errs...))
	}
	return t.build(), nil
}

// sectionRows compiles one CFI section's bytes alone, as Rows does for a
// file; addr is the section's address, eh says .eh_frame (else .debug_frame).
func sectionRows(data []byte, addr uint64, eh bool) ([]Row, error) {
	var t table
	read, err := t.addSection(section{data: data, addr: addr, eh: eh})
	if read == 0 && err != nil {
		return nil, err
	}
	return t.build(), nil
}
