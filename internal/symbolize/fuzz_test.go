package symbolize

import (
	"strings"
	"testing"
)

// The perf map is the traced process's to write: any bytes parse, without
// a panic, into symbols sorted by address.
func FuzzPerfMap(f *testing.F) {
	f.Add("7f00001000 40 JS:~handleUpload /srv/app.js:25:22\n0x7f00002000 0x10 Builtin:ArgumentsAdaptor\n")
	f.Add("zz 10 x\n1 \n\n" + strings.Repeat("1 1 a\n", 10))
	f.Fuzz(func(t *testing.T, text string) {
		syms := parsePerfMap(strings.NewReader(text))
		for i := 1; i < len(syms); i++ {
			if syms[i].start < syms[i-1].start {
				t.Fatalf("symbols out of order: %+v", syms)
			}
		}
		(&perfMap{syms: syms}).lookup(0x7f00001010)
	})
}

// /proc/PID/maps names files the process chose: any text parses without a
// panic.
func FuzzMaps(f *testing.F) {
	f.Add("55d0c0e00000-55d0c0e02000 r-xp 00002000 fd:01 1234 /usr/bin/true\n7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]\n")
	f.Add("0-1 r-xp 0 0:0 0 /a b (deleted)\n")
	f.Fuzz(func(t *testing.T, text string) {
		parseMaps(strings.NewReader(text))
		parseNSpid(text)
	})
}
