// Package symbolize turns the user-space return addresses of a process's
// stacks into functions, files and lines: ELF symbols, DWARF line tables and
// inlined calls, Go's pclntab, and perf maps for JIT code.
//
// Limits: inlined calls are expanded only from DWARF (a Go binary built
// with -ldflags=-w names the outer function with the inlined code's line);
// [vdso] frames stay unnamed; parsed files stay cached, by device and inode,
// for the Symbolizer's life, DWARF sections in memory.
package symbolize

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Frame is one symbolized stack frame. Empty strings/zero when unknown — never invented.
type Frame struct {
	Addr    uint64 `json:"addr"`
	Func    string `json:"func"` // demangled function name
	File    string `json:"file"`
	Line    int    `json:"line"`
	Module  string `json:"module"`           // path of the mapped file, or of the perf map for JIT code; "" if unknown
	Offset  uint64 `json:"offset,omitempty"` // address inside Module's file (ELF vaddr) so a recording can be symbolized later
	BuildID string `json:"build_id,omitempty"`
	Inlined bool   `json:"inlined,omitempty"` // a frame inlined into the next one
}

// Options configure a Symbolizer.
type Options struct {
	ProcRoot string // default "/proc"
	// Budget bounds the memory the parsed files take (estimated): past
	// it the oldest go, and a file that alone would take more is not
	// read (its frames name the file and offset only). Default
	// DefaultBudget.
	Budget int64
	// DebugDir holds separate debug files by build ID
	// (DebugDir/.build-id/ab/cdef….debug); default "/usr/lib/debug".
	DebugDir string
}

// Symbolizer resolves addresses of many processes, caching their memory
// maps per pid and parsed ELF files across pids. It is safe for concurrent use.
type Symbolizer struct {
	procRoot, debugDir string
	budget             int64

	mu       sync.Mutex
	procs    map[int]*process
	modules  map[string]*module // by "dev:inode" and by "build-id:ID"
	order    []*module          // oldest first
	bytes    int64              // the modules' cost
	refused  uint64             // files over the budget
	warnings []string
}

// DefaultBudget is the parsed files' default budget: a host's libraries
// and a few large binaries with DWARF.
const DefaultBudget = 256 << 20

// process is what is known of one pid, kept after it exits.
type process struct {
	start   uint64 // its start time (/proc/PID/stat): tells a reused pid apart
	maps    []*mapping
	nspid   int
	comm    string
	perf    *perfMap
	perfErr error // of the last attempt to read the perf map
	warned  bool  // about JIT code without a perf map
}

// New returns a Symbolizer reading ProcRoot.
func New(opts Options) *Symbolizer {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.DebugDir == "" {
		opts.DebugDir = "/usr/lib/debug"
	}
	if opts.Budget == 0 {
		opts.Budget = DefaultBudget
	}
	return &Symbolizer{
		procRoot: opts.ProcRoot,
		debugDir: opts.DebugDir,
		budget:   opts.Budget,
		procs:    map[int]*process{},
		modules:  map[string]*module{},
	}
}

func (s *Symbolizer) procPath(pid int, elem ...string) string {
	return filepath.Join(append([]string{s.procRoot, strconv.Itoa(pid)}, elem...)...)
}

func (s *Symbolizer) alive(pid int) bool {
	_, err := os.Stat(s.procPath(pid))
	return err == nil
}

// Snapshot reads pid's memory map now, and the files mapped executable, so
// that its stacks can be symbolized after it exits.
func (s *Symbolizer) Snapshot(pid int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.readProcess(pid)
	if err != nil {
		return err
	}
	for _, m := range p.maps {
		if m.exec() && m.file() {
			s.module(pid, m)
		}
	}
	for _, m := range p.maps {
		if m.exec() && (m.anonymous() || m.file() && m.mod == nil) {
			s.loadPerfMap(pid, p)
			break
		}
	}
	return nil
}

// Comm is the name of pid when its maps were last read, or now; "" if
// unknown.
func (s *Symbolizer) Comm(pid int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[pid]; p != nil && p.comm != "" {
		return p.comm
	}
	return s.readComm(pid)
}

