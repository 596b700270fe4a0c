package unwind

import (
	"cmp"
	"math"
	"slices"
	"sort"
)

// table collects the rows of every FDE, each FDE's in its own run of rows,
// before build puts them in address order.
type table struct {
	rows  []Row
	fdes  []fde
	stack []state // DW_CFA_remember_state's, reused from FDE to FDE
}

// fde is one FDE's address range and its rows, t.rows[lo:hi]: sorted,
// the first at start, all below end.
type fde struct {
	start, end uint64
	lo, hi     int32
	debug      bool // from .debug_frame
}

// addFDE runs an FDE's instructions from its CIE's initial rules and keeps
// its rows, or none if the instructions are malformed.
func (t *table) addFDE(p *parser, c *cie, r *reader, start, end uint64) error {
	lo := len(t.rows)
	if _, err := p.run(c, r, c.init, start, end); err != nil {
		t.rows = t.rows[:lo]
		return err
	}
	if len(t.rows) > math.MaxInt32 {
		t.rows = t.rows[:lo]
		return errTooMany
	}
	t.fdes = append(t.fdes, fde{start: start, end: end, lo: int32(lo), hi: int32(len(t.rows)), debug: !p.sec.eh})
	return nil
}

// build returns the rows of all FDEs by address, with CFANone where no
// FDE applies.
func (t *table) build() []Row {
	fdes := t.withoutShadowedDebug()
	slices.SortFunc(fdes, func(a, b fde) int {
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		return cmp.Compare(a.lo, b.lo) // the earlier in the file first
	})
	out := make([]Row, 0, len(t.rows)+len(fdes))
	var covered uint64 // the end of the FDEs taken so far
	for i, f := range fdes {
		start := f.start
		if i > 0 && start < covered {
			// Overlaps the one before: keep what it does not cover.
			if f.end <= covered {
				continue
			}
			start = covered
		}
		rows := t.rows[f.lo:f.hi]
		j := 0
		for j+1 < len(rows) && rows[j+1].PC <= start {
			j++
		}
		out = push(out, 0, start, rows[j])
		for _, r := range rows[j+1:] {
			out = push(out, 0, r.PC, r)
		}
		// The next FDE replaces this row if it starts right here.
		out = push(out, 0, f.end, Row{})
		covered = f.end
	}
	return out
}

// withoutShadowedDebug returns t.fdes less the .debug_frame FDEs that
// overlap an .eh_frame FDE: .eh_frame is what the runtime itself trusts.
func (t *table) withoutShadowedDebug() []fde {
	n := 0
	for _, f := range t.fdes {
		if !f.debug {
			n++
		}
	}
	if n == len(t.fdes) || n == 0 {
		return t.fdes
	}
	eh := make([]fde, 0, n)
	var debug []fde
	for _, f := range t.fdes {
		if f.debug {
			debug = append(debug, f)
		} else {
			eh = append(eh, f)
		}
	}
	slices.SortFunc(eh, func(a, b fde) int { return cmp.Compare(a.start, b.start) })
	maxEnd := make([]uint64, len(eh)) // of eh[:i+1]
	for i, f := range eh {
		maxEnd[i] = f.end
		if i > 0 && maxEnd[i-1] > f.end {
			maxEnd[i] = maxEnd[i-1]
		}
	}
	n = len(eh)
	for _, d := range debug {
		// eh[:i] start below d's end; one of them overlaps d if it ends above d's start.
		i := sort.Search(n, func(i int) bool { return eh[i].start >= d.end })
		if i > 0 && maxEnd[i-1] > d.start {
			continue
		}
		eh = append(eh, d)
	}
	return eh
}
