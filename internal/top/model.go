// Package top is fdtrace top: per-process rows built from the kernel's
// counters, with rates between refreshes, sorted and filtered, drawn on a
// terminal or written as JSON lines.
package top

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
)

// The utilization thresholds: open fds as a share of the soft limit.
const (
	Warning  = 0.70
	Critical = 0.85
)

// NumTypes is how many fd types there are (indexed by events.FDType).
const NumTypes = events.NumFDTypes

// Unlimited is the fd limit of a process without one (RLIM_INFINITY).
const Unlimited = math.MaxUint64

// Sample is one process's counters at one moment, as the kernel keeps
// them (counts since fdtrace attached, or since the process started after
// that).
type Sample struct {
	PID     int
	StartNs uint64 // tells a reused pid apart; 0 when unknown
	Comm    string
	OpenFDs int64
	Opened  uint64
	Closed  uint64
	EMFILE  uint64
	ENFILE  uint64
	Refused uint64
	// Indexed by events.FDType.
	OpenedByType [NumTypes]uint64
	ClosedByType [NumTypes]uint64
	// Limit is the soft RLIMIT_NOFILE if the sample carries it (an exit
	// record does); 0: read it from /proc.
	Limit uint64
	// Errors: syscall → errno → count; nil when not read.
	Errors map[string]map[string]uint64
	// RefusedByPort splits Refused by listening port; DroppedByPort
	// counts the connections drained unserved after a refusal.
	RefusedByPort map[uint16]uint64
	DroppedByPort map[uint16]uint64
}

// SortKey orders the rows.
type SortKey int

const (
	ByUtilization SortKey = iota
	ByGrowth
	ByErrors
	ByOpenFDs
	ByPID
)

// SortKeys are the names of the sort keys, for flags and the screen.
var SortKeys = []string{"utilization", "growth", "errors", "fds", "pid"}

func (k SortKey) String() string { return SortKeys[k] }

// ParseSortKey reads a sort key name or a unique prefix of one ("util").
func ParseSortKey(s string) (SortKey, bool) {
	found := -1
	for i, name := range SortKeys {
		if s != "" && strings.HasPrefix(name, s) {
			if found >= 0 {
				return 0, false
			}
			found = i
		}
	}
	return SortKey(found), found >= 0
}

// Rates are per second, over the interval before the row's time.
type Rates = events.Rates

// Row is one process as shown.
type Row struct {
	Sample
	Time        time.Time
	Limit       uint64 // soft RLIMIT_NOFILE; 0 unknown
	Utilization float64
	// Rates is nil until two refreshes saw the process.
	Rates *Rates
	// TopType is the fd type most of the open fds have, "" if unknown.
	TopType    string
	TopTypeFDs int64
	Exited     bool
}

// Level is "CRIT" or "WARN" when utilization reaches a threshold.
func Level(utilization float64) string {
	switch {
	case utilization >= Critical:
		return "CRIT"
	case utilization >= Warning:
		return "WARN"
	}
	return ""
}

// errorRate is what the errors sort goes by: failures per second.
func (r *Row) errorRate() float64 {
	if r.Rates == nil {
		return 0
	}
	return r.Rates.EMFILE + r.Rates.ENFILE + r.Rates.Refused
}

func (r *Row) growth() float64 {
	if r.Rates == nil {
		return 0
	}
	return r.Rates.Growth
}

// System is what the model reads from /proc, for the rows it shows only.
type System interface {
	// Limit is the soft RLIMIT_NOFILE of pid.
	Limit(pid int) (uint64, error)
	// FDTypes counts pid's open fds by type.
	FDTypes(pid int) ([NumTypes]int64, error)
	// PIDs lists the live processes.
	PIDs() ([]int, error)
	// FDCount counts pid's open fds.
	FDCount(pid int) (int64, error)
}

// Cache lifetimes of the soft limit: of a row shown, of the others (which
// only need it for sorting).
const (
	limitTTLShown  = 3 * time.Second
	limitTTLHidden = 30 * time.Second
)

// goneGrace is how long a process that left the kernel's map waits for its
// exit record, which the ring buffer may deliver a little later.
const goneGrace = 2 * time.Second

