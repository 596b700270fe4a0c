package unwind

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A compressed .debug_frame says how large it is once inflated: a file
// that claims a terabyte makes Rows fail, not allocate it.
func TestACompressedSectionClaimingATerabyteIsRefused(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip(err)
	}
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "a.c"), filepath.Join(dir, "a")
	// Enough functions for a .debug_frame that compression shrinks.
	var code []byte
	for i := range 500 {
		code = fmt.Appendf(code, "int f%d(int x) { return x * %d + 1; }\n", i, i)
	}
	os.WriteFile(src, append(code, "int main(void) { return 0; }\n"...), 0o644)
	if out, err := exec.Command(gcc, "-g", "-fno-asynchronous-unwind-tables", "-o", bin, src).CombinedOutput(); err != nil {
		t.Skipf("%v: %s", err, out)
	}
	// The CFI is .debug_frame alone.
	if out, err := exec.Command(objcopy, "--compress-debug-sections=zlib", "--remove-section=.eh_frame",
		"--remove-section=.eh_frame_hdr", bin).CombinedOutput(); err != nil {
		t.Skipf("%v: %s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section(".debug_frame")
	if s == nil || s.Flags&elf.SHF_COMPRESSED == 0 {
		f.Close()
		t.Skip("no compressed .debug_frame")
	}
	off := s.Offset
	f.Close()
	// Elf64_Chdr: ch_type, ch_reserved, ch_size (at 8), ch_addralign.
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(b[off+8:], 1<<40)
	os.WriteFile(bin, b, 0o644)

	f, err = elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Rows(f); err == nil {
		t.Error("a terabyte of .debug_frame was accepted")
	}
}
