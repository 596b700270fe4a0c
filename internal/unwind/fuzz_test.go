package unwind

import (
	"sort"
	"testing"
)

// A CFI section is the mapped file's: any bytes compile, without a panic
// and in bounded time, into rows sorted by address.
func FuzzSectionRows(f *testing.F) {
	// A CIE (length 0x14, id 0, version 1, "zR", code 1, data -8, ra 16,
	// augmentation 1: pcrel|sdata4, CFA rsp+8, rip at cfa-8) and an FDE.
	cie := []byte{0x14, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 0x10, 1, 0x1b, 0x0c, 7, 8, 0x90, 1, 0, 0}
	fde := []byte{0x14, 0, 0, 0, 0x1c, 0, 0, 0, 0, 0x10, 0, 0, 0x20, 0, 0, 0, 0, 0x41, 0x0e, 0x10, 0, 0, 0, 0}
	f.Add(append(append([]byte{}, cie...), fde...), true)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}, false)
	f.Fuzz(func(t *testing.T, data []byte, eh bool) {
		rows, _ := sectionRows(data, 0x1000, eh)
		if !sort.SliceIsSorted(rows, func(i, j int) bool { return rows[i].PC < rows[j].PC }) {
			t.Fatalf("rows out of order")
		}
	})
}