// readComm is pid's name now, "" if it is gone.
func (s *Symbolizer) readComm(pid int) string {
	b, err := os.ReadFile(s.procPath(pid, "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// startTime is when pid started (field 22 of /proc/PID/stat, in clock
// ticks since boot), 0 if it is gone.
func (s *Symbolizer) startTime(pid int) uint64 {
	b, err := os.ReadFile(s.procPath(pid, "stat"))
	if err != nil {
		return 0
	}
	// The name, in parentheses, may hold anything: count from its end.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return start
}

// Forget drops what is cached for pid.
func (s *Symbolizer) Forget(pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.procs, pid)
}

// Warnings returns (and clears) one-line warnings for the user.
func (s *Symbolizer) Warnings() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.warnings
	s.warnings = nil
	return w
}

// readProcess (re)reads pid's maps, keeping what was learnt before.
func (s *Symbolizer) readProcess(pid int) (*process, error) {
	f, err := os.Open(s.procPath(pid, "maps"))
	if err != nil {
		return nil, fmt.Errorf("reading memory map of pid %d: %w", pid, err)
	}
	defer f.Close()
	maps, err := parseMaps(f)
	if err != nil {
		return nil, fmt.Errorf("reading memory map of pid %d: %w", pid, err)
	}
	p := s.procs[pid]
	if p == nil {
		p = &process{}
		s.procs[pid] = p
	}
	if start := s.startTime(pid); start != p.start {
		*p = process{start: start} // a new process under the same pid
	}
	p.maps = maps
	p.nspid = pid
	if b, err := os.ReadFile(s.procPath(pid, "status")); err == nil {
		if n := parseNSpid(string(b)); n > 0 {
			p.nspid = n
		}
	}
	if comm := s.readComm(pid); comm != "" {
		p.comm = comm
	}
	return p, nil
}

// find is the mapping holding addr; maps are sorted by address.
func (p *process) find(addr uint64) *mapping {
	i := sort.Search(len(p.maps), func(i int) bool { return p.maps[i].end > addr })
	if i < len(p.maps) && p.maps[i].contains(addr) {
		return p.maps[i]
	}
	return nil
}

// Symbolize resolves the addresses of one stack (innermost first) of
// process pid. Inlined calls expand into several frames with the same Addr
// (innermost first, Inlined=true on all but the outermost of that address).
// The first address is taken as the exact instruction pointer, the others
// as return addresses, which point after their call.
func (s *Symbolizer) Symbolize(pid int, addrs []uint64) []Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[pid]
	// The pid of a process that exited, taken by another: what was read
	// of the first is no map of the second.
	if p != nil {
		if start := s.startTime(pid); start != 0 && start != p.start {
			delete(s.procs, pid)
			p = nil
		}
	}
	refreshed := false
	frames := make([]Frame, 0, len(addrs))
	for i, addr := range addrs {
		var m *mapping
		if p != nil {
			m = p.find(addr)
		}
		// A new mapping (dlopen, JIT), or one made executable since
		// (V8 reserves its code range and makes pages executable as it
		// fills them): read the maps again, once per stack.
		if (m == nil || !m.exec()) && !refreshed && mappable(addr) && (p == nil || s.alive(pid)) {
			refreshed = true
			if np, err := s.readProcess(pid); err == nil {
				p = np
				m = p.find(addr)
			}
		}
		pc := addr
		if i > 0 && pc > 0 {
			pc--
		}
		frames = append(frames, s.frames(pid, p, m, addr, pc)...)
	}
	return frames
}

// mappable is false for addresses no mapping can hold: below the lowest
// address mmap allows (vm.mmap_min_addr, 64 KiB by default) or in the
// kernel half, as in stacks walked through a broken frame pointer.
func mappable(addr uint64) bool { return addr >= 0x10000 && addr < 1<<56 }

