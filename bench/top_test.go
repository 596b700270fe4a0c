package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTopRefreshesAreCountedByTheirRecordTimes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "top.jsonl")
	lines := `{"type":"process","time":"2026-11-24T18:00:00.000000001Z","pid":1}
{"type":"process","time":"2026-11-24T18:00:00.000000001Z","pid":2}
{"type":"process","time":"2026-11-24T18:00:01.000000001Z","pid":1}
{"type":"process","time":"2026-11-24T18:00:01.000000001Z","pid":2}
{"type":"process","time":"2026-11-24T18:00:01.000000001Z","pid":3}
{"type":"process","time":"2026-11-24T18:00:02.0000`
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := refreshes(path); n != 2 {
		t.Errorf("%d refreshes, want 2 (the last line is cut)", n)
	}
	if n := lastRefreshRecords(path); n != 3 {
		t.Errorf("%d records in the last refresh, want 3", n)
	}
}
