package snapshot

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// startFdmix starts testdata/workloads/fdmix.c (47 fds of known kinds,
// see there) and waits for its ready line; it returns the pid, the ports
// of its listeners A, B, C (IPv6) and D, and its two directories.
func startFdmix(t *testing.T) (pid int, ports [4]int, dirA, dirB string) {
	t.Helper()
	bin := testutil.BuildC(t, "fdmix", "-static")
	dirA, dirB = t.TempDir(), t.TempDir()
	cmd := exec.Command(bin, dirA, dirB)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr // a pipe: stdin, stdout and stderr are three pipes
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if _, err2 := fmt.Sscanf(line, "ready %d %d %d %d", &ports[0], &ports[1], &ports[2], &ports[3]); err != nil || err2 != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("fdmix said %q (%v): %s", line, err, stderr.String())
	}
	return cmd.Process.Pid, ports, dirA, dirB
}

func u64(n uint64) *uint64 { return &n }

func TestTakeCountsEveryKindOfFDOfALiveProcessExactly(t *testing.T) {
	pid, ports, dirA, dirB := startFdmix(t)
	a, b, c, d := ports[0], ports[1], ports[2], ports[3]
	s, err := Take(pid)
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != pid || s.Comm != "fdmix" || s.Type != "snapshot" {
		t.Errorf("pid %d comm %q type %q", s.PID, s.Comm, s.Type)
	}
	if n := len(testutil.ProcFDs(t, pid)); s.OpenFDs != 47 || n != 47 {
		t.Errorf("open_fds %d, /proc/%d/fd has %d; want 47", s.OpenFDs, pid, n)
	}
	wantTypes := map[string]int{"file": 6, "pipe": 7, "socket": 27, "epoll": 1, "eventfd": 2, "timerfd": 1,
		"signalfd": 1, "inotify": 1, "memfd": 1}
	if !mapsEqual(s.ByType, wantTypes) {
		t.Errorf("by_type %v, want %v", s.ByType, wantTypes)
	}
	if !mapsEqual(s.FileKinds, map[string]int{"regular": 6}) {
		t.Errorf("file_kinds %v, want regular 6", s.FileKinds)
	}
	soft, hard, _ := procfs.FDLimit(pid)
	if s.FDLimit != soft || s.FDLimitHard != hard || s.Utilization != float64(47)/float64(soft) {
		t.Errorf("limit %d/%d utilization %v; prlimit says %d/%d", s.FDLimit, s.FDLimitHard, s.Utilization, soft, hard)
	}
	wantSockets := []events.SocketCount{
		{Family: "AF_INET", Protocol: "tcp", State: "ESTABLISHED", Count: 15},
		{Family: "AF_INET6", Protocol: "tcp", State: "ESTABLISHED", Count: 4},
		{Family: "AF_INET", Protocol: "tcp", State: "LISTEN", Count: 3},
		{Family: "AF_UNIX", Protocol: "stream", State: "CONNECTED", Count: 2},
		{Family: "AF_INET", Protocol: "udp", State: "UNCONNECTED", Count: 1},
		{Family: "AF_INET6", Protocol: "tcp", State: "LISTEN", Count: 1},
		{Family: "AF_UNIX", Protocol: "stream", State: "LISTEN", Count: 1},
	}
	if !slices.Equal(s.Sockets, wantSockets) {
		t.Errorf("sockets\n got %v\nwant %v", s.Sockets, wantSockets)
	}
	wantIn := []events.PortCount{{Port: b, Count: 5}, {Port: c, Count: 2}}
	if !slices.Equal(s.Inbound, wantIn) {
		t.Errorf("inbound %v, want %v", s.Inbound, wantIn)
	}
	ep := func(host string, port int) string { return host + ":" + strconv.Itoa(port) }
	wantOut := []events.EndpointCount{{Endpoint: ep("127.0.0.1", b), Count: 5}, {Endpoint: ep("127.0.0.1", a), Count: 3}}
	wantOut2 := []events.EndpointCount{{Endpoint: ep("127.0.0.1", d), Count: 2}, {Endpoint: ep("[::1]", c), Count: 2}}
	slices.SortFunc(wantOut2, func(x, y events.EndpointCount) int { return strings.Compare(x.Endpoint, y.Endpoint) })
	if want := append(wantOut, wantOut2...); !slices.Equal(s.Outbound, want) {
		t.Errorf("outbound %v, want %v", s.Outbound, want)
	}
	wantDirs := []events.DirCount{{Dir: dirA, Count: 4}, {Dir: dirB, Count: 2}}
	if !slices.Equal(s.Directories, wantDirs) {
		t.Errorf("directories %v, want %v", s.Directories, wantDirs)
	}

	type listener struct {
		protocol, address string
		port              int
		queue, max        uint64
		accepted          int
	}
	var got []listener
	for _, l := range s.Listening {
		if l.Queue == nil || l.QueueMax == nil {
			t.Fatalf("listener %+v without its queue", l)
		}
		got = append(got, listener{l.Protocol, l.Address, l.Port, *l.Queue, *l.QueueMax, l.Accepted})
	}
	want := []listener{
		{"unix", filepath.Join(dirB, "fdmix.sock"), 0, 0, 5, 0},
		{"tcp", ep("127.0.0.1", a), a, 3, 7, 0},
		{"tcp", ep("127.0.0.1", b), b, 0, 16, 5},
		{"tcp", ep("[::1]", c), c, 0, 4, 2},
		{"tcp", ep("127.0.0.1", d), d, 2, 1, 0},
	}
	if !slices.Equal(got, want) {
		t.Errorf("listening\n got %+v\nwant %+v", got, want)
	}
}

