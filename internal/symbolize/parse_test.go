package symbolize

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsesMapsLines(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want mapping
	}{
		{
			name: "a file mapping",
			line: "555555554000-555555556000 r-xp 00002000 fd:01 1234                       /usr/bin/cat",
			want: mapping{start: 0x555555554000, end: 0x555555556000, offset: 0x2000, perms: "r-xp", dev: "fd:01", inode: 1234, path: "/usr/bin/cat"},
		},
		{
			name: "a deleted file whose name has spaces",
			line: "7f0000000000-7f0000001000 r-xp 00000000 00:1f 99 /opt/my app/lib x.so (deleted)",
			want: mapping{start: 0x7f0000000000, end: 0x7f0000001000, perms: "r-xp", dev: "00:1f", inode: 99, path: "/opt/my app/lib x.so", deleted: true},
		},
		{
			name: "an anonymous mapping",
			line: "7f3a10000000-7f3a10010000 rwxp 00000000 00:00 0 ",
			want: mapping{start: 0x7f3a10000000, end: 0x7f3a10010000, perms: "rwxp", dev: "00:00"},
		},
		{
			name: "a pseudo-path",
			line: "7ffd1c5e0000-7ffd1c5e2000 r-xp 00000000 00:00 0                          [vdso]",
			want: mapping{start: 0x7ffd1c5e0000, end: 0x7ffd1c5e2000, perms: "r-xp", dev: "00:00", path: "[vdso]"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			maps, err := parseMaps(strings.NewReader(tc.line + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if len(maps) != 1 || !reflect.DeepEqual(*maps[0], tc.want) {
				t.Errorf("got %+v, want %+v", maps, tc.want)
			}
		})
	}
}

func TestRejectsAMalformedMapsLine(t *testing.T) {
	if _, err := parseMaps(strings.NewReader("not a maps line\n")); err == nil {
		t.Error("no error")
	}
}

func TestTellsWhatKindOfMappingItIs(t *testing.T) {
	for _, tc := range []struct {
		m                     mapping
		exec, anonymous, file bool
	}{
		{mapping{perms: "r-xp", inode: 5, path: "/usr/bin/cat"}, true, false, true},
		{mapping{perms: "r--p", inode: 5, path: "/usr/bin/cat"}, false, false, true},
		{mapping{perms: "rwxp"}, true, true, false},
		{mapping{perms: "r-xp", path: "[anon:v8 code]"}, true, true, false},
		{mapping{perms: "r-xp", path: "[vdso]"}, true, false, false},
	} {
		if tc.m.exec() != tc.exec || tc.m.anonymous() != tc.anonymous || tc.m.file() != tc.file {
			t.Errorf("%+v: exec %v anonymous %v file %v, want %v %v %v",
				tc.m, tc.m.exec(), tc.m.anonymous(), tc.m.file(), tc.exec, tc.anonymous, tc.file)
		}
	}
}

func TestFindsThePidInTheInnermostPidNamespace(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   int
	}{
		{"Name:\tnode\nNSpid:\t4242\n", 4242},
		{"Name:\tnode\nNSpid:\t31337\t812\t7\n", 7},
		{"Name:\tnode\nPid:\t12\n", 0}, // kernel < 4.1
	} {
		if got := parseNSpid(tc.status); got != tc.want {
			t.Errorf("%q: got %d, want %d", tc.status, got, tc.want)
		}
	}
}

func TestLooksUpPerfMapEntries(t *testing.T) {
	pm := &perfMap{syms: parsePerfMap(strings.NewReader(strings.Join([]string{
		"1000 10 first",
		"0x2000 0x20 name with  spaces",
		"garbage line",
		"3000 10 old code",
		"3000 10 recompiled code", // a later line for the same address wins
		"",
	}, "\n")))}
	for _, tc := range []struct {
		addr uint64
		want string
	}{
		{0x0fff, ""},
		{0x1000, "first"},
		{0x100f, "first"},
		{0x1010, ""},
		{0x2010, "name with  spaces"},
		{0x3000, "recompiled code"},
		{0x9000, ""},
	} {
		if got, ok := pm.lookup(tc.addr); got != tc.want || ok != (tc.want != "") {
			t.Errorf("%#x: got %q %v, want %q", tc.addr, got, ok, tc.want)
		}
	}
}

func TestNamesTheFunctionContainingAnAddressDemangled(t *testing.T) {
	m := &module{syms: []symbol{
		{addr: 0x1000, end: 0x1010, name: "_ZN6config4openEPKc"},
		{addr: 0x1020, end: 0x1030, name: "_ZN4core3ptr13drop_in_place17h0123456789abcdefE"},
		{addr: 0x1040, end: 0x1050, name: "_RNvCs1234_7mycrate3foo"},
		{addr: 0x1100, end: 0x2000, name: "no_size"}, // size 0: up to its section's end
		{addr: 0x2000, end: 0x2010, name: "main.main"},
	}}
	for _, tc := range []struct {
		addr uint64
		want string
	}{
		{0x0fff, ""},
		{0x1000, "config::open(char const*)"},
		{0x100f, "config::open(char const*)"},
		{0x1010, ""}, // between functions
		{0x1025, "core::ptr::drop_in_place"},
		{0x1041, "mycrate::foo"},
		{0x1fff, "no_size"},
		{0x2001, "main.main"},
		{0x2010, ""},
	} {
		if got := m.function(tc.addr); got != tc.want {
			t.Errorf("%#x: got %q, want %q", tc.addr, got, tc.want)
		}
	}
}
