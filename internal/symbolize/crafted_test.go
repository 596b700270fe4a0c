package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"runtime"
	"strings"
	"testing"
)

// craft builds the fixture (non-PIE, with DWARF; compress: its debug
// sections zlib-compressed) and lets patch change its bytes, knowing its
// section headers: a file a traced process could map.
func craft(t *testing.T, name string, compress bool, patch func(b []byte, f *elf.File)) string {
	t.Helper()
	bin := buildC(t, name, "c4af7e00", "-no-pie")
	if compress {
		run(t, "objcopy", "--compress-debug-sections=zlib", bin)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	patch(b, f)
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// shdr is the offset of section i's header (Elf64_Shdr, 64 bytes).
func shdr(f *elf.File, b []byte, name string) int {
	shoff := int(binary.LittleEndian.Uint64(b[0x28:]))
	for i, s := range f.Sections {
		if s.Name == name {
			return shoff + 64*i
		}
	}
	panic("no section " + name)
}

// Offsets into an Elf64_Shdr.
const (
	shType   = 4
	shOffset = 24
	shSize   = 32
)

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

// Files a traced process may map, crafted to crash a parser, to make it
// allocate without bound or to run forever: each is symbolized as a file
// without (some of) its symbols, with bounded memory, and never panics.
func TestCraftedELFFilesAreSymbolizedWithinBoundsOrNotAtAll(t *testing.T) {
	for _, tc := range []struct {
		name     string
		compress bool
		patch    func(b []byte, f *elf.File)
		wantFunc bool // the symbol table or DWARF names the function still
	}{
		{name: "a symbol table claiming a terabyte", patch: func(b []byte, f *elf.File) {
			binary.LittleEndian.PutUint64(b[shdr(f, b, ".symtab")+shSize:], 1<<40)
		}},
		{name: "a compressed .debug_info claiming a terabyte once inflated", compress: true,
			patch: func(b []byte, f *elf.File) {
				// Elf64_Chdr: ch_type, ch_reserved, then ch_size.
				binary.LittleEndian.PutUint64(b[f.Section(".debug_info").Offset+8:], 1<<40)
			}},
		{name: "a compressed .debug_info that is no zlib stream", compress: true, wantFunc: true,
			patch: func(b []byte, f *elf.File) {
				s := f.Section(".debug_info")
				fill(b[s.Offset+24:s.Offset+s.FileSize], 0xa5)
			}},
		{name: "garbage DWARF", wantFunc: true, patch: func(b []byte, f *elf.File) {
			for _, name := range []string{".debug_info", ".debug_abbrev", ".debug_line"} {
				s := f.Section(name)
				fill(b[s.Offset:s.Offset+s.Size], 0xff)
			}
		}},
		{name: "a note section claiming a gigabyte", wantFunc: true, patch: func(b []byte, f *elf.File) {
			for i, s := range f.Sections {
				if s.Type == elf.SHT_NOTE {
					binary.LittleEndian.PutUint64(b[shdr(f, b, f.Sections[i].Name)+shSize:], 1<<30)
				}
			}
		}},
		{name: "a symbol table past the end of the file", wantFunc: true, patch: func(b []byte, f *elf.File) {
			binary.LittleEndian.PutUint64(b[shdr(f, b, ".symtab")+shOffset:], 1<<40)
		}},
		{name: "a string table of names without their ends", wantFunc: true, patch: func(b []byte, f *elf.File) {
			s := f.Section(".strtab")
			for i := s.Offset + 1; i < s.Offset+s.Size; i++ {
				if b[i] == 0 {
					b[i] = 'x' // names run into each other
				}
			}
		}},
		{name: "section headers past the end of the file", patch: func(b []byte, f *elf.File) {
			binary.LittleEndian.PutUint64(b[0x28:], 1<<40) // e_shoff
		}},
		{name: "a section of an unknown type in place of the symbol table", wantFunc: true, patch: func(b []byte, f *elf.File) {
			binary.LittleEndian.PutUint32(b[shdr(f, b, ".symtab")+shType:], 0x6fff4242)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := craft(t, "crafted", tc.compress, tc.patch)
			intact := buildC(t, "intact", "c4af7e00", "-no-pie")
			lo, _ := symbolRange(t, intact, "open_config")
			// Mapped as the intact file is (the crafted one may have
			// no readable headers): the same segments.
			var maps []string
			for _, l := range mapELF(t, intact, 0) {
				maps = append(maps, strings.Replace(l, intact, bin, 1))
			}
			procRoot := t.TempDir()
			proc{pid: 100, comm: "crafted", maps: maps, root: "/"}.write(t, procRoot)

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			s := New(Options{ProcRoot: procRoot, DebugDir: t.TempDir()})
			frames := s.Symbolize(100, []uint64{lo + 1})
			runtime.ReadMemStats(&after)

			if len(frames) == 0 || frames[0].Module != bin {
				t.Fatalf("frames %s, want the crafted file named", dump(frames))
			}
			if named := frames[0].Func == "open_config"; named != tc.wantFunc {
				t.Errorf("frames %s: function named %v, want %v", dump(frames), named, tc.wantFunc)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("symbolizing allocated %d MiB", alloc>>20)
			}
			if used, _ := s.Usage(); used > DefaultBudget {
				t.Errorf("the parsed file takes %d bytes, over the budget", used)
			}
		})
	}
}
