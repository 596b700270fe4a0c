package symbolize

import (
	"cmp"
	"debug/dwarf"
	"debug/elf"
	"slices"
	"sort"

	"github.com/ianlancetaylor/demangle"
)

// dwarfInfo answers file:line and inlined calls from DWARF. Compile units
// are indexed when first needed.
type dwarfInfo struct {
	data  *dwarf.Data
	units []unitRange // by low address
	cus   map[dwarf.Offset]*unit
	names map[dwarf.Offset]string // function names by DIE
}

type unitRange struct {
	low, high uint64
	off       dwarf.Offset
}

type unit struct {
	files []*dwarf.LineFile
	rows  []lineRow // by address; nil until a line is asked for
	entry *dwarf.Entry
	funcs []*scope // functions with code
}

type lineRow struct {
	addr uint64
	file string
	line int
	end  bool // end of a sequence: no code here
}

// scope is a function, or a call inlined into one, with the address
// ranges of its code and the calls inlined into it.
type scope struct {
	ranges   [][2]uint64
	name     string
	callFile string // where an inlined call was made from
	callLine int
	inlined  []*scope
}

func (s *scope) contains(pc uint64) bool {
	for _, r := range s.ranges {
		if r[0] <= pc && pc < r[1] {
			return true
		}
	}
	return false
}

func newDWARF(ef *elf.File) *dwarfInfo {
	if ef.Section(".debug_info") == nil && ef.Section(".zdebug_info") == nil {
		return nil
	}
	data, err := ef.DWARF()
	if err != nil {
		return nil
	}
	d := &dwarfInfo{data: data, cus: map[dwarf.Offset]*unit{}, names: map[dwarf.Offset]string{}}
	r := data.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag == dwarf.TagCompileUnit || e.Tag == dwarf.TagPartialUnit {
			ranges, _ := data.Ranges(e)
			for _, rg := range ranges {
				d.units = append(d.units, unitRange{rg[0], rg[1], e.Offset})
			}
		}
		r.SkipChildren()
	}
	slices.SortFunc(d.units, func(a, b unitRange) int { return cmp.Compare(a.low, b.low) })
	return d
}

// unit returns the compile unit holding pc, indexed.
func (d *dwarfInfo) unit(pc uint64) *unit {
	i := sort.Search(len(d.units), func(i int) bool { return d.units[i].low > pc })
	var off dwarf.Offset
	switch {
	case i > 0 && pc < d.units[i-1].high:
		off = d.units[i-1].off
	default: // overlapping ranges: look at all
		j := slices.IndexFunc(d.units, func(u unitRange) bool { return u.low <= pc && pc < u.high })
		if j < 0 {
			return nil
		}
		off = d.units[j].off
	}
	if u, ok := d.cus[off]; ok {
		return u
	}
	u := d.readUnit(off)
	d.cus[off] = u
	return u
}

func (d *dwarfInfo) readUnit(off dwarf.Offset) *unit {
	r := d.data.Reader()
	r.Seek(off)
	cu, err := r.Next()
	if err != nil || cu == nil {
		return nil
	}
	u := &unit{entry: cu}
	if lr, err := d.data.LineReader(cu); err == nil && lr != nil {
		u.files = lr.Files()
	}
	// Walk the DIEs; enclosing[i] is the scope that children at depth i+1
	// belong to.
	var enclosing []*scope
	for cu.Children {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag == 0 {
			if len(enclosing) == 0 {
				break
			}
			enclosing = enclosing[:len(enclosing)-1]
			continue
		}
		var parent *scope
		if len(enclosing) > 0 {
			parent = enclosing[len(enclosing)-1]
		}
		var s *scope
		switch e.Tag {
		case dwarf.TagSubprogram:
			ranges, _ := d.data.Ranges(e)
			if len(ranges) == 0 { // a declaration or an abstract instance
				r.SkipChildren()
				continue
			}
			s = &scope{ranges: ranges, name: d.name(e, 0)}
			u.funcs = append(u.funcs, s)
		case dwarf.TagInlinedSubroutine:
			ranges, _ := d.data.Ranges(e)
			if parent == nil || len(ranges) == 0 {
				r.SkipChildren()
				continue
			}
			s = &scope{ranges: ranges, name: d.name(e, 0), callLine: intVal(e, dwarf.AttrCallLine)}
			if i := intVal(e, dwarf.AttrCallFile); i >= 0 && i < len(u.files) && u.files[i] != nil {
				s.callFile = u.files[i].Name
			}
			parent.inlined = append(parent.inlined, s)
		case dwarf.TagStructType, dwarf.TagClassType, dwarf.TagUnionType, dwarf.TagEnumerationType,
			dwarf.TagVariable, dwarf.TagFormalParameter, dwarf.TagSubroutineType:
			r.SkipChildren()
			continue
		}
		if e.Children {
			if s == nil {
				s = parent
			}
			enclosing = append(enclosing, s)
		}
	}
	return u
}

