package tracer

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// portModes are the two homes of per-fd state: the drain detection must
// give the same numbers with fd records and without.
var portModes = []struct {
	name string
	cfg  Config
}{
	{"with fd records", Config{}},
	{"counting only", Config{ErrorsOnly: true, CountOnly: true}},
}

// startAcceptor traces the children of the test and starts the acceptor
// workload (testdata/workloads/acceptor.c) as one.
func startAcceptor(t *testing.T, cfg Config) (*Tracer, *testutil.Workload, *recorder) {
	t.Helper()
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "acceptor", "-static")
	cfg.FollowChildrenOf = os.Getpid()
	tr := load(t, cfg)
	w := testutil.StartFdops(t, bin)
	if err := tr.Track(w.PID); err != nil {
		t.Fatal(err)
	}
	return tr, w, &recorder{}
}

// dial connects n clients to the listener l (fd, port) of the workload,
// each sending a request, and returns once all n wait in its queue.
func dial(t *testing.T, w *testutil.Workload, l []int, n int) []net.Conn {
	t.Helper()
	before := w.Do(t, "queued %d", l[0])[0]
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", l[1]))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// The handshake ends in the server's softirq, maybe after connect
	// returned: ask the listener for its queue.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if q := w.Do(t, "queued %d", l[0])[0]; q == before+n {
			return conns
		} else if time.Now().After(deadline) {
			t.Fatalf("port %d: %d connections queued, want %d", l[1], q, before+n)
		}
		time.Sleep(time.Millisecond)
	}
}

// answer is what a client got: its response, or how it ended without one.
func answer(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	switch {
	case len(b) > 0:
		return string(b)
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case err == nil:
		return "closed"
	}
	t.Fatalf("client %v: %v", c.LocalAddr(), err)
	return ""
}

// dropped says whether every client ended without a response.
func droppedAll(t *testing.T, conns []net.Conn) bool {
	t.Helper()
	for _, c := range conns {
		if a := answer(t, c); a != "reset" && a != "closed" {
			t.Errorf("client %v got %q, want no response", c.LocalAddr(), a)
			return false
		}
	}
	return true
}

func acceptPorts(rec *recorder, pid int) []uint16 {
	var out []uint16
	for _, e := range rec.errorsOf(pid) {
		if e.Syscall == "accept4" {
			out = append(out, e.ListenPort)
		}
	}
	return out
}

// assertGatesClosed checks that the kernel's drain gates are back to 0:
// closes and accepts pay nothing for the drain detection once no drain
// is on.
func assertGatesClosed(t *testing.T, tr *Tracer) {
	t.Helper()
	drains, pending, err := tr.Kernel().DrainGates()
	if err != nil {
		t.Fatal(err)
	}
	if drains != 0 || pending != 0 {
		t.Errorf("drain gates left open: %d ports draining, %d connections pending", drains, pending)
	}
}

func exitRecord(t *testing.T, rec *recorder, pid int) events.Process {
	t.Helper()
	for _, r := range rec.records {
		if p, ok := r.(events.Process); ok && p.PID == pid && p.Exited {
			return p
		}
	}
	t.Fatalf("no exit record for pid %d", pid)
	return events.Process{}
}

func byPortOf(pid int, ports []loader.PortCounts) map[uint16]loader.PortCounts {
	out := map[uint16]loader.PortCounts{}
	for _, p := range ports {
		if p.Proc.PID == pid {
			out[p.Port] = p
		}
	}
	return out
}

