package symbolize

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// mapping is one line of /proc/PID/maps.
type mapping struct {
	start, end, offset uint64
	perms              string
	dev                string // "fd:01"
	inode              uint64
	path               string // without " (deleted)"
	deleted            bool

	opened bool    // the module was looked up (mod may still be nil)
	mod    *module // the parsed ELF file, nil if it could not be read
}

func (m *mapping) contains(addr uint64) bool { return m.start <= addr && addr < m.end }

func (m *mapping) exec() bool { return strings.Contains(m.perms, "x") }

// anonymous mappings have no file behind them: JIT code lives there.
func (m *mapping) anonymous() bool {
	return m.path == "" || strings.HasPrefix(m.path, "[anon:")
}

// file reports whether the mapping is backed by a file that can be opened
// (not [heap], [stack], [vdso] and the like).
func (m *mapping) file() bool {
	return m.inode != 0 && m.path != "" && !strings.HasPrefix(m.path, "[")
}

// fileOffset is where addr lies in the mapped file.
func (m *mapping) fileOffset(addr uint64) uint64 { return addr - m.start + m.offset }

// key identifies the mapped file across processes and containers.
func (m *mapping) key() string { return fmt.Sprintf("%s:%d", m.dev, m.inode) }

// parseMaps reads /proc/PID/maps:
//
//	555555554000-555555556000 r--p 00000000 fd:01 1234   /usr/bin/cat
func parseMaps(r io.Reader) ([]*mapping, error) {
	var maps []*mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		var f [5]string
		rest := line
		for i := range f {
			f[i], rest = cutField(rest)
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("bad maps line %q", line)
		}
		m := &mapping{perms: f[1], dev: f[3]}
		var err error
		if m.start, err = strconv.ParseUint(lo, 16, 64); err != nil {
			return nil, fmt.Errorf("bad maps line %q: %w", line, err)
		}
		if m.end, err = strconv.ParseUint(hi, 16, 64); err != nil {
			return nil, fmt.Errorf("bad maps line %q: %w", line, err)
		}
		if m.offset, err = strconv.ParseUint(f[2], 16, 64); err != nil {
			return nil, fmt.Errorf("bad maps line %q: %w", line, err)
		}
		if m.inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
			return nil, fmt.Errorf("bad maps line %q: %w", line, err)
		}
		m.path = strings.TrimLeft(rest, " \t")
		if p, ok := strings.CutSuffix(m.path, " (deleted)"); ok {
			m.path, m.deleted = p, true
		}
		maps = append(maps, m)
	}
	return maps, sc.Err()
}

// cutField splits off the first space-separated field of s.
func cutField(s string) (field, rest string) {
	s = strings.TrimLeft(s, " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// parseNSpid returns the pid inside the innermost pid namespace from the
// NSpid: line of /proc/PID/status, or 0 if there is none (kernels < 4.1).
func parseNSpid(status string) int {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "NSpid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.Atoi(f[len(f)-1])
		return n
	}
	return 0
}

// Mapping is an executable mapping of a process.
type Mapping struct {
	Start, End, Offset uint64
	File               string // the mapped file's device:inode; "" when none can be opened ([vdso], JIT code)
	Path               string
	deleted            bool
	dev                string
	inode              uint64
}

// ExecMappings reads pid's executable mappings now.
func (s *Symbolizer) ExecMappings(pid int) ([]Mapping, error) {
	f, err := os.Open(s.procPath(pid, "maps"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	maps, err := parseMaps(f)
	if err != nil {
		return nil, err
	}
	var out []Mapping
	for _, m := range maps {
		if !m.exec() {
			continue
		}
		em := Mapping{Start: m.start, End: m.end, Offset: m.offset, Path: m.path, deleted: m.deleted,
			dev: m.dev, inode: m.inode}
		if m.file() {
			em.File = m.key()
		}
		out = append(out, em)
	}
	return out, nil
}

// OpenMapped opens the file behind one of pid's mappings, nil if it cannot.
func (s *Symbolizer) OpenMapped(pid int, m Mapping) *os.File {
	return s.open(pid, &mapping{start: m.Start, end: m.End, path: m.Path, deleted: m.deleted, dev: m.dev, inode: m.inode})
}
