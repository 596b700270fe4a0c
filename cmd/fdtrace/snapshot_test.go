package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

// fdmix is a running testdata/workloads/fdmix.c: 47 fds of known kinds.
type fdmix struct {
	cmd        *exec.Cmd
	pid        int
	in         io.WriteCloser
	out        *bufio.Reader
	a, b, c, d int // the ports of its listeners (c on [::1])
	dirA, dirB string
}

// startFdmix starts fdmix (under prlimit, when limits is not empty) and
// waits for its ready line.
func startFdmix(t *testing.T, netns bool, limits string) *fdmix {
	t.Helper()
	bin := testutil.BuildC(t, "fdmix", "-static")
	w := &fdmix{dirA: t.TempDir(), dirB: t.TempDir()}
	args := []string{bin}
	if netns {
		args = append(args, "--netns")
	}
	args = append(args, w.dirA, w.dirB)
	if limits != "" {
		// prlimit sets the limit and execs: the pid stays fdmix's.
		args = append([]string{"prlimit", "--nofile=" + limits}, args...)
	}
	w.cmd = exec.Command(args[0], args[1:]...)
	var err error
	if w.in, err = w.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.out = bufio.NewReader(out)
	var stderr testutil.LockedBuffer
	w.cmd.Stderr = &stderr // a pipe, like stdin and stdout
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.pid = w.cmd.Process.Pid
	t.Cleanup(func() {
		w.in.Close()
		w.cmd.Process.Kill()
		w.cmd.Wait()
	})
	line := w.line(t)
	if _, err := fmt.Sscanf(line, "ready %d %d %d %d", &w.a, &w.b, &w.c, &w.d); err != nil {
		t.Fatalf("fdmix said %q: %s", line, stderr.String())
	}
	return w
}

// line reads one line of fdmix's stdout.
func (w *fdmix) line(t *testing.T) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		line, _ := w.out.ReadString('\n')
		ch <- strings.TrimSuffix(line, "\n")
	}()
	select {
	case line := <-ch:
		return line
	case <-time.After(30 * time.Second):
		t.Fatal("fdmix did not answer within 30s")
	}
	return ""
}

func (w *fdmix) do(t *testing.T, command string) {
	t.Helper()
	if _, err := io.WriteString(w.in, command+"\n"); err != nil {
		t.Fatal(err)
	}
	if reply := w.line(t); reply != "ok" {
		t.Fatalf("fdmix %q: %q", command, reply)
	}
}

// lsofTypes runs lsof -p PID and maps its TYPE column (and, for anon
// inodes, NAME) to fdtrace's fd types, for the numbered fds only.
func lsofTypes(t *testing.T, pid int) (map[string]int, int) {
	t.Helper()
	// -F: one field per line; f fd, t TYPE, n NAME.
	out, err := exec.Command("lsof", "-n", "-P", "-w", "-p", strconv.Itoa(pid), "-F", "ftn").Output()
	if err != nil {
		t.Fatalf("lsof: %v", err)
	}
	types, total := map[string]int{}, 0
	var fd, typ, name string
	flush := func() {
		if _, err := strconv.Atoi(fd); err != nil || typ == "" {
			return // cwd, rtd, txt, mem
		}
		total++
		types[lsofType(typ, name)]++
	}
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		switch line[0] {
		case 'f':
			flush()
			fd, typ, name = line[1:], "", ""
		case 't':
			typ = line[1:]
		case 'n':
			name = line[1:]
		}
	}
	flush()
	return types, total
}

func lsofType(typ, name string) string {
	switch typ {
	case "REG":
		if strings.HasPrefix(name, "/memfd:") {
			return "memfd"
		}
		return "file"
	case "DIR", "CHR", "BLK", "LINK":
		return "file"
	case "FIFO":
		if name == "pipe" {
			return "pipe"
		}
		return "file"
	case "a_inode":
		kind, _, _ := strings.Cut(strings.Trim(name, "[]"), ":")
		switch kind {
		case "eventpoll":
			return "epoll"
		case "eventfd", "timerfd", "signalfd", "inotify", "pidfd":
			return kind
		}
		return "other"
	case "sock", "IPv4", "IPv6", "unix", "netlink", "pack", "ax25", "inet", "raw", "raw6":
		return "socket"
	}
	return "other"
}

