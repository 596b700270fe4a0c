package loader

import (
	"bytes"
	"testing"
)

func TestRingRecordsWrapAroundTheEnd(t *testing.T) {
	data := []byte("EFGH----------ABCD")[:16]
	r := &ringMemory{data: data, mask: 15}
	for _, c := range []struct {
		from, length uint64
		want         string
	}{
		{0, 4, "EFGH"},
		{12, 4, "--AB"},
		{14, 6, "ABEFGH"},
		{16, 3, "EFG"}, // a position past the end is one from its start
		{30, 5, "ABEFG"},
	} {
		if got := r.record(c.from, c.length); !bytes.Equal(got, []byte(c.want)) {
			t.Errorf("record(%d, %d) = %q, want %q", c.from, c.length, got, c.want)
		}
	}
}
