package testutil

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// StaleDocs is what a test says when a committed generated page differs
// from what the code gives.
const StaleDocs = "docs are stale: run make docs"

// The lines around the generated part of a hand-written page.
const (
	generatedBegin = "<!-- begin generated"
	generatedEnd   = "<!-- end generated -->"
)

// ReplaceGenerated puts body between the page's lines starting with
// "<!-- begin generated" and "<!-- end generated -->", in place of what
// was there.
func ReplaceGenerated(page []byte, body string) ([]byte, error) {
	begin := bytes.Index(page, []byte("\n"+generatedBegin))
	if begin < 0 {
		return nil, errors.New("no line starting with " + generatedBegin)
	}
	rest := page[begin+1:]
	nl := bytes.IndexByte(rest, '\n')
	end := bytes.Index(rest, []byte("\n"+generatedEnd+"\n"))
	if nl < 0 || end < nl {
		return nil, errors.New("no line " + generatedEnd + " after " + generatedBegin)
	}
	var out bytes.Buffer
	out.Write(page[:begin+1+nl+1])
	out.WriteString(body)
	out.Write(rest[end+1:])
	return out.Bytes(), nil
}

// CheckDoc fails the test, saying StaleDocs, when the file at path
// (relative to the repository) does not hold want; with update, it writes
// want there instead.
func CheckDoc(t testing.TB, path string, want []byte, update bool) {
	t.Helper()
	file := filepath.Join(RepoRoot(t), path)
	if update {
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v\n%s", err, StaleDocs)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what the code gives (first difference at line %d)\n%s",
			path, firstDifferentLine(got, want), StaleDocs)
	}
}

// firstDifferentLine is the 1-based number of the first line a and b
// differ in.
func firstDifferentLine(a, b []byte) int {
	line := 1
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return line
		}
		if a[i] == '\n' {
			line++
		}
	}
	return line
}
