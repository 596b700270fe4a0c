package output

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
)

func create(t *testing.T, path string, maxSize int64, maxFiles int) *File {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewFile(f, path, maxSize, maxFiles)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// readSet reads path.N ... path.1, path: oldest first.
func readSet(t *testing.T, path string, maxFiles int) (files []string) {
	t.Helper()
	for i := maxFiles + 1; i >= 0; i-- {
		name := path
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		b, err := os.ReadFile(name)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, string(b))
	}
	return files
}

func TestRotationKeepsMaxFilesOfWholeLinesAndTheNewestRecordsInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	const maxSize, maxFiles, records = 4096, 3, 5000
	r := create(t, path, maxSize, maxFiles)
	w := New(r, 0)
	for i := range records {
		if err := w.Write(events.Close{Type: "close", PID: 1, FD: i, Comm: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	files := readSet(t, path, maxFiles)
	if len(files) != maxFiles+1 {
		t.Fatalf("%d files, want %d", len(files), maxFiles+1)
	}
	var fds []int
	for i, f := range files {
		if len(f) > maxSize {
			t.Errorf("file %d has %d bytes, more than %d", i, len(f), maxSize)
		}
		if !strings.HasSuffix(f, "\n") {
			t.Errorf("file %d ends mid-line", i)
		}
		for _, l := range strings.Split(strings.TrimSuffix(f, "\n"), "\n") {
			var fd int
			if _, err := fmt.Sscanf(l[strings.Index(l, `"fd":`):], `"fd":%d`, &fd); err != nil || !strings.HasSuffix(l, "}") {
				t.Fatalf("file %d: broken line %q", i, l)
			}
			fds = append(fds, fd)
		}
	}
	// The files hold the last records, each once, in order.
	first := records - len(fds)
	for i, fd := range fds {
		if fd != first+i {
			t.Fatalf("record %d of the kept files is fd %d, want %d", i, fd, first+i)
		}
	}
	if first == 0 {
		t.Error("nothing was rotated out")
	}
}

func TestALineLongerThanTheMaximumGetsAFileOfItsOwn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	r := create(t, path, 10, 5)
	long := strings.Repeat("x", 25) + "\n"
	if _, err := r.Write([]byte("a\n" + long + "b\nc\n")); err != nil {
		t.Fatal(err)
	}
	r.Close()
	got := readSet(t, path, 5)
	want := []string{"a\n", long, "b\nc\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("files %q, want %q", got, want)
	}
}

func TestWithoutMaxFilesRotationStartsTheFileAfresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	r := create(t, path, 4, 0)
	r.Write([]byte("aa\nbb\ncc\n"))
	r.Close()
	if got := readSet(t, path, 3); len(got) != 1 || got[0] != "cc\n" {
		t.Errorf("files %q, want only \"cc\\n\"", got)
	}
}

func TestReopenWritesToANewFileAfterTheOldOneWasMoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	r := create(t, path, 0, 0)
	r.Write([]byte("before\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	r.Write([]byte("moved\n"))
	if err := r.Reopen(); err != nil {
		t.Fatal(err)
	}
	r.Write([]byte("after\n"))
	r.Close()
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if string(old) != "before\nmoved\n" || string(cur) != "after\n" {
		t.Errorf("old file %q, new file %q", old, cur)
	}
}

func TestReopenAppendsToAFileThatIsThere(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	r := create(t, path, 10, 1)
	r.Write([]byte("12345\n"))
	if err := r.Reopen(); err != nil { // nothing moved it: same file
		t.Fatal(err)
	}
	r.Write([]byte("678\n")) // fits: 10 bytes
	r.Write([]byte("9\n"))   // does not
	r.Close()
	if got := readSet(t, path, 1); strings.Join(got, "|") != "12345\n678\n|9\n" {
		t.Errorf("files %q", got)
	}
}

func TestRotateMovesAPreviousRunAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	os.WriteFile(path, []byte("run 1\n"), 0o644)
	if err := Rotate(path, 2); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte("run 2\n"), 0o644)
	Rotate(path, 2)
	os.WriteFile(path, []byte("run 3\n"), 0o644)
	Rotate(path, 2)
	os.WriteFile(path, []byte{}, 0o644)
	Rotate(path, 2) // empty: stays
	if got := readSet(t, path, 3); strings.Join(got, "|") != "run 2\n|run 3\n|" {
		t.Errorf("files %q", got)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"0", 0, ""},
		{"4096", 4096, ""},
		{"512B", 512, ""},
		{"64KiB", 64 << 10, ""},
		{"100MiB", 100 << 20, ""},
		{"100M", 100 << 20, ""},
		{"2GiB", 2 << 30, ""},
		{"2g", 2 << 30, ""},
		{"10MB", 10e6, ""},
		{"1KB", 1000, ""},
		{"-1", 0, "a size must not be negative"},
		{"-5MiB", 0, "a size must not be negative"},
		{"1.5GiB", 0, `"1.5GiB" is not a size (such as 100MiB)`},
		{"MiB", 0, `"MiB" is not a size (such as 100MiB)`},
		{"10XB", 0, `"10XB" is not a size (such as 100MiB)`},
		{"10TB", 0, `unknown unit "TB" (use B, KiB, MiB or GiB)`},
		{"99999999999GiB", 0, `"99999999999GiB" is too large`},
	} {
		got, err := ParseSize(tc.in)
		if msg := fmt.Sprint(err); (err == nil) != (tc.err == "") || (err != nil && msg != tc.err) || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestAFailedRotationKeepsWritingAndMovesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "trace.jsonl")
	r := create(t, path, 10, 2)
	defer r.Close()
	var failures int
	r.OnRotateError = func(error) { failures++ }
	if _, err := r.Write([]byte("aaaa\nbbbb\n")); err != nil {
		t.Fatal(err)
	}
	// The new file cannot be made: a directory, not empty, stands in its
	// way.
	if err := os.Mkdir(path+".next", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path+".next", "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Write([]byte("cccc\ndddd\n")); err != nil {
		t.Fatalf("a failed rotation failed the write: %v", err)
	}
	if got := readSet(t, path, 2); len(got) != 1 || got[0] != "aaaa\nbbbb\ncccc\ndddd\n" {
		t.Fatalf("files after a failed rotation: %q", got)
	}
	if failures != 1 {
		t.Errorf("%d failures reported, want 1 (the next try waits a second)", failures)
	}
	// Once it can, it rotates again.
	os.RemoveAll(path + ".next")
	r.retryAt = time.Time{}
	if _, err := r.Write([]byte("eeee\n")); err != nil {
		t.Fatal(err)
	}
	if got := readSet(t, path, 2); len(got) != 2 || got[1] != "eeee\n" {
		t.Fatalf("files after the retry: %q", got)
	}
}