// proc is what the model holds of one process.
type proc struct {
	s      Sample
	kernel bool // s is from the kernel's map; else counted once from /proc
	at     time.Time
	// rates against the sample before, when there was one.
	rates *Rates
	gone  time.Time // left the kernel's map at this time, exit not seen yet

	limit     uint64
	limitAt   time.Time
	limitComm string
	// procFDs: /proc's count, for a count the kernel lost (see row).
	procFDs   int64
	procFDsAt time.Time

	// types: the fds found in /proc when first shown, by type, and the
	// kernel's by-type counters then; what opened and closed since is added.
	types      *[NumTypes]int64
	typesOpen  [NumTypes]uint64
	typesClose [NumTypes]uint64
}

// Model holds the processes between refreshes.
type Model struct {
	Sort SortKey
	// Filter keeps the rows whose comm holds it (any case).
	Filter string
	// Match, if set, keeps only the processes it accepts (--cgroup).
	Match func(pid int, comm string) bool

	sys   System
	procs map[int]*proc
	exits []*Row // exit records of the last update, shown once
	at    time.Time
	// Total and Matched are the processes of the last Rows call: all, and
	// those the filters kept; Sums adds up the rates of the matched ones.
	Total, Matched int
	Sums           Rates
	// Ports sums the refused connections of the matched processes by
	// listening port, most refused first.
	Ports []PortCount
}

// NewModel makes an empty model reading /proc through sys.
func NewModel(sys System) *Model {
	return &Model{sys: sys, procs: map[int]*proc{}}
}

// Seed adds processes the kernel has no counters for yet, counted from
// /proc. Their rows keep that count until the kernel sees them act.
func (m *Model) Seed(now time.Time, samples []Sample) {
	for _, s := range samples {
		if _, ok := m.procs[s.PID]; !ok {
			m.procs[s.PID] = &proc{s: s, at: now}
		}
	}
}

// Update takes the kernel's counters (every process it has) and the exit
// records since the last update.
func (m *Model) Update(now time.Time, kernel, exits []Sample) {
	m.exits = m.exits[:0]
	// exited: pid → the start time of the process that exited, 0 when
	// unknown (then every counter of that pid read in the same refresh
	// is taken for the exited process's).
	exited := map[int]uint64{}
	for _, e := range exits {
		p := m.procs[e.PID]
		if p != nil && p.kernel && e.StartNs != 0 && e.StartNs != p.s.StartNs {
			p = nil // a reused pid: e is of an older process
		}
		start := e.StartNs
		if p != nil && p.kernel {
			start = p.s.StartNs
		}
		row := &Row{Sample: e, Time: now, Limit: e.Limit, Exited: true}
		row.Utilization = utilization(e.OpenFDs, e.Limit)
		if p != nil {
			row.Rates = m.rates(p, &e, now)
			p.s = e
			row.TopType, row.TopTypeFDs = p.topType()
			delete(m.procs, e.PID)
		} else if !m.at.IsZero() {
			// Born and gone since the last update: it started from zero.
			row.Rates = rates(&Sample{}, &e, now.Sub(m.at))
		}
		m.exits = append(m.exits, row)
		exited[e.PID] = start
	}
	seen := make(map[int]bool, len(kernel))
	for i := range kernel {
		s := &kernel[i]
		if start, ok := exited[s.PID]; ok && (start == 0 || start == s.StartNs) {
			continue // read just before it exited
		}
		seen[s.PID] = true
		p := m.procs[s.PID]
		if p == nil || (p.kernel && p.s.StartNs != s.StartNs) {
			p = &proc{}
			m.procs[s.PID] = p
		}
		p.rates = m.rates(p, s, now)
		p.s, p.kernel, p.at, p.gone = *s, true, now, time.Time{}
	}
	var live map[int]bool
	listed := false
	for pid, p := range m.procs {
		switch {
		case seen[pid]:
		case p.kernel && p.gone.IsZero():
			p.gone = now
		case p.kernel:
			if now.Sub(p.gone) > goneGrace {
				delete(m.procs, pid) // left without an exit record
			}
		default:
			// Counted from /proc: nothing tells when it exits but /proc.
			if !listed {
				live, listed = m.livePIDs(), true
			}
			if live != nil && !live[pid] {
				delete(m.procs, pid)
			} else if !m.at.IsZero() {
				p.rates = &Rates{} // the kernel saw it do nothing
			}
		}
	}
	m.at = now
}

