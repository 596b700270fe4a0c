package unwind

import "testing"

// FuzzRows feeds arbitrary bytes to the section parser as .eh_frame (and as
// .debug_frame): it must not panic, and what it returns must keep Rows's
// promises.
func FuzzRows(f *testing.F) {
	c := &cfiBuilder{addr: 0x1000}
	cie := c.stdCIE()
	c.stdFDE(cie, 0x2000, 0x40, cat(
		advance(1), defCFAOffset(16), offset(6, 2), advance(3), defCFARegister(6),
		rememberState, advance(1), defCFA(7, 8), restoreState, advance(2), pltCFA(11),
		[]byte{0x01}, encode(pePcrel|peSdata4, 0x10), undefined(16))...)
	c.stdFDE(cie, 0x1000, 0x10, []byte{0x11, 6, 0x7d, 0x2f, 6, 4, 0x10, 6, 2, 0x76, 0, 0x16, 16, 1, 0x9c}...)
	aug := cat([]byte{0x9b}, encode(peSdata4, 0x1234), []byte{0x1b, peUdata8})
	zplr := c.cie(3, "zPLR", aug, 0x0c, 7, 8, 0x80|16, 1)
	c.fde(zplr, peUdata8, 0x3000, 0x10, encode(pePcrel|peSdata4, 0), cat(advance(1), defCFAOffset(16))...)
	f.Add(c.b, uint64(c.addr), false)

	d := &cfiBuilder{debug: true}
	d.stdFDE(d.cie(4, "", nil, 0x0c, 7, 8, 0x80|16, 1), 0x1000, 0x10, cat(advance(2), defCFAOffset(16))...)
	f.Add(d.b, uint64(0), true)

	f.Fuzz(func(t *testing.T, data []byte, addr uint64, debug bool) {
		rows, err := sectionRows(data, addr, !debug)
		if err != nil && rows != nil {
			t.Fatalf("rows %v with error %v", rows, err)
		}
		checkInvariants(t, rows)
	})
}
