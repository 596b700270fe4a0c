// Package events defines fdtrace's JSON-lines records and the decoders that
// turn raw kernel values (errno numbers, address families) into their names.
package events

import (
	"strconv"
	"time"

	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// Record is one JSON line of fdtrace's output.
type Record interface {
	RecordType() string
}

// Value is r as a value of its own: a handler given records by pointer
// (tracer.Handler) keeps them with it.
func Value(r Record) Record {
	switch p := r.(type) {
	case *Open:
		return *p
	case *Close:
		return *p
	case *Error:
		return *p
	case *Process:
		return *p
	}
	return r
}

// Time marshals as RFC 3339 with nanoseconds, always nine digits.
type Time time.Time

const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(timeLayout)+2)
	b = append(b, '"')
	b = time.Time(t).AppendFormat(b, timeLayout)
	return append(b, '"'), nil
}

func (t *Time) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	*t = Time(v)
	return err
}

// Open is one fd created; pipe2 and socketpair give two.
type Open struct {
	Type     string `json:"type"`
	Time     Time   `json:"time"`
	PID      int    `json:"pid"`
	TID      int    `json:"tid"`
	Comm     string `json:"comm"`
	Syscall  string `json:"syscall"`
	FD       int    `json:"fd"`
	FDType   string `json:"fd_type"`
	Cloexec  bool   `json:"cloexec"`
	Path     string `json:"path,omitempty"`
	Family   string `json:"family,omitempty"`
	SockType string `json:"sock_type,omitempty"`
	// UserData: made by io_uring, its request's user_data (0: absent).
	UserData uint64 `json:"user_data,omitempty"`
	// Stack is the allocating user stack, innermost first (trace --stacks).
	Stack []symbolize.Frame `json:"stack,omitempty"`
}

// Close is one fd going away: close, close_range, dup2/dup3 over it, or
// exec dropping a close-on-exec fd (syscall "execve").
type Close struct {
	Type    string `json:"type"`
	Time    Time   `json:"time"`
	PID     int    `json:"pid"`
	TID     int    `json:"tid"`
	Comm    string `json:"comm"`
	Syscall string `json:"syscall"`
	FD      int    `json:"fd"`
	FDType  string `json:"fd_type"`
}

// Error is a failed fd-creating syscall.
type Error struct {
	Type    string `json:"type"`
	Time    Time   `json:"time"`
	PID     int    `json:"pid"`
	TID     int    `json:"tid"`
	Comm    string `json:"comm"`
	Syscall string `json:"syscall"`
	Errno   string `json:"errno"`
	OpenFDs int64  `json:"open_fds"`
	FDLimit uint64 `json:"fd_limit"`
	Path    string `json:"path,omitempty"`
	// ListenPort is the local port of the listening socket a failed
	// accept was called on (inet sockets only).
	ListenPort uint16 `json:"listen_port,omitempty"`
	// Stack is the failing call's user stack (trace --stacks).
	Stack []symbolize.Frame `json:"stack,omitempty"`
}

// Process summarises one traced process.
type Process struct {
	Type               string                       `json:"type"`
	Time               Time                         `json:"time"`
	PID                int                          `json:"pid"`
	Comm               string                       `json:"comm"`
	OpenFDs            int64                        `json:"open_fds"`
	FDLimit            uint64                       `json:"fd_limit"`
	Utilization        float64                      `json:"utilization"`
	Opened             uint64                       `json:"opened"`
	Closed             uint64                       `json:"closed"`
	OpenedByType       map[string]uint64            `json:"opened_by_type,omitempty"`
	ClosedByType       map[string]uint64            `json:"closed_by_type,omitempty"`
	Errors             map[string]map[string]uint64 `json:"errors"`
	EMFILE             uint64                       `json:"emfile"`
	ENFILE             uint64                       `json:"enfile"`
	RefusedConnections uint64                       `json:"refused_connections"`
	// RefusedByPort splits refused_connections by the listening port;
	// DroppedByPort counts the connections a runtime accepted and closed
	// untouched to drain its queue after a refusal (see docs/design.md).
	RefusedByPort map[uint16]uint64 `json:"refused_by_port,omitempty"`
	DroppedByPort map[uint16]uint64 `json:"dropped_by_port,omitempty"`
	Exited        bool              `json:"exited"`
	// TopFDType and Rates are fdtrace top's.
	TopFDType string `json:"top_fd_type,omitempty"`
	Rates     *Rates `json:"rates,omitempty"`
}

// Rates are per second, over the interval before a record (fdtrace top).
type Rates struct {
	Opened  float64 `json:"opened"`
	Closed  float64 `json:"closed"`
	Growth  float64 `json:"growth"`
	EMFILE  float64 `json:"emfile"`
	ENFILE  float64 `json:"enfile"`
	Refused float64 `json:"refused_connections"`
}