func TestTakeOfAMissingProcessSaysSo(t *testing.T) {
	if _, err := Take(999999999); err == nil || err.Error() != "pid 999999999: no such process" {
		t.Errorf("Take of a missing pid: %v", err)
	}
}

// fakeFDs makes a /proc with pid 42's fd links and net tables.
func fakeFDs(t *testing.T, links map[int]string, tcp string) {
	t.Helper()
	root := t.TempDir()
	old := procfs.Root
	procfs.Root = root
	t.Cleanup(func() { procfs.Root = old })
	for _, dir := range []string{"42/fd", "42/net"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for fd, target := range links {
		if err := os.Symlink(target, filepath.Join(root, "42", "fd", strconv.Itoa(fd))); err != nil {
			t.Fatal(err)
		}
	}
	header := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	if err := os.WriteFile(filepath.Join(root, "42", "net", "tcp"), []byte(header+tcp), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestClassifySocketsTellsInboundFromOutboundByTheNamespacesListeners(t *testing.T) {
	fakeFDs(t, map[int]string{0: "/dev/null", 3: "socket:[201]", 4: "socket:[202]", 5: "socket:[203]",
		6: "socket:[204]", 7: "socket:[205]", 8: "socket:[206]"},
		// 100: another process's listener on :8080; 201: accepted on it;
		// 202: to a database; 203: connecting; 204: bound, unconnected;
		// 205: this process's listener on :9090. 206 is in no table.
		"   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0\n"+
			"   1: 0A000001:1F90 0A000009:C350 01 00000000:00000000 00:00000000 00000000     0        0 201 1 0\n"+
			"   2: 0A000001:D431 0500000A:1538 01 00000000:00000000 00:00000000 00000000     0        0 202 1 0\n"+
			"   3: 0A000001:D432 0500000A:1538 02 00000000:00000000 00:00000000 00000000     0        0 203 1 0\n"+
			"   4: 0A000001:D433 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 204 1 0\n"+
			"   5: 00000000:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 205 1 0\n")
	fds, err := ReadFDs(42)
	if err != nil {
		t.Fatal(err)
	}
	if fds, err = ClassifySockets(42, fds, "tcp"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fd := range fds {
		got = append(got, fmt.Sprintf("%d %s %d %d %s", fd.Num, fd.Type, fd.Dir, fd.Port, fd.Endpoint))
	}
	want := []string{
		"0 file 0 0 ",
		"3 socket 1 8080 ",
		"4 socket 2 0 10.0.0.5:5432",
		"5 socket 2 0 10.0.0.5:5432",
		"6 socket 0 0 ",
		"7 socket 0 0 ",
		"8 socket 0 0 ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("classified\n got %q\nwant %q", got, want)
	}

	// A socket that no table lists and that was closed meanwhile is
	// dropped, not counted as "other".
	fds, _ = ReadFDs(42)
	os.Remove(filepath.Join(procfs.Root, "42", "fd", "8"))
	if fds, _ = ClassifySockets(42, fds, "tcp"); len(fds) != 6 || fds[5].Num != 7 {
		t.Errorf("after fd 8 closed: %v", fds)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