func intVal(e *dwarf.Entry, a dwarf.Attr) int {
	if v, ok := e.Val(a).(int64); ok {
		return int(v)
	}
	return -1
}

// name is the demangled name of a function DIE, following the abstract
// origin or specification it refers to.
func (d *dwarfInfo) name(e *dwarf.Entry, depth int) string {
	for _, a := range []dwarf.Attr{dwarf.AttrLinkageName, 0x2007 /* DW_AT_MIPS_linkage_name */} {
		if n, ok := e.Val(a).(string); ok {
			return demangle.Filter(n)
		}
	}
	if n, ok := e.Val(dwarf.AttrName).(string); ok {
		return n
	}
	if depth > 4 {
		return ""
	}
	for _, a := range []dwarf.Attr{dwarf.AttrAbstractOrigin, dwarf.AttrSpecification} {
		off, ok := e.Val(a).(dwarf.Offset)
		if !ok {
			continue
		}
		if n, ok := d.names[off]; ok {
			return n
		}
		r := d.data.Reader()
		r.Seek(off)
		origin, err := r.Next()
		if err != nil || origin == nil {
			return ""
		}
		n := d.name(origin, depth+1)
		d.names[off] = n
		return n
	}
	return ""
}

// scopes returns the function holding pc followed by the calls inlined
// into it, outermost first.
func (d *dwarfInfo) scopes(pc uint64) []*scope {
	u := d.unit(pc)
	if u == nil {
		return nil
	}
	var chain []*scope
	for _, f := range u.funcs {
		if f.contains(pc) {
			chain = append(chain, f)
			break
		}
	}
	for len(chain) > 0 {
		i := slices.IndexFunc(chain[len(chain)-1].inlined, func(s *scope) bool { return s.contains(pc) })
		if i < 0 {
			break
		}
		chain = append(chain, chain[len(chain)-1].inlined[i])
	}
	return chain
}

// line is the source position of pc from the line table.
func (d *dwarfInfo) line(pc uint64) (string, int) {
	u := d.unit(pc)
	if u == nil {
		return "", 0
	}
	if u.rows == nil {
		u.rows = d.readLines(u.entry)
	}
	i := sort.Search(len(u.rows), func(i int) bool { return u.rows[i].addr > pc })
	if i == 0 || u.rows[i-1].end {
		return "", 0
	}
	return u.rows[i-1].file, u.rows[i-1].line
}

func (d *dwarfInfo) readLines(cu *dwarf.Entry) []lineRow {
	rows := []lineRow{}
	lr, err := d.data.LineReader(cu)
	if err != nil || lr == nil {
		return rows
	}
	var le dwarf.LineEntry
	for lr.Next(&le) == nil {
		row := lineRow{addr: le.Address, line: le.Line, end: le.EndSequence}
		if le.File != nil {
			row.file = le.File.Name
		}
		rows = append(rows, row)
	}
	// Sequences come in any order; where one ends at the address another
	// starts, the end goes first so that the start is found.
	slices.SortStableFunc(rows, func(a, b lineRow) int {
		if c := cmp.Compare(a.addr, b.addr); c != 0 {
			return c
		}
		switch {
		case a.end && !b.end:
			return -1
		case b.end && !a.end:
			return 1
		}
		return 0
	})
	return rows
}