// Stats counts what was lost or had to be corrected. Every field is a
// running total since fdtrace attached.
type Stats struct {
	Type          string `json:"type"`
	Time          Time   `json:"time"`
	LostEvents    uint64 `json:"lost_events"`
	FDsMapFull    uint64 `json:"fds_map_full"`
	ProcsMapFull  uint64 `json:"procs_map_full"`
	ErrorsMapFull uint64 `json:"errors_map_full"`
	KernelDrift   uint64 `json:"kernel_drift"`
	StacksFull    uint64 `json:"stacks_full"`
	// StacksNoTables were walked by frame pointers in DWARF stack mode:
	// the unwind tables of their code were not loaded yet.
	StacksNoTables uint64 `json:"stacks_without_unwind_tables"`
	// Unswept fds lay beyond the bounded loops of the compat programs
	// (kernels without bpf_loop).
	Unswept         uint64 `json:"unswept_fds"`
	PortsMapFull    uint64 `json:"ports_map_full"`
	SeededFDs       uint64 `json:"seeded_fds"`
	ReconciledFDs   uint64 `json:"reconciled_fds"`
	SkippedHooks    int    `json:"skipped_hooks"`
	EventsDelivered uint64 `json:"events_delivered"`
	// StacksLate went out in records before their symbolization was done
	// (it parses what the traced process maps, off the reader's path, and
	// a record waits for it at most 5 s): their frames are missing.
	// StacksQueueFull were not symbolized at all, their work finding the
	// symbolizer's queue full.
	StacksLate      uint64 `json:"stacks_late,omitempty"`
	StacksQueueFull uint64 `json:"stacks_queue_full,omitempty"`
	// OutputDropped are the records a write to -o FILE failed to write
	// (a full disk, say): dropped, while tracing went on.
	OutputDropped uint64 `json:"output_dropped,omitempty"`
	// Memory is fdtrace's own footprint when the record was written.
	Memory *Memory `json:"memory,omitempty"`
}

// Memory is what fdtrace holds: resident memory, BPF map memory and the
// entries of the maps that grow with the traced processes and their fds.
type Memory struct {
	RSSBytes     uint64     `json:"rss_bytes"`
	PeakRSSBytes uint64     `json:"peak_rss_bytes"`
	MapBytes     uint64     `json:"map_bytes"`
	MapEntries   MapEntries `json:"map_entries"`
	// UnwindTableBytes are the DWARF unwind tables loaded (in map_bytes
	// too), and UnwindTablesRefused the files that got none for the
	// tables' budget: their stacks are walked by frame pointers.
	UnwindTableBytes    uint64 `json:"unwind_table_bytes,omitempty"`
	UnwindTablesRefused uint64 `json:"unwind_tables_refused,omitempty"`
	// SymbolCacheBytes are what the symbolizer's parsed files take
	// (estimated, within its budget); SymbolFilesRefused the files too
	// large for the budget.
	SymbolCacheBytes   uint64 `json:"symbol_cache_bytes,omitempty"`
	SymbolFilesRefused uint64 `json:"symbol_files_refused,omitempty"`
}

// MapEntries counts the entries of the kernel maps, by map.
type MapEntries struct {
	Procs  int `json:"procs"`
	FDs    int `json:"fds"`
	Errors int `json:"errors"`
	Ports  int `json:"ports"`
	Stacks int `json:"stacks"`
	Traced int `json:"traced"`
}

func (Open) RecordType() string    { return "open" }
func (Close) RecordType() string   { return "close" }
func (Error) RecordType() string   { return "error" }
func (Process) RecordType() string { return "process" }
func (Stats) RecordType() string   { return "stats" }

// Utilization is open/limit, 0 when the limit is unknown.
func Utilization(open int64, limit uint64) float64 {
	if limit == 0 || limit == ^uint64(0) {
		return 0
	}
	return float64(open) / float64(limit)
}

// Leak is one group of outstanding fds: those of one process created by
// one user stack (fdtrace leaks).
type Leak struct {
	Type         string            `json:"type"`
	Time         Time              `json:"time"`
	PID          int               `json:"pid"`
	Comm         string            `json:"comm"`
	Count        int               `json:"count"`
	FDTypes      map[string]int    `json:"fd_types"`
	Syscalls     map[string]int    `json:"syscalls"`
	OldestAgeS   float64           `json:"oldest_age_s"`
	GrowthPerMin float64           `json:"growth_per_min"`
	FDs          []int             `json:"fds"`
	Samples      []string          `json:"samples,omitempty"`
	Stack        []symbolize.Frame `json:"stack"`
	// Preexisting: fds open before fdtrace attached, which have no stack.
	Preexisting bool `json:"preexisting,omitempty"`
	// Unattributed: fds whose stack could not be kept (stack store full).
	Unattributed bool `json:"unattributed,omitempty"`
	// OutsideTracedSyscalls: fds /proc shows that have no record, created
	// where fdtrace does not hook (io_uring, an ia32 syscall, ...).
	OutsideTracedSyscalls bool `json:"outside_traced_syscalls,omitempty"`
	// AtExit: fds the process still held when it exited.
	AtExit bool `json:"at_exit,omitempty"`
}

func (Leak) RecordType() string { return "leak" }