// frames symbolizes one address; pc is the address to look up.
func (s *Symbolizer) frames(pid int, p *process, m *mapping, addr, pc uint64) []Frame {
	unknown := []Frame{{Addr: addr}}
	if m == nil {
		return unknown
	}
	if !m.anonymous() {
		unknown[0].Module = m.path
	}
	if m.file() {
		if mod := s.module(pid, m); mod != nil {
			return mod.frames(addr, pc, m)
		}
	}
	if !m.exec() || !m.anonymous() && !m.file() {
		return unknown
	}
	// JIT code: anonymous, or in a file that is no ELF (a memfd).
	if name, path, ok := s.jitName(pid, p, pc); ok {
		fn, file, line := jsFrame(name)
		return []Frame{{Addr: addr, Func: fn, File: file, Line: line, Module: path}}
	}
	if p.perf == nil && m.anonymous() && !p.warned && p.perfErr != nil {
		p.warned = true
		switch {
		case !errors.Is(p.perfErr, fs.ErrNotExist):
			s.warnf("pid %d (%s) runs JIT code but its perf map cannot be read: %v", pid, p.comm, p.perfErr)
		case p.comm == "node":
			s.warnf("pid %d (node) runs JIT code but has no /tmp/perf-%d.map: start it with node --perf-basic-prof", pid, p.nspid)
		default:
			s.warnf("pid %d (%s) runs JIT code without a perf map (/tmp/perf-%d.map): frames in it stay unnamed", pid, p.comm, p.nspid)
		}
	}
	return unknown
}

func (s *Symbolizer) warnf(format string, args ...any) {
	s.warnings = append(s.warnings, fmt.Sprintf(format, args...))
}

// jitName looks pc up in pid's perf map, reading the map again when pc is
// not in it and the process is alive (the JIT appends as it compiles).
func (s *Symbolizer) jitName(pid int, p *process, pc uint64) (name, path string, ok bool) {
	if p.perf != nil {
		if name, ok := p.perf.lookup(pc); ok {
			return name, p.perf.path, true
		}
	}
	if !s.alive(pid) || !s.loadPerfMap(pid, p) {
		return "", "", false
	}
	name, ok = p.perf.lookup(pc)
	return name, p.perf.path, ok
}

// loadPerfMap reads /tmp/perf-NSPID.map in pid's root (unless unchanged
// since last read) and reports whether there is one.
func (s *Symbolizer) loadPerfMap(pid int, p *process) bool {
	path := fmt.Sprintf("/tmp/perf-%d.map", p.nspid)
	f, err := s.openInRoot(pid, path)
	if err == nil {
		var pm *perfMap
		if pm, err = readPerfMap(f, path, p.perf); err == nil {
			p.perf = pm
		}
		f.Close()
	}
	p.perfErr = err
	return p.perf != nil
}

// module returns the parsed ELF file of a mapping, or nil.
func (s *Symbolizer) module(pid int, m *mapping) *module {
	if m.opened {
		return m.mod
	}
	m.opened = true
	if mod := s.modules[m.key()]; mod != nil {
		m.mod = mod
		return mod
	}
	f := s.open(pid, m)
	if f == nil {
		return nil
	}
	defer f.Close()
	mod, err := loadModule(f, s.debugDir, s.budget)
	if errors.Is(err, errOverBudget) {
		s.refused++
		s.warnf("%s is too large to symbolize within the symbol caches' budget (%d MiB): its frames name the file, offset and build ID only", m.path, s.budget>>20)
	} else if err != nil {
		return nil
	}
	if mod.buildID != "" {
		// The same file seen through another inode (a copy, another container).
		if known := s.modules["build-id:"+mod.buildID]; known != nil {
			mod = known
		}
	}
	s.cache(m.key(), mod)
	m.mod = mod
	return mod
}

// maxModules bounds the parsed files kept: a host's distinct binaries and
// libraries, a few hundred.
const maxModules = 512

