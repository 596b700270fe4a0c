// Package sanitize makes text that traced processes control (their names,
// paths, socket names, cgroups, the symbols of their files) safe to print
// and to serve: every text output and metric label goes through Text.
package sanitize

import (
	"io"
	"strings"
)

// Text replaces control characters (C0, DEL, C1), which could drive a
// terminal or forge a line of a text format, with '?', and invalid UTF-8
// with U+FFFD: the result is printable, valid UTF-8 on one line.
func Text(s string) string {
	return strings.Map(func(r rune) rune {
		if control(r) {
			return '?'
		}
		return r
	}, s)
}

// control is a C0 or C1 control character, or DEL.
func control(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// Writer passes text to w with every control character but '\n' and
// '\t' replaced by '?', and invalid UTF-8 by U+FFFD: the layout of a text
// output stays, and nothing in it can drive the terminal. Each Write is
// taken whole: a UTF-8 sequence split across two Writes (which fmt and
// text/tabwriter never do) would become two U+FFFD.
func Writer(w io.Writer) io.Writer { return writer{w} }

type writer struct{ w io.Writer }

func (s writer) Write(p []byte) (int, error) {
	if _, err := s.w.Write([]byte(layout(string(p)))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// layout is Text, keeping newlines and tabs.
func layout(s string) string {
	return strings.Map(func(r rune) rune {
		if control(r) && r != '\n' && r != '\t' {
			return '?'
		}
		return r
	}, s)
}
