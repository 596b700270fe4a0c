package unwind

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkRows times Rows on libc and on node (about 76,000 FDEs, the
// biggest binary at hand), from an open file.
func BenchmarkRows(b *testing.B) {
	files := map[string]string{"libc": "/lib/x86_64-linux-gnu/libc.so.6"}
	if node, err := exec.LookPath("node"); err == nil {
		if node, err = filepath.EvalSymlinks(node); err == nil {
			files["node"] = node
		}
	}
	for _, name := range []string{"libc", "node"} {
		b.Run(name, func(b *testing.B) {
			f, err := elf.Open(files[name])
			if err != nil {
				b.Skip(err)
			}
			defer f.Close()
			b.ReportAllocs()
			var rows []Row
			for b.Loop() {
				if rows, err = Rows(f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(rows)), "rows")
		})
	}
}
