package events

// Snapshot is what one process holds at one moment, read from /proc and
// sock_diag (fdtrace snapshot --json).
type Snapshot struct {
	Type        string  `json:"type"`
	Time        Time    `json:"time"`
	PID         int     `json:"pid"`
	Comm        string  `json:"comm"`
	OpenFDs     int64   `json:"open_fds"`
	FDLimit     uint64  `json:"fd_limit"`
	FDLimitHard uint64  `json:"fd_limit_hard"`
	Utilization float64 `json:"utilization"`
	// Level is "ok", "warning" (utilization >= 0.70) or "critical" (>= 0.85).
	Level  string         `json:"level"`
	ByType map[string]int `json:"by_type"`
	// FileKinds splits the "file" fds: regular, directory, char_device, ...
	FileKinds map[string]int `json:"file_kinds"`
	Sockets   []SocketCount  `json:"sockets"`
	// UnixSocketsFrom is "sock_diag" or "proc" (/proc/PID/net/unix, its
	// rows checked against the process's fds); "" when the process has no
	// socket fd.
	UnixSocketsFrom string          `json:"unix_sockets_from,omitempty"`
	Listening       []Listener      `json:"listening"`
	Inbound         []PortCount     `json:"inbound"`
	Outbound        []EndpointCount `json:"outbound"`
	Directories     []DirCount      `json:"directories"`
	// ListenOverflows and ListenDrops are the TcpExt counters of the
	// process's network namespace.
	ListenOverflows uint64 `json:"listen_overflows"`
	ListenDrops     uint64 `json:"listen_drops"`
}

// SocketCount is how many sockets of one family, protocol and state.
type SocketCount struct {
	Family   string `json:"family"`
	Protocol string `json:"protocol"`
	State    string `json:"state,omitempty"`
	Count    int    `json:"count"`
}

// Listener is one listening socket and its accept queue.
type Listener struct {
	Protocol string `json:"protocol"`
	// Address is "127.0.0.1:8080", "[::]:443" or a unix socket's path.
	Address string `json:"address"`
	Port    int    `json:"port,omitempty"`
	FD      int    `json:"fd"`
	// Queue is the connections waiting to be accepted; QueueMax the
	// backlog. Each is absent when it could not be read.
	Queue    *uint64 `json:"queue,omitempty"`
	QueueMax *uint64 `json:"queue_max,omitempty"`
	// Accepted counts the process's connections on this port.
	Accepted int `json:"accepted,omitempty"`
}

// PortCount is the inbound connections on one local port.
type PortCount struct {
	Port  int `json:"port"`
	Count int `json:"count"`
}

// EndpointCount is the outbound connections to one remote endpoint.
type EndpointCount struct {
	Endpoint string `json:"endpoint"`
	Count    int    `json:"count"`
}

// DirCount is the files open in one directory.
type DirCount struct {
	Dir   string `json:"dir"`
	Count int    `json:"count"`
}

// Budget is the fd budget of one process measured over a window
// (fdtrace budget --json).
type Budget struct {
	Type      string  `json:"type"`
	Time      Time    `json:"time"`
	PID       int     `json:"pid"`
	Comm      string  `json:"comm"`
	DurationS float64 `json:"duration_s"`
	IntervalS float64 `json:"interval_s"`
	Samples   int     `json:"samples"`
	// Exited: the process exited before the end of the window.
	Exited bool `json:"exited"`
	// Interrupted: the window was ended early by SIGINT or SIGTERM.
	Interrupted bool              `json:"interrupted"`
	Components  []BudgetComponent `json:"components"`
	// Baseline is the fds open through the whole window.
	Baseline int `json:"baseline"`
	// PeakOpenFDs is the most fds open at once in one sample; PeakTotal
	// the sum of the components' peaks, which budgets for every peak
	// coinciding.
	PeakOpenFDs      int               `json:"peak_open_fds"`
	PeakTotal        int               `json:"peak_total"`
	Margin           float64           `json:"margin"`
	WithMargin       int               `json:"with_margin"`
	RecommendedLimit uint64            `json:"recommended_limit"`
	CurrentLimit     uint64            `json:"current_limit"`
	CurrentLimitHard uint64            `json:"current_limit_hard"`
	Settings         map[string]string `json:"settings"`
}

// BudgetComponent is one line of the budget: a kind of fd and its peak.
type BudgetComponent struct {
	// Name is "inbound", "outbound", "files", "pipes" or "other".
	Name string `json:"name"`
	// Endpoint is the remote endpoint of an outbound component.
	Endpoint string `json:"endpoint,omitempty"`
	Peak     int    `json:"peak"`
	// Baseline is the part of Peak open through the whole window.
	Baseline int `json:"baseline"`
	// Ports is the peak per local port, for inbound.
	Ports map[int]int `json:"ports,omitempty"`
}

func (Snapshot) RecordType() string { return "snapshot" }
func (Budget) RecordType() string   { return "budget" }

// Level names a utilization: "ok", "warning" from 0.70, "critical" from 0.85.
func Level(utilization float64) string {
	switch {
	case utilization >= 0.85:
		return "critical"
	case utilization >= 0.70:
		return "warning"
	}
	return "ok"
}