func (m *Model) livePIDs() map[int]bool {
	pids, err := m.sys.PIDs()
	if err != nil {
		return nil // keep every row rather than drop them all
	}
	live := make(map[int]bool, len(pids))
	for _, pid := range pids {
		live[pid] = true
	}
	return live
}

// rates of s against what p held before; nil on the first update.
func (m *Model) rates(p *proc, s *Sample, now time.Time) *Rates {
	if m.at.IsZero() {
		return nil
	}
	if !p.kernel {
		// No counters before: they started from zero since the last update.
		return rates(&Sample{}, s, now.Sub(m.at))
	}
	return rates(&p.s, s, now.Sub(p.at))
}

func rates(prev, cur *Sample, dt time.Duration) *Rates {
	sec := dt.Seconds()
	if sec <= 0 {
		return nil
	}
	d := func(a, b uint64) float64 {
		if b < a {
			return 0
		}
		return float64(b-a) / sec
	}
	r := &Rates{Opened: d(prev.Opened, cur.Opened), Closed: d(prev.Closed, cur.Closed),
		EMFILE: d(prev.EMFILE, cur.EMFILE), ENFILE: d(prev.ENFILE, cur.ENFILE),
		Refused: d(prev.Refused, cur.Refused)}
	r.Growth = r.Opened - r.Closed
	return r
}

func utilization(open int64, limit uint64) float64 {
	if limit == 0 || limit == Unlimited {
		return 0
	}
	return float64(open) / float64(limit)
}

// Rows are the processes the filters keep, sorted, the first n of them
// (all if n <= 0) with their soft limit fresh and their top fd type. The
// exit records of the last update come with them, once.
func (m *Model) Rows(n int) []Row {
	rows := make([]Row, 0, len(m.procs)+len(m.exits))
	m.Total = 0
	for pid, p := range m.procs {
		if !p.gone.IsZero() {
			continue
		}
		m.Total++
		if !m.keep(pid, p.s.Comm) {
			continue
		}
		m.refreshLimit(pid, p, limitTTLHidden)
		rows = append(rows, m.row(p))
	}
	for _, r := range m.exits {
		m.Total++
		if m.keep(r.PID, r.Comm) {
			rows = append(rows, *r)
		}
	}
	m.Matched = len(rows)
	m.Sums = Rates{}
	m.sumPorts(rows)
	for i := range rows {
		if r := rows[i].Rates; r != nil {
			m.Sums.Opened += r.Opened
			m.Sums.Closed += r.Closed
			m.Sums.Growth += r.Growth
			m.Sums.EMFILE += r.EMFILE
			m.Sums.ENFILE += r.ENFILE
			m.Sums.Refused += r.Refused
		}
	}
	m.sort(rows)
	if n <= 0 || n > len(rows) {
		n = len(rows)
	}
	shown := rows[:n]
	changed := false
	for i := range shown {
		p := m.procs[shown[i].PID]
		if shown[i].Exited || p == nil {
			continue
		}
		if m.refreshLimit(shown[i].PID, p, limitTTLShown) {
			changed = true
		}
		if p.types == nil {
			if t, err := m.sys.FDTypes(shown[i].PID); err == nil {
				p.types, p.typesOpen, p.typesClose = &t, p.s.OpenedByType, p.s.ClosedByType
			}
		}
		shown[i] = m.row(p)
	}
	if changed {
		m.sort(shown)
	}
	return shown
}

func (m *Model) keep(pid int, comm string) bool {
	if m.Filter != "" && !strings.Contains(strings.ToLower(comm), strings.ToLower(m.Filter)) {
		return false
	}
	return m.Match == nil || m.Match(pid, comm)
}