func TestAServerThatRetriesHasItsRefusedAcceptsCountedPerPortAndDropsNobody(t *testing.T) {
	for _, mode := range portModes {
		t.Run(mode.name, func(t *testing.T) {
			tr, w, rec := startAcceptor(t, mode.cfg)
			a, b := w.Do(t, "listen"), w.Do(t, "listen")
			pa, pb := uint16(a[1]), uint16(b[1])

			// Accepted and closed untouched with no refusal before: served.
			dial(t, w, a, 1)
			w.Do(t, "close %d", w.Do(t, "accept %d", a[0])[0])

			w.Do(t, "limit 32")
			if fill := w.Do(t, "fill"); fill[1] != int(unix.EMFILE) {
				t.Fatalf("fill stopped with errno %d, want EMFILE", fill[1])
			}
			ca := dial(t, w, a, 3)
			dial(t, w, b, 2)
			if n := w.Do(t, "retry %d 4", a[0])[0]; n != 4 {
				t.Fatalf("%d accepts on port %d failed with EMFILE, want 4", n, pa)
			}
			if n := w.Do(t, "retry %d 3", b[0])[0]; n != 3 {
				t.Fatalf("%d accepts on port %d failed with EMFILE, want 3", n, pb)
			}
			// Room for one: the connection is answered, which ends the drain.
			w.Do(t, "unfill 1")
			w.Do(t, "serve %d", w.Do(t, "accept %d", a[0])[0])
			if got := answer(t, ca[0]); got != "hello\n" {
				t.Errorf("the served client got %q", got)
			}
			// Refused again, then two accepts: the first connection is
			// still open at the second accept, so it is being served and
			// the drain is over; closing both untouched drops nobody.
			w.Do(t, "fill")
			if n := w.Do(t, "retry %d 1", a[0])[0]; n != 1 {
				t.Fatalf("%d accepts failed with EMFILE, want 1", n)
			}
			w.Do(t, "unfill 2")
			f1 := w.Do(t, "accept %d", a[0])[0]
			f2 := w.Do(t, "accept %d", a[0])[0]
			w.Do(t, "close %d", f2)
			w.Do(t, "close %d", f1)
			rec.drain(t, tr)

			p, _, err := tr.Process(w.PID)
			if err != nil {
				t.Fatal(err)
			}
			wantRefused := map[uint16]uint64{pa: 5, pb: 3}
			if !maps.Equal(p.RefusedByPort, wantRefused) || p.DroppedByPort != nil || p.RefusedConnections != 8 {
				t.Errorf("refused %v (%d in all), dropped %v; want %v (8), none dropped",
					p.RefusedByPort, p.RefusedConnections, p.DroppedByPort, wantRefused)
			}
			want := []uint16{pa, pa, pa, pa, pb, pb, pb, pa}
			if got := acceptPorts(rec, w.PID); !slices.Equal(got, want) {
				t.Errorf("listen_port of the accept4 error records %v, want %v", got, want)
			}
			ports, err := tr.Kernel().Ports()
			if err != nil {
				t.Fatal(err)
			}
			got := byPortOf(w.PID, ports)
			if got[pa].Refused != 5 || got[pa].Draining || got[pb].Refused != 3 || !got[pb].Draining {
				t.Errorf("Ports() = %+v, want port %d: 5 refused, drain over; port %d: 3 refused, draining", got, pa, pb)
			}

			// The drain on b ends with the process.
			w.Close(t)
			rec.drain(t, tr)
			if exit := exitRecord(t, rec, w.PID); !maps.Equal(exit.RefusedByPort, wantRefused) || exit.DroppedByPort != nil {
				t.Errorf("exit record: refused %v, dropped %v", exit.RefusedByPort, exit.DroppedByPort)
			}
			assertGatesClosed(t, tr)
			if ports, _ := tr.Kernel().Ports(); len(byPortOf(w.PID, ports)) != 0 {
				t.Errorf("per-port counts of the exited process remain: %+v", ports)
			}
		})
	}
}

