package symbolize

import (
	"bufio"
	"cmp"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// perfMap is a JIT's /tmp/perf-PID.map: one "START SIZE name" line (hex
// start and size) per compiled function.
type perfMap struct {
	path  string // as the process sees it, e.g. /tmp/perf-17.map
	syms  []perfSym
	size  int64 // of the file when read, to notice that the JIT appended
	mtime time.Time
}

type perfSym struct {
	start, size uint64
	name        string
}

func parsePerfMap(r io.Reader) []perfSym {
	var syms []perfSym
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		start, rest := cutField(sc.Text())
		size, name := cutField(rest)
		name = strings.TrimSpace(name)
		a, err1 := strconv.ParseUint(strings.TrimPrefix(start, "0x"), 16, 64)
		n, err2 := strconv.ParseUint(strings.TrimPrefix(size, "0x"), 16, 64)
		if err1 != nil || err2 != nil || name == "" {
			continue
		}
		syms = append(syms, perfSym{a, n, name})
	}
	// Stable: when code is recompiled at the same address, the later line wins.
	slices.SortStableFunc(syms, func(a, b perfSym) int { return cmp.Compare(a.start, b.start) })
	return syms
}

func (p *perfMap) lookup(addr uint64) (string, bool) {
	i := sort.Search(len(p.syms), func(i int) bool { return p.syms[i].start > addr })
	if i == 0 {
		return "", false
	}
	s := p.syms[i-1]
	if addr >= s.start+s.size {
		return "", false
	}
	return s.name, true
}

// maxPerfMapBytes bounds what is read of a perf map: a long-running JIT's
// holds a few hundred thousand lines, tens of MiB.
const maxPerfMapBytes = 256 << 20

// readPerfMap loads the perf map open as f (named path in its process)
// unless old is already up to date; at most maxPerfMapBytes of it.
func readPerfMap(f *os.File, path string, old *perfMap) (*perfMap, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if old != nil && old.size == fi.Size() && old.mtime.Equal(fi.ModTime()) {
		return old, nil
	}
	return &perfMap{path: path, syms: parsePerfMap(io.LimitReader(f, maxPerfMapBytes)), size: fi.Size(),
		mtime: fi.ModTime()}, nil
}

// jsFrame reads a V8 perf map name, "JS:~handleUpload /srv/app.js:25:22"
// or the older "LazyCompile:*readSettings /srv/settings.js:3" (the mark
// is the tier: ~ interpreted, ^ baseline, + Maglev, * optimized), as a
// function, file and line. Other names (Builtin:..., other JITs) are the
// function whole.
func jsFrame(name string) (fn, file string, line int) {
	kind, rest, ok := strings.Cut(name, ":")
	switch {
	case !ok:
		return name, "", 0
	case kind != "JS" && kind != "LazyCompile" && kind != "Function" && kind != "Script" && kind != "Eval":
		return name, "", 0
	}
	rest = strings.TrimLeft(rest, "~^+*")
	fn, loc, ok := strings.Cut(rest, " ")
	if !ok {
		return name, "", 0
	}
	// file:line or file:line:column; the file may hold colons (node:fs).
	file, num, ok := cutLastColon(loc)
	if col, err := strconv.Atoi(num); ok && err == nil {
		if f, n, ok := cutLastColon(file); ok {
			if l, err := strconv.Atoi(n); err == nil {
				file, col = f, l
			}
		}
		line = col
	} else {
		return name, "", 0
	}
	if fn == "" {
		fn = "(anonymous)"
	}
	return fn, file, line
}

func cutLastColon(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}
