package metrics

import (
	"log"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Limits bound what the clients of the metrics endpoint can hold of
// fdtrace: a node's fd alerts must not go dark because someone opened
// thousands of idle connections to it.
type Limits struct {
	// MaxConns is how many connections are served at once; more wait in
	// the listen queue.
	MaxConns int
	// ReadHeader, Read and Write bound a request's header, a whole
	// request and a response; Idle, a keep-alive connection between
	// requests.
	ReadHeader, Read, Write, Idle time.Duration
}

// DefaultLimits suit a scrape every few seconds by a few Prometheus
// servers.
var DefaultLimits = Limits{MaxConns: 32, ReadHeader: 5 * time.Second, Read: 10 * time.Second,
	Write: 30 * time.Second, Idle: 60 * time.Second}

// Serve serves h on ln within l until the server is shut down.
func Serve(ln net.Listener, h http.Handler, l Limits, errLog *log.Logger) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeader, ReadTimeout: l.Read,
		WriteTimeout: l.Write, IdleTimeout: l.Idle, MaxHeaderBytes: 16 << 10, ErrorLog: errLog}
	go srv.Serve(netutil.LimitListener(ln, l.MaxConns))
	return srv
}