// refreshLimit reads the limit again if it is older than ttl, or the
// process took another name (an exec, which may come with a new limit).
func (m *Model) refreshLimit(pid int, p *proc, ttl time.Duration) bool {
	lost := p.s.OpenFDs < 0 && (p.procFDsAt.IsZero() || m.at.Sub(p.procFDsAt) >= ttl)
	if !lost && !p.limitAt.IsZero() && p.limitComm == p.s.Comm && m.at.Sub(p.limitAt) < ttl {
		return false
	}
	limit, err := m.sys.Limit(pid)
	if err != nil {
		limit = 0 // gone: its row goes at the next update
	}
	changed := limit != p.limit
	p.limit, p.limitAt, p.limitComm = limit, m.at, p.s.Comm
	if p.s.OpenFDs < 0 {
		p.procFDs, _ = m.sys.FDCount(pid)
		p.procFDsAt, changed = m.at, true
	}
	return changed
}

func (m *Model) row(p *proc) Row {
	r := Row{Sample: p.s, Time: m.at, Limit: p.limit, Rates: p.rates}
	if r.OpenFDs < 0 {
		// Closes of fds created where the counting mode does not look
		// (bpf(), io_uring) took the kernel's count below zero.
		r.OpenFDs = p.procFDs
	}
	r.Utilization = utilization(r.OpenFDs, p.limit)
	r.TopType, r.TopTypeFDs = p.topType()
	// An fd opened while /proc was read counts twice; at most by one or two.
	r.TopTypeFDs = min(r.TopTypeFDs, max(r.OpenFDs, 0))
	return r
}

// topType is the type with the most open fds: those found in /proc when
// the process was first shown, plus those opened since, less those closed.
func (p *proc) topType() (string, int64) {
	if p.types == nil {
		return "", 0
	}
	best, bestN := -1, int64(0)
	for t := range NumTypes {
		n := p.types[t] + int64(p.s.OpenedByType[t]-p.typesOpen[t]) - int64(p.s.ClosedByType[t]-p.typesClose[t])
		if n > bestN {
			best, bestN = t, n
		}
	}
	if best < 0 {
		return "", 0
	}
	return events.FDType(best).String(), bestN
}

func (m *Model) sort(rows []Row) {
	slices.SortFunc(rows, func(a, b Row) int {
		var c int
		switch m.Sort {
		case ByGrowth:
			c = cmp.Compare(b.growth(), a.growth())
		case ByErrors:
			c = cmp.Or(cmp.Compare(b.errorRate(), a.errorRate()),
				cmp.Compare(b.EMFILE+b.ENFILE+b.Refused, a.EMFILE+a.ENFILE+a.Refused))
		case ByOpenFDs:
			c = cmp.Compare(b.OpenFDs, a.OpenFDs)
		case ByPID:
			return cmp.Compare(a.PID, b.PID)
		}
		return cmp.Or(c, cmp.Compare(b.Utilization, a.Utilization),
			cmp.Compare(b.OpenFDs, a.OpenFDs), cmp.Compare(a.PID, b.PID))
	})
}

// PortCount is the refused connections of one listening port, and the
// connections drained unserved after a refusal there.
type PortCount struct {
	Port             uint16
	Refused, Dropped uint64
}

func (m *Model) sumPorts(rows []Row) {
	byPort := map[uint16]*PortCount{}
	get := func(port uint16) *PortCount {
		if byPort[port] == nil {
			byPort[port] = &PortCount{Port: port}
		}
		return byPort[port]
	}
	for i := range rows {
		for port, n := range rows[i].RefusedByPort {
			get(port).Refused += n
		}
		for port, n := range rows[i].DroppedByPort {
			get(port).Dropped += n
		}
	}
	m.Ports = m.Ports[:0]
	for _, p := range byPort {
		m.Ports = append(m.Ports, *p)
	}
	slices.SortFunc(m.Ports, func(a, b PortCount) int {
		return cmp.Or(cmp.Compare(b.Refused, a.Refused), cmp.Compare(b.Dropped, a.Dropped), cmp.Compare(a.Port, b.Port))
	})
}
