package top

import (
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fdtrace/fdtrace/internal/procfs"
)

func testHeader() *Header {
	return &Header{Time: t0, Interval: time.Second, Target: "all processes",
		FileNr: procfs.FileNr{Allocated: 1234, Max: 9876543}, Total: 3, Matched: 3}
}

func TestRowsLineUpUnderTheirTitles(t *testing.T) {
	rows := []Row{{Sample: Sample{PID: 42, Comm: "tl-crit", OpenFDs: 90, Refused: 7}, Limit: 100, Utilization: 0.9,
		Rates: &Rates{Opened: 1.5, Closed: 0.5, Growth: 1}, TopType: "socket", TopTypeFDs: 80}}
	lines := Render(testHeader(), rows, 160, 12, false)
	var titles, row string
	for i, l := range lines {
		if strings.Contains(l, "TOP TYPE") {
			titles, row = l, lines[i+1]
		}
	}
	for title, value := range map[string]string{"PID": "42", "OPEN": "90", "LIMIT": "100", "OPEN/s": "1.5",
		"CLOSE/s": "0.5", "GROW/s": "+1.0", "REFUSED": "7"} {
		end := strings.Index(titles, " "+title+" ") + 1 + len(title)
		if title == "PID" {
			end = strings.Index(titles, title) + len(title)
		}
		if got := row[end-len(value) : end]; got != value {
			t.Errorf("under %s (ending at column %d): %q, want %q\n%s\n%s", title, end, got, value, titles, row)
		}
	}
	if !regexp.MustCompile(`^\s+42 tl-crit\s+90\s+100\s+90\.0% CRIT\s.*  socket 80$`).MatchString(row) {
		t.Errorf("row %q", row)
	}
}

func TestTheThresholdsAreMarked(t *testing.T) {
	for _, tc := range []struct {
		open  int64
		limit uint64
		mark  string
	}{
		{69, 100, "69.0%     "}, {70, 100, "70.0% WARN"}, {84, 100, "84.0% WARN"}, {85, 100, "85.0% CRIT"},
		{130, 100, "130.0% CRIT"}, {5, Unlimited, "unlim      -     "}, {5, 0, "?      -     "},
	} {
		r := Row{Sample: Sample{PID: 1, Comm: "x", OpenFDs: tc.open}, Limit: tc.limit, Utilization: utilization(tc.open, tc.limit)}
		if line := renderRow(&r, 200, false); !strings.Contains(line, tc.mark) {
			t.Errorf("%d of %d: %q lacks %q", tc.open, tc.limit, line, tc.mark)
		}
	}
}

func TestTheScreenFitsTheTerminal(t *testing.T) {
	var rows []Row
	for i := range 50 {
		rows = append(rows, Row{Sample: Sample{PID: i + 1, Comm: "a-rather-long-process-name"}, Limit: 1024})
	}
	h := testHeader()
	for _, size := range [][2]int{{160, 40}, {80, 24}, {40, 10}, {20, 3}} {
		lines := Render(h, rows[:Capacity(size[1])], size[0], size[1], true)
		if len(lines) != size[1] {
			t.Errorf("%dx%d: %d lines", size[0], size[1], len(lines))
		}
		for _, l := range lines {
			plain := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(l, "")
			if n := utf8.RuneCountInString(plain); n > size[0] {
				t.Errorf("%dx%d: a line of %d columns: %q", size[0], size[1], n, plain)
			}
		}
		if last := lines[len(lines)-1]; size[1] > 3 && !strings.HasPrefix(last, "q quit") {
			t.Errorf("%dx%d: the last line is %q, not the keys", size[0], size[1], last)
		}
	}
}

func TestControlCharactersInANameDoNotReachTheTerminal(t *testing.T) {
	r := Row{Sample: Sample{PID: 1, Comm: "evil\x1b[2J\x07"}}
	if line := renderRow(&r, 200, false); strings.ContainsAny(line, "\x1b\x07") {
		t.Errorf("%q", line)
	}
}

func TestTheHeaderSaysFileNrSortFilterAndPorts(t *testing.T) {
	h := testHeader()
	h.Sort, h.Filter = ByErrors, "ngi"
	h.Ports = []PortCount{{Port: 8080, Refused: 12, Dropped: 40}, {Port: 443, Refused: 3}}
	text := strings.Join(Render(h, nil, 200, 20, false), "\n")
	for _, want := range []string{
		"sorted by errors, filter \"ngi\"",
		"files: 1234 allocated of fs.file-max 9876543 (<0.1%)",
		"refused connections by port: 8080: 12 (40 more drained unserved), 443: 3",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
}

func TestKeysSortFilterAndQuit(t *testing.T) {
	m := NewModel(newFake())
	s := &screen{m: m}
	for key, want := range map[string]SortKey{"g": ByGrowth, "e": ByErrors, "f": ByOpenFDs, "p": ByPID, "u": ByUtilization} {
		if s.key([]byte(key)) || m.Sort != want {
			t.Errorf("key %s: sort %v, want %v", key, m.Sort, want)
		}
	}
	s.key([]byte("/ngx"))
	if !s.editing || m.Filter != "ngx" {
		t.Fatalf("after /ngx: editing %v filter %q", s.editing, m.Filter)
	}
	s.key([]byte{0x7f})
	s.key([]byte("inx\r"))
	if s.editing || m.Filter != "nginx" {
		t.Errorf("after backspace, inx, Enter: editing %v filter %q", s.editing, m.Filter)
	}
	// An arrow key is skipped whole, not taken for Esc, [ and A.
	s.key([]byte("/x\x1b[A"))
	if !s.editing || m.Filter != "nginxx" {
		t.Errorf("after an arrow key: editing %v filter %q", s.editing, m.Filter)
	}
	s.key([]byte{0x1b})
	if s.editing || m.Filter != "nginx" {
		t.Errorf("Esc while editing: editing %v filter %q, want the filter as before", s.editing, m.Filter)
	}
	s.key([]byte{0x1b})
	if m.Filter != "" {
		t.Errorf("Esc: filter %q, want none", m.Filter)
	}
	if !s.key([]byte("q")) || !s.key([]byte{0x03}) || !s.key([]byte("/abc\x03")) {
		t.Error("q, Ctrl-C, or Ctrl-C while editing did not quit")
	}
	if s.key([]byte("/q")) {
		t.Error("q typed into the filter quit")
	}
}
