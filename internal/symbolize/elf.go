package symbolize

import (
	"bytes"
	"cmp"
	"debug/elf"
	"debug/gosym"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ianlancetaylor/demangle"
)

// module is what is kept of one ELF file: enough to symbolize without
// keeping it open. It is shared by every process that maps the file.
type module struct {
	bytes   int64 // what it holds, estimated (cost)
	buildID string
	loads   []elf.ProgHeader // PT_LOAD
	syms    []symbol         // function symbols by address
	gotab   *gosym.Table     // Go binaries
	dw      *dwarfInfo       // nil without DWARF
}

type symbol struct {
	addr, end uint64
	name      string // mangled
}

// errOverBudget: a file whose symbols and DWARF would take more than the
// symbol caches' budget.
var errOverBudget = errors.New("over the symbol caches' budget")

// loadModule reads f. debugDir, if not empty, is searched for a separate
// debug file by build ID (debugDir/.build-id/ab/cdef….debug) when f has no
// DWARF of its own. room is the memory it may take (cost): of a file that
// would take more, only the program headers and build ID are read
// (errOverBudget).
func loadModule(f io.ReaderAt, debugDir string, room int64) (_ *module, err error) {
	// debug/elf and debug/dwarf may panic on a malformed file, which a
	// traced process can map: then it is a file without symbols.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed ELF: %v", r)
		}
	}()
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, err
	}
	m := &module{buildID: buildID(ef)}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			m.loads = append(m.loads, p.ProgHeader)
		}
	}
	if cost(ef) > room {
		// Offsets and the build ID only, for symbolizing elsewhere.
		return m, errOverBudget
	}
	m.bytes, m.syms = cost(ef), symbols(ef)
	m.gotab = goTable(ef)
	m.dw = newDWARF(ef)
	if m.dw == nil && debugDir != "" && len(m.buildID) > 2 && isHex(m.buildID) {
		m.loadDebugFile(filepath.Join(debugDir, ".build-id", m.buildID[:2], m.buildID[2:]+".debug"), room-m.bytes)
	}
	return m, nil
}

// cost estimates the memory a module of ef holds: its symbols (an entry
// and a name each), Go's line table and the DWARF sections, which it reads
// whole, with twice their size for the tables made of them as they are
// used. What a traced process maps may be crafted to be huge.
func cost(ef *elf.File) int64 {
	var n int64
	for _, sec := range ef.Sections {
		size := int64(min(sec.Size, math.MaxInt64/4))
		switch {
		case sec.Type == elf.SHT_SYMTAB || sec.Type == elf.SHT_DYNSYM:
			n += size / 24 * 40
		case sec.Name == ".strtab" || sec.Name == ".dynstr":
			n += size
		case strings.HasSuffix(sec.Name, "gopclntab"):
			n += 2 * size
		case strings.HasPrefix(sec.Name, ".debug_") || strings.HasPrefix(sec.Name, ".zdebug_"):
			n += 2 * size
		}
	}
	return n
}

// loadDebugFile takes DWARF, and symbols if f had none, from a separate
// debug file (objcopy --only-keep-debug) with the same build ID.
func (m *module) loadDebugFile(path string, room int64) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil || buildID(ef) != m.buildID || cost(ef) > room {
		return
	}
	m.bytes += cost(ef)
	m.dw = newDWARF(ef)
	if syms := symbols(ef); len(syms) > len(m.syms) {
		m.syms = syms
	}
}

// vaddr turns an offset in the file into the address the ELF file gives
// it, through the PT_LOAD program headers (PIE, non-PIE and libraries alike).
func (m *module) vaddr(off uint64) (uint64, bool) {
	for _, p := range m.loads {
		if p.Off <= off && off < p.Off+p.Filesz {
			return off - p.Off + p.Vaddr, true
		}
	}
	return 0, false
}

