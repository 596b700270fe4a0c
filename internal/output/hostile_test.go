package output

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The output holds what processes did: only root reads it, whatever the
// umask, and the files rotation makes are as private.
func TestOutputFilesAreReadableByTheirOwnerOnly(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "fd.jsonl")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewFile(f, path, 10, 2)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := r.Write([]byte("0123456789\n")); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	for _, name := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(name), st.Mode().Perm())
		}
	}
}

// A link at -o's path is refused, not written through: in a directory
// others can write to, it could point at any file root may write.
func TestALinkAtTheOutputPathIsRefused(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("intact\n"), 0o644)
	path := filepath.Join(dir, "fd.jsonl")
	os.Symlink(victim, path)
	f, err := Open(path)
	if err == nil {
		f.Write([]byte("overwritten\n"))
		f.Close()
		t.Fatal("opened through a symbolic link")
	}
	if !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("error %q does not say why", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "intact\n" {
		t.Errorf("the link's target was written: %q", b)
	}
}

// A link planted where rotation makes its next file (FILE.next) does not
// take the records anywhere else.
func TestRotationDoesNotFollowALinkPlantedAtItsNextFile(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("intact\n"), 0o644)
	path := filepath.Join(dir, "fd.jsonl")
	r := create(t, path, 10, 2)
	os.Symlink(victim, path+".next")
	for range 3 {
		if _, err := r.Write([]byte("0123456789\n")); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	if b, _ := os.ReadFile(victim); string(b) != "intact\n" {
		t.Errorf("rotation wrote through the link: %q", b)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "0123456789\n" {
		t.Errorf("FILE holds %q (%v), want the last record", b, err)
	}
	if _, err := os.Lstat(path + ".next"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("FILE.next left behind: %v", err)
	}
}

// A full disk drops records, counts them, and does not stop the writes
// that follow (nor, so, tracing).
func TestAWriteThatFailsDropsAndCountsItsRecordsAndWritingGoesOn(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	r, err := NewFile(full, "/dev/full", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var said []uint64
	r.OnWriteError = func(err error, dropped uint64) { said = append(said, dropped) }
	lines := []byte("{\"a\":1}\n{\"b\":2}\n")
	for i := range 3 {
		n, err := r.Write(lines)
		if err != nil || n != len(lines) {
			t.Fatalf("write %d: %d, %v; want the records dropped, not an error", i, n, err)
		}
	}
	if r.Dropped() != 6 {
		t.Errorf("%d records dropped, want 6", r.Dropped())
	}
	if len(said) != 1 || said[0] != 2 {
		t.Errorf("told of drops %v, want once (the first), with 2", said)
	}
}