// cache keeps mod under key (and its build ID), forgetting the oldest
// files past maxModules or the budget.
func (s *Symbolizer) cache(key string, mod *module) {
	s.modules[key] = mod
	if slices.Contains(s.order, mod) {
		return // known by its build ID
	}
	if mod.buildID != "" {
		s.modules["build-id:"+mod.buildID] = mod
	}
	s.order = append(s.order, mod)
	s.bytes += mod.bytes
	for len(s.order) > 1 && (len(s.order) > maxModules || s.bytes > s.budget) {
		s.evict(s.order[0])
		s.order = s.order[1:]
	}
}

// evict forgets mod, in the mappings of the known processes too, so that
// the budget holds: one still needed is read again.
func (s *Symbolizer) evict(mod *module) {
	s.bytes -= mod.bytes
	maps.DeleteFunc(s.modules, func(_ string, m *module) bool { return m == mod })
	for _, p := range s.procs {
		for _, m := range p.maps {
			if m.mod == mod {
				m.mod, m.opened = nil, false
			}
		}
	}
}

// Usage is what the parsed files take (estimated), and how many files
// were not read for the budget.
func (s *Symbolizer) Usage() (bytes int64, refused uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes, s.refused
}

// open opens the file behind a mapping: through map_files, which works
// for deleted files and in other mount namespaces, else in the process's
// root (openInRoot), else by path if it is the same file. A deleted file
// is only found the first way. Never a FIFO or a device: a path may have
// been replaced since.
func (s *Symbolizer) open(pid int, m *mapping) *os.File {
	if f, err := openRegular(s.procPath(pid, "map_files", fmt.Sprintf("%x-%x", m.start, m.end)), 0); err == nil {
		return f
	}
	if m.deleted {
		return nil
	}
	if f, err := s.openInRoot(pid, m.path); err == nil {
		return f
	}
	// By path in fdtrace's own view: only the very file mapped (in a
	// container, the path may name another file here, or one planted).
	if f, err := openRegular(m.path, unix.O_NOFOLLOW); err == nil {
		if isMapped(f, m) {
			return f
		}
		f.Close()
	}
	return nil
}

// isMapped says whether f is the file m maps: same device and inode.
func isMapped(f *os.File, m *mapping) bool {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return false
	}
	return st.Ino == m.inode && fmt.Sprintf("%02x:%02x", unix.Major(st.Dev), unix.Minor(st.Dev)) == m.dev
}

// frames symbolizes addr (looked up as pc) in the module mapped by m.
func (mod *module) frames(addr, pc uint64, m *mapping) []Frame {
	base := Frame{Addr: addr, Module: m.path, BuildID: mod.buildID}
	vaddr, ok := mod.vaddr(m.fileOffset(addr))
	if !ok {
		return []Frame{base}
	}
	base.Offset = vaddr
	vpc := vaddr - (addr - pc)

	var fn, file string
	var line int
	goFunc := false
	if mod.gotab != nil {
		if f := mod.gotab.PCToFunc(vpc); f != nil {
			fn, goFunc = f.Name, true
			file, line, _ = mod.gotab.PCToLine(vpc)
		}
	}
	if fn == "" {
		fn = mod.function(vpc)
	}
	var chain []*scope
	if mod.dw != nil {
		chain = mod.dw.scopes(vpc)
		if !goFunc {
			file, line = mod.dw.line(vpc)
		}
		if fn == "" && len(chain) > 0 {
			fn = chain[0].name
		}
	}
	if len(chain) <= 1 {
		base.Func, base.File, base.Line = fn, file, line
		return []Frame{base}
	}
	// Innermost inlined call first, at pc's own line; each caller at the
	// line of the call inlined into it.
	frames := make([]Frame, 0, len(chain))
	for i := len(chain) - 1; i >= 0; i-- {
		f := base
		f.Func, f.Inlined = chain[i].name, i > 0
		if i == 0 {
			f.Func = fn
		}
		if i == len(chain)-1 {
			f.File, f.Line = file, line
		} else {
			f.File, f.Line = chain[i+1].callFile, chain[i+1].callLine
		}
		frames = append(frames, f)
	}
	return frames
}