// symbols returns the function symbols of .symtab, or of .dynsym when the
// file is stripped. A symbol without size reaches to the next symbol or to
// the end of its section.
func symbols(ef *elf.File) []symbol {
	all, err := ef.Symbols()
	if err != nil || len(all) == 0 {
		all, _ = ef.DynamicSymbols()
	}
	var syms []symbol
	for _, s := range all {
		t := elf.ST_TYPE(s.Info)
		if t != elf.STT_FUNC && t != elf.STT_GNU_IFUNC || s.Value == 0 || s.Section == elf.SHN_UNDEF {
			continue
		}
		end := s.Value + s.Size
		if s.Size == 0 {
			end = math.MaxUint64
			if i := int(s.Section); i < len(ef.Sections) && s.Section < elf.SHN_LORESERVE {
				sec := ef.Sections[i]
				end = sec.Addr + sec.Size
			}
		}
		name, _, _ := strings.Cut(s.Name, "@") // open@@GLIBC_2.2.5
		syms = append(syms, symbol{s.Value, end, name})
	}
	// Of the aliases at one address keep the one with a size, then the
	// plainest name: "open" rather than "__open64" or "__libc_open".
	plain := func(s symbol) (int, int) {
		return len(s.name) - len(strings.TrimLeft(s.name, "_")), len(s.name)
	}
	slices.SortStableFunc(syms, func(a, b symbol) int {
		if c := cmp.Compare(a.addr, b.addr); c != 0 {
			return c
		}
		if c := cmp.Compare(a.end, b.end); c != 0 {
			return c
		}
		au, al := plain(a)
		bu, bl := plain(b)
		return cmp.Or(cmp.Compare(au, bu), cmp.Compare(al, bl))
	})
	return slices.CompactFunc(syms, func(a, b symbol) bool { return a.addr == b.addr })
}

// function names the function containing vaddr: the symbol that covers it,
// or the nearest preceding one when symbols have no size.
func (m *module) function(vaddr uint64) string {
	i := sort.Search(len(m.syms), func(i int) bool { return m.syms[i].addr > vaddr })
	if i == 0 || vaddr >= m.syms[i-1].end {
		return ""
	}
	return demangle.Filter(m.syms[i-1].name)
}

// buildID is the GNU build ID in hex, else the Go build ID.
func buildID(ef *elf.File) string {
	var goID string
	visit := func(data []byte) string {
		for len(data) >= 12 {
			namesz := ef.ByteOrder.Uint32(data)
			descsz := ef.ByteOrder.Uint32(data[4:])
			typ := ef.ByteOrder.Uint32(data[8:])
			data = data[12:]
			n, d := align4(namesz), align4(descsz)
			if uint64(len(data)) < n+d {
				break
			}
			name := string(bytes.TrimRight(data[:namesz], "\x00"))
			desc := data[n : n+uint64(descsz)]
			data = data[n+d:]
			switch {
			case name == "GNU" && typ == 3: // NT_GNU_BUILD_ID
				return hex.EncodeToString(desc)
			case name == "Go" && typ == 4: // the Go linker's build ID note
				goID = string(desc)
			}
		}
		return ""
	}
	// Notes are small; a huge one is crafted.
	const maxNote = 64 << 10
	var notes [][]byte
	for _, s := range ef.Sections {
		if s.Type == elf.SHT_NOTE && s.Size <= maxNote {
			if data, err := s.Data(); err == nil {
				notes = append(notes, data)
			}
		}
	}
	if len(notes) == 0 { // no section headers: read the segments
		for _, p := range ef.Progs {
			if p.Type == elf.PT_NOTE && p.Filesz <= maxNote {
				if data, err := io.ReadAll(p.Open()); err == nil {
					notes = append(notes, data)
				}
			}
		}
	}
	for _, data := range notes {
		if id := visit(data); id != "" {
			return id
		}
	}
	return goID
}

func align4(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// goTable reads the Go symbol table (.gopclntab), or returns nil.
func goTable(ef *elf.File) *gosym.Table {
	sec := ef.Section(".gopclntab")
	if sec == nil {
		sec = ef.Section(".data.rel.ro.gopclntab") // some PIE builds
	}
	text := ef.Section(".text")
	if sec == nil || text == nil {
		return nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil
	}
	return tab
}
