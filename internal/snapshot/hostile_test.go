package snapshot

import (
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/events"
)

// Socket names, paths and the process name come from the process: none
// of their bytes may reach the terminal as a control sequence, nor add a
// line.
func TestASnapshotsTextCarriesNoControlCharacterFromTheProcess(t *testing.T) {
	evil := "x\x1b]0;pwned\a\n\x1b[2J\u009b1m\xff"
	s := events.Snapshot{PID: 7, Comm: evil, ByType: map[string]int{"socket": 1, "file": 1},
		Sockets:     []events.SocketCount{{Family: "AF_UNIX", Protocol: "stream", State: "LISTEN", Count: 1}},
		Listening:   []events.Listener{{Protocol: "unix", Address: "@" + evil, FD: 3}},
		Outbound:    []events.EndpointCount{{Endpoint: evil, Count: 1}},
		Directories: []events.DirCount{{Dir: "/tmp/" + evil, Count: 1}}}
	var b strings.Builder
	if err := WriteText(&b, s); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	if i := strings.IndexFunc(text, func(r rune) bool {
		return (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0)
	}); i >= 0 {
		t.Errorf("control character %q in the snapshot:\n%q", text[i], text)
	}
	for _, forged := range []string{"\n?[2J", "\n\x1b"} {
		if strings.Contains(text, forged) {
			t.Errorf("a name began a line of its own:\n%s", text)
		}
	}
}