func TestLibuvsDrainOfItsListenQueueCountsEveryDroppedClientPerPort(t *testing.T) {
	for _, mode := range portModes {
		t.Run(mode.name, func(t *testing.T) {
			tr, w, rec := startAcceptor(t, mode.cfg)
			a, b := w.Do(t, "listen"), w.Do(t, "listen")
			pa, pb := uint16(a[1]), uint16(b[1])
			w.Do(t, "spare")

			// Accepted and closed untouched with no refusal before: served.
			dial(t, w, a, 1)
			w.Do(t, "close %d", w.Do(t, "accept %d", a[0])[0])

			w.Do(t, "limit 32")
			w.Do(t, "fill")
			lost := dial(t, w, a, 4)
			lost = append(lost, dial(t, w, b, 3)...)
			// uvserve answers accepted, dropped, refused, spare fd.
			if r := w.Do(t, "uvserve %d", a[0]); r[0] != 0 || r[1] != 4 || r[2] != 1 {
				t.Fatalf("uvserve on port %d: %v, want 4 dropped after 1 refusal", pa, r)
			}
			if r := w.Do(t, "uvserve %d", b[0]); r[0] != 0 || r[1] != 3 || r[2] != 1 {
				t.Fatalf("uvserve on port %d: %v, want 3 dropped after 1 refusal", pb, r)
			}
			assertGatesClosed(t, tr) // the drains ended with EAGAIN

			// After the drain, accept and close untouched: not a drop.
			w.Do(t, "limit 64")
			dial(t, w, a, 2)
			for range 2 {
				w.Do(t, "close %d", w.Do(t, "accept %d", a[0])[0])
			}
			// A second drain of a.
			w.Do(t, "fill")
			lost = append(lost, dial(t, w, a, 2)...)
			if r := w.Do(t, "uvserve %d", a[0]); r[1] != 2 || r[2] != 1 {
				t.Fatalf("uvserve on port %d: %v, want 2 dropped after 1 refusal", pa, r)
			}
			if !droppedAll(t, lost) {
				t.Fatal("the drained clients got a response")
			}
			rec.drain(t, tr)

			wantRefused := map[uint16]uint64{pa: 2, pb: 1}
			wantDropped := map[uint16]uint64{pa: 6, pb: 3}
			p, _, err := tr.Process(w.PID)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(p.RefusedByPort, wantRefused) || !maps.Equal(p.DroppedByPort, wantDropped) {
				t.Errorf("refused %v, dropped %v; want %v and %v", p.RefusedByPort, p.DroppedByPort, wantRefused, wantDropped)
			}
			if got, want := acceptPorts(rec, w.PID), []uint16{pa, pb, pa}; !slices.Equal(got, want) {
				t.Errorf("listen_port of the accept4 error records %v, want %v", got, want)
			}
			ports, err := tr.Kernel().Ports()
			if err != nil {
				t.Fatal(err)
			}
			got := byPortOf(w.PID, ports)
			if got[pa].Dropped != 6 || got[pb].Dropped != 3 || got[pa].Draining || got[pb].Draining {
				t.Errorf("Ports() = %+v, want 6 and 3 dropped, no drain on", got)
			}
			assertGatesClosed(t, tr)
			if s, err := tr.Stats(); err != nil || s.PortsMapFull != 0 {
				t.Errorf("ports_map_full %d (%v)", s.PortsMapFull, err)
			}

			w.Close(t)
			rec.drain(t, tr)
			exit := exitRecord(t, rec, w.PID)
			if !maps.Equal(exit.RefusedByPort, wantRefused) || !maps.Equal(exit.DroppedByPort, wantDropped) {
				t.Errorf("exit record: refused %v, dropped %v", exit.RefusedByPort, exit.DroppedByPort)
			}
		})
	}
}

func TestANodeServerAtItsFDLimitHasItsDroppedClientsCountedForItsPort(t *testing.T) {
	testutil.RequireRoot(t)
	node := testutil.RequireNode(t)
	const limit, clients = 64, 8
	script := filepath.Join(testutil.RepoRoot(t), "testdata", "workloads", "httpserver.js")
	// Node raises its soft limit to the hard one: set both.
	cmd := exec.Command("sh", "-c", fmt.Sprintf("ulimit -n %d && exec %s %s", limit, node, script))
	in, r := testutil.StartPiped(t, cmd)
	lines := make(chan string, 2)
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- line
		}
	}()
	next := func() string {
		select {
		case line := <-lines:
			return line
		case <-time.After(30 * time.Second):
			t.Fatal("node did not answer within 30s")
		}
		return ""
	}
	line := next()
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ready" {
		t.Fatalf("node said %q", line)
	}
	port, _ := strconv.Atoi(f[1])
	pid := cmd.Process.Pid
	tr := load(t, Config{PIDs: []int{pid}, ErrorsOnly: true, CountOnly: true})

	// One client after the other, each waiting for its answer.
	noResponse := 0
	for range clients {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if a := answer(t, c); a == "reset" || a == "closed" {
			noResponse++
		}
		c.Close()
	}
	// With room again, a client is answered, and not counted.
	io.WriteString(in, "free\n")
	if line := next(); line != "freed\n" {
		t.Fatalf("node said %q, want freed", line)
	}
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	if a := answer(t, c); !strings.HasSuffix(a, "hello\n") {
		t.Errorf("with room again, the client got %q", a)
	}
	c.Close()
	(&recorder{}).drain(t, tr)

	p, ok, err := tr.Process(pid)
	if err != nil || !ok {
		t.Fatalf("no counters for node (%v)", err)
	}
	if noResponse != clients {
		t.Errorf("%d of %d clients got no response, want all", noResponse, clients)
	}
	if got := p.DroppedByPort[uint16(port)]; got != uint64(noResponse) || len(p.DroppedByPort) != 1 {
		t.Errorf("dropped by port %v, want %d for port %d: the clients that got no response", p.DroppedByPort, noResponse, port)
	}
	// Each drain starts with one refusal; a client may come while the
	// last one still drains.
	if got := p.RefusedByPort[uint16(port)]; got < 1 || got > clients || len(p.RefusedByPort) != 1 {
		t.Errorf("refused by port %v, want 1 to %d for port %d", p.RefusedByPort, clients, port)
	}
	t.Logf("node: %d clients dropped after %d refused accepts", p.DroppedByPort[uint16(port)], p.RefusedByPort[uint16(port)])
	assertGatesClosed(t, tr)
}
