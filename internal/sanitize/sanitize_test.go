package sanitize

import (
	"testing"
	"unicode/utf8"
)

func TestTextLeavesNoControlCharacterNorInvalidUTF8(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nginx", "nginx"},
		{"evil\xff", "evil\uFFFD"},
		{"\x1b]0;title\a", "?]0;title?"},
		{"\x1b[2J", "?[2J"},
		{"two\nlines\r", "two?lines?"},
		{"c1\u009bcsi", "c1?csi"},
		{"del\x7f", "del?"},
		{"日本語 ok", "日本語 ok"},
	} {
		got := Text(tc.in)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzTextIsPrintableUTF8(f *testing.F) {
	f.Add("evil\xff\x1b[2J\n")
	f.Fuzz(func(t *testing.T, s string) {
		got := Text(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Text(%q) = %q: invalid UTF-8", s, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Fatalf("Text(%q) = %q: control character %U", s, got, r)
			}
		}
	})
}
