package tracer

import "github.com/fdtrace/fdtrace/internal/events"

// records is the reader's room for the records it hands out, and the
// names they share.
type records struct {
	open  events.Open
	close events.Close
	err   events.Error
	comms interned
	paths interned
}

func newRecords() *records {
	return &records{comms: interned{max: maxComms}, paths: interned{max: maxPaths}}
}

// maxComms bounds the interned process names (host-wide there are a few
// hundred); maxPaths, the paths (a server opens the same few again and
// again; a path seen once costs what it did without interning).
const (
	maxComms = 4096
	maxPaths = 4096
)

// interned keeps one string per distinct name: names repeat from record
// to record, and a string kept is one the reader need not allocate.
type interned struct {
	m    map[string]string
	max  int
	last string // the name of the record before: most often this one's
}

func (n *interned) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if string(b) == n.last {
		return n.last
	}
	if s, ok := n.m[string(b)]; ok {
		n.last = s
		return s
	}
	if n.m == nil || len(n.m) >= n.max {
		n.m = make(map[string]string, min(n.max, 64))
	}
	s := string(b)
	n.m[s], n.last = s, s
	return s
}