// ssListeners runs ss in pid's network namespace: listening address ->
// "Recv-Q/Send-Q", for TCP and unix listeners.
func ssListeners(t *testing.T, pid int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, flags := range []string{"-lntH", "-lxH"} {
		b, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-n", "ss", flags).Output()
		if err != nil {
			t.Fatalf("ss %s: %v", flags, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(line)
			switch {
			case flags == "-lntH" && len(f) >= 4:
				out[f[3]] = f[1] + "/" + f[2] // State Recv-Q Send-Q Local Peer
			case flags == "-lxH" && len(f) >= 5:
				out[f[4]] = f[2] + "/" + f[3] // Netid State Recv-Q Send-Q Local ...
			}
		}
	}
	return out
}

func TestSnapshotOfAProcessInItsOwnNetworkNamespaceMatchesProcLsofAndSs(t *testing.T) {
	testutil.RequireRoot(t) // a network namespace of its own, and lsof of another user's process
	w := startFdmix(t, true, "1024:4096")
	res := runFdtrace(t, "", "snapshot", "-p", strconv.Itoa(w.pid), "--json")
	if res.code != 0 || res.stderr != "" {
		t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
	recs := readRecords(t, res.stdout)
	if len(recs) != 1 || recs[0].str("type") != "snapshot" {
		t.Fatalf("want one snapshot record, got %v", recs)
	}
	s := recs[0]
	if s.num("pid") != w.pid || s.str("comm") != "fdmix" || s.num("open_fds") != 47 ||
		s.num("fd_limit") != 1024 || s.num("fd_limit_hard") != 4096 || s["utilization"] != 47.0/1024 || s.str("level") != "ok" {
		t.Errorf("head of the snapshot: %v", s)
	}

	// The known numbers.
	byType := map[string]int{}
	for k, v := range s["by_type"].(map[string]any) {
		byType[k] = int(v.(float64))
	}
	want := map[string]int{"file": 6, "pipe": 7, "socket": 27, "epoll": 1, "eventfd": 2, "timerfd": 1,
		"signalfd": 1, "inotify": 1, "memfd": 1}
	if fmt.Sprint(byType) != fmt.Sprint(want) {
		t.Errorf("by_type %v, want %v", byType, want)
	}
	jsonOf := func(k string) string {
		var b bytes.Buffer
		fmt.Fprint(&b, s[k])
		return b.String()
	}
	a, b, c, d := strconv.Itoa(w.a), strconv.Itoa(w.b), strconv.Itoa(w.c), strconv.Itoa(w.d)
	sock := filepath.Join(w.dirB, "fdmix.sock")
	for k, want := range map[string]string{
		"inbound": fmt.Sprintf("[map[count:5 port:%s] map[count:2 port:%s]]", b, c),
		"listening": fmt.Sprintf("[map[address:%s fd:22 protocol:unix queue:0 queue_max:5] "+
			"map[address:127.0.0.1:%s fd:24 port:%s protocol:tcp queue:3 queue_max:7] "+
			"map[accepted:5 address:127.0.0.1:%s fd:28 port:%s protocol:tcp queue:0 queue_max:16] "+
			"map[accepted:2 address:[::1]:%s fd:39 port:%s protocol:tcp queue:0 queue_max:4] "+
			"map[address:127.0.0.1:%s fd:44 port:%s protocol:tcp queue:2 queue_max:1]]", sock, a, a, b, b, c, c, d, d),
		"directories": fmt.Sprintf("[map[count:4 dir:%s] map[count:2 dir:%s]]", w.dirA, w.dirB),
		"file_kinds":  "map[regular:6]",
	} {
		if got := jsonOf(k); got != want {
			t.Errorf("%s\n got %s\nwant %s", k, got, want)
		}
	}
	out := map[string]int{}
	for _, e := range s["outbound"].([]any) {
		e := e.(map[string]any)
		out[e["endpoint"].(string)] = int(e["count"].(float64))
	}
	if fmt.Sprint(out) != fmt.Sprint(map[string]int{"127.0.0.1:" + b: 5, "127.0.0.1:" + a: 3, "127.0.0.1:" + d: 2, "[::1]:" + c: 2}) {
		t.Errorf("outbound %v", out)
	}
	// fdmix made two connection attempts that overflowed D's queue, in a
	// namespace of its own: the counters are exact.
	if s.num("listen_overflows") != 2 || s.num("listen_drops") != 2 {
		t.Errorf("listen_overflows %d, listen_drops %d; want 2 and 2", s.num("listen_overflows"), s.num("listen_drops"))
	}
	// Its unix sockets were asked of sock_diag, in its namespace.
	if got := s.str("unix_sockets_from"); got != "sock_diag" {
		t.Errorf("unix_sockets_from %q, want sock_diag", got)
	}

	// /proc/PID/fd: the same total and the same types, fd by fd.
	fds := testutil.ProcFDs(t, w.pid)
	procTypes := map[string]int{}
	for _, fd := range fds {
		target, err := procfs.FDTarget(w.pid, fd)
		if err != nil {
			t.Fatal(err)
		}
		procTypes[procfs.TargetType(target)]++
	}
	if len(fds) != 47 || fmt.Sprint(procTypes) != fmt.Sprint(byType) {
		t.Errorf("/proc/%d/fd: %d fds %v; snapshot %v", w.pid, len(fds), procTypes, byType)
	}

	// lsof: the same total and the same types.
	lsof, total := lsofTypes(t, w.pid)
	if total != 47 || fmt.Sprint(lsof) != fmt.Sprint(byType) {
		t.Errorf("lsof -p %d: %d fds %v; snapshot %v", w.pid, total, lsof, byType)
	}

	// ss in its namespace: the same queues.
	wantSS := map[string]string{sock: "0/5", "127.0.0.1:" + a: "3/7", "127.0.0.1:" + b: "0/16", "[::1]:" + c: "0/4", "127.0.0.1:" + d: "2/1"}
	if got := ssListeners(t, w.pid); fmt.Sprint(got) != fmt.Sprint(wantSS) {
		t.Errorf("ss -ln in its namespace: %v, want %v", got, wantSS)
	}

	// The text says the same on one screen (compared with single spaces).
	res = runFdtrace(t, "", "snapshot", "-p", strconv.Itoa(w.pid))
	var text []string
	for _, line := range strings.Split(res.stdout, "\n") {
		text = append(text, strings.Join(strings.Fields(line), " "))
	}
	for _, want := range []string{
		fmt.Sprintf("pid %d (fdmix): 47 fds open, limit 1024 (hard 4096), 4.6%% used: ok", w.pid),
		"socket 27",
		"tcp4 18 ESTABLISHED 15, LISTEN 3",
		"tcp6 5 ESTABLISHED 4, LISTEN 1",
		"unix stream 3 CONNECTED 2, LISTEN 1",
		"unix sockets from sock_diag",
		"file 6 regular 6",
		"tcp 127.0.0.1:" + a + " 24 3 7 0",
		"tcp 127.0.0.1:" + d + " 44 2 1 0 full: new connections are dropped",
		"unix " + sock + " 22 0 5",
		"ListenOverflows 2, ListenDrops 2 (TcpExt, since its network namespace began): connections have been refused",
		":" + b + " 5",
		"127.0.0.1:" + a + " 3",
		w.dirA + " 4",
	} {
		if !slices.Contains(text, want) {
			t.Errorf("text snapshot has no line %q:\n%s", want, res.stdout)
		}
	}
}

func TestSnapshotOfSeveralPIDsGivesOneEachAndFailsForAMissingOne(t *testing.T) {
	w := startFdmix(t, false, "")
	res := runFdtrace(t, "", "snapshot", "-p", strconv.Itoa(w.pid), "-p", "999999999", "-p", strconv.Itoa(w.pid), "--json")
	if res.code != 1 || res.stderr != "fdtrace: pid 999999999: no such process\n" {
		t.Errorf("exit %d, stderr %q; want 1 and one line for the missing pid", res.code, res.stderr)
	}
	recs := readRecords(t, res.stdout)
	if len(recs) != 2 || recs[0].num("open_fds") != 47 || recs[1].num("open_fds") != 47 {
		t.Errorf("want two snapshots of 47 fds, got %v", recs)
	}
	res = runFdtrace(t, "", "snapshot", "-p", "999999998,999999999")
	if res.code != 1 || res.stderr != "fdtrace: pid 999999998: no such process\nfdtrace: pid 999999999: no such process\n" {
		t.Errorf("two missing pids: exit %d, stderr %q", res.code, res.stderr)
	}
}

func TestSnapshotOfAProcessYouMayNotReadSaysSo(t *testing.T) {
	testutil.RequireRoot(t) // to become nobody
	cmd := exec.Command(fdtraceBin, "snapshot", "-p", "1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	res := runCmd(t, cmd, "")
	want := "fdtrace: pid 1: reading its fds: permission denied (run as root or as its owner)\n"
	if res.code != 1 || res.stderr != want || res.stdout != "" {
		t.Errorf("exit %d, stderr %q, stdout %q; want exit 1 and %q", res.code, res.stderr, res.stdout, want)
	}
}

func TestSnapshotAndBudgetRefuseBadInputInOneLine(t *testing.T) {
	assertRefused(t, []badInput{
		{"snapshot without -p", []string{"snapshot"}, 2, "fdtrace: which process? give -p PID\n"},
		{"snapshot of pid 0", []string{"snapshot", "-p", "0"}, 2, "fdtrace: --pid 0: not a process id\n"},
		{"snapshot of a pid that is no number", []string{"snapshot", "-p", "x"}, 2, "fdtrace: invalid argument \"x\""},
		{"snapshot with an argument", []string{"snapshot", "-p", "1", "extra"}, 2, "fdtrace: unexpected argument \"extra\"\n"},
		{"snapshot of a missing pid", []string{"snapshot", "-p", "999999999"}, 1, "fdtrace: pid 999999999: no such process\n"},
		{"budget without -p", []string{"budget"}, 2, "fdtrace: which process? give -p PID\n"},
		{"budget of two pids", []string{"budget", "-p", "1,2"}, 2, "fdtrace: budget measures one process: give one -p\n"},
		{"budget of a negative duration", []string{"budget", "-p", "1", "-d", "-1s"}, 2, "fdtrace: --duration must be positive\n"},
		{"budget of no duration", []string{"budget", "-p", "1", "-d", "0"}, 2, "fdtrace: --duration must be positive\n"},
		{"budget of a bad duration", []string{"budget", "-p", "1", "-d", "soon"}, 2, "fdtrace: invalid argument \"soon\""},
		{"budget sampling never", []string{"budget", "-p", "1", "-i", "0s"}, 2, "fdtrace: --interval must be positive\n"},
		{"budget with a margin below 1", []string{"budget", "-p", "1", "--margin", "0.5"}, 2, "fdtrace: --margin 0.5: must be a number, at least 1\n"},
		{"budget with a margin of NaN", []string{"budget", "-p", "1", "--margin", "NaN"}, 2, "fdtrace: --margin NaN: must be a number, at least 1\n"},
		{"budget of a missing pid", []string{"budget", "-p", "999999999", "-d", "1s"}, 1, "fdtrace: pid 999999999: no such process\n"},
	})
}

// The snapshot says once where its unix sockets came from, in JSON and in
// text; from either source, no row forged by a socket's name (see
// testutil.ForgeUnixRows) reaches it.
func TestSnapshotSaysWhereItsUnixSocketsCameFromAndTakesNoForgedRow(t *testing.T) {
	r := testutil.ForgeUnixRows(t)
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct{ force, from, text string }{
		{"", "sock_diag", "unix sockets from sock_diag"},
		{"no-unix-diag", "proc", "unix sockets from /proc/" + pid + "/net/unix (sock_diag unavailable): rows checked against the process's fds"},
	} {
		t.Run("from "+tc.from, func(t *testing.T) {
			if tc.force == "" {
				testutil.RequireUnixDiag(t)
			}
			t.Setenv("FDTRACE_FORCE_FALLBACK", tc.force)
			res := runFdtrace(t, "", "snapshot", "-p", pid, "--json")
			if res.code != 0 || res.stderr != "" {
				t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
			}
			recs := readRecords(t, res.stdout)
			if len(recs) != 1 {
				t.Fatalf("want one snapshot, got %v", recs)
			}
			if got := recs[0].str("unix_sockets_from"); got != tc.from {
				t.Errorf("unix_sockets_from %q, want %q", got, tc.from)
			}
			listening := recs[0]["listening"].([]any)
			if len(listening) != 1 || int(listening[0].(map[string]any)["fd"].(float64)) != r.TCP {
				t.Errorf("listening %v, want the TCP listener (fd %d) only", listening, r.TCP)
			}
			text := runFdtrace(t, "", "snapshot", "-p", pid)
			if text.code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", text.code, text.stderr)
			}
			if n := strings.Count(text.stdout, "unix sockets from"); n != 1 || !strings.Contains(text.stdout, "\n  "+tc.text+"\n") {
				t.Errorf("the text says %d times where unix sockets came from, want once %q:\n%s", n, tc.text, text.stdout)
			}
			for _, out := range []string{res.stdout, text.stdout} {
				if strings.Contains(out, "forged") || strings.Contains(out, "unix stream 1 LISTEN") {
					t.Errorf("a forged row was taken:\n%s", out)
				}
			}
		})
	}
}
