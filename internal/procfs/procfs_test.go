package procfs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestTargetTypeNamesEachKindOfLink(t *testing.T) {
	for target, want := range map[string]string{
		"/etc/hosts":                 "file",
		"/dev/null":                  "file",
		"/tmp/x (deleted)":           "file",
		"socket:[12345]":             "socket",
		"pipe:[678]":                 "pipe",
		"/memfd:cache (deleted)":     "memfd",
		"anon_inode:[eventpoll]":     "epoll",
		"anon_inode:[eventfd]":       "eventfd",
		"anon_inode:[timerfd]":       "timerfd",
		"anon_inode:[signalfd]":      "signalfd",
		"anon_inode:inotify":         "inotify",
		"anon_inode:[pidfd]":         "pidfd",
		"anon_inode:[io_uring]":      "other",
		"anon_inode:bpf-map":         "other",
		"net:[4026531840]":           "other",
		"anon_inode:[userfaultfd]":   "other",
		"anon_inode:[perf_event]":    "other",
		"mnt:[4026531841]":           "other",
		"anon_inode:[fanotify]":      "other",
		"anon_inode:[timerfd] extra": "other",
	} {
		t.Run(target+" is "+want, func(t *testing.T) {
			if got := TargetType(target); got != want {
				t.Errorf("TargetType(%q) = %q, want %q", target, got, want)
			}
		})
	}
}

// fakeProc builds a /proc with one process for the tests below.
func fakeProc(t *testing.T) {
	t.Helper()
	root := t.TempDir()
	old := Root
	Root = root
	t.Cleanup(func() { Root = old })
	pid := filepath.Join(root, "42")
	for _, dir := range []string{"fd", "fdinfo"} {
		if err := os.MkdirAll(filepath.Join(pid, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for fd, target := range map[string]string{"0": "/dev/null", "3": "socket:[1]", "10": "pipe:[2]"} {
		if err := os.Symlink(target, filepath.Join(pid, "fd", fd)); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(pid, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("comm", "myservice\n")
	write("fdinfo/3", "pos:\t0\nflags:\t02000002\nmnt_id:\t8\n")
	write("fdinfo/10", "pos:\t0\nflags:\t00000000\nmnt_id:\t8\n")
	os.Mkdir(filepath.Join(root, "self"), 0o755)
}

func TestFDsListsTheFDDirectory(t *testing.T) {
	fakeProc(t)
	fds, err := FDs(42)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(fds)
	if !slices.Equal(fds, []int{0, 3, 10}) {
		t.Errorf("FDs = %v", fds)
	}
	if _, err := FDs(7); err == nil || err.Error() != "pid 7: no such process" {
		t.Errorf("FDs of a missing pid: %v", err)
	}
}

func TestCloexecIsReadFromFdinfoFlagsInOctal(t *testing.T) {
	fakeProc(t)
	if !FDCloexec(42, 3) {
		t.Error("flags 02000002 have O_CLOEXEC")
	}
	if FDCloexec(42, 10) {
		t.Error("flags 0 have no O_CLOEXEC")
	}
	if FDCloexec(42, 99) {
		t.Error("a missing fdinfo is not close-on-exec")
	}
}

func TestPIDsAndCommReadProc(t *testing.T) {
	fakeProc(t)
	pids, err := PIDs()
	if err != nil || !slices.Equal(pids, []int{42}) {
		t.Errorf("PIDs = %v, %v; want [42] (not self)", pids, err)
	}
	if comm, err := Comm(42); err != nil || comm != "myservice" {
		t.Errorf("Comm = %q, %v", comm, err)
	}
	if target, err := FDTarget(42, 3); err != nil || target != "socket:[1]" {
		t.Errorf("FDTarget = %q, %v", target, err)
	}
}

func TestSocketPeersNameBothEndsOfTCPAndUnixPaths(t *testing.T) {
	fakeProc(t)
	net := filepath.Join(Root, "42", "net")
	os.MkdirAll(net, 0o755)
	os.WriteFile(filepath.Join(net, "tcp"), []byte(
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"+
			"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0\n"+
			"   1: 0100007F:D431 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 30 10 -1\n"), 0o644)
	os.WriteFile(filepath.Join(net, "unix"), []byte(
		"Num       RefCount Protocol Flags    Type St Inode Path\n"+
			"0000000000000000: 00000002 00000000 00010000 0001 01 333 /run/app.sock\n"), 0o644)
	peers := SocketPeers(42)
	want := map[uint64]string{
		111: "tcp 127.0.0.1:8080",
		222: "tcp 127.0.0.1:54321 -> 127.0.0.1:5432",
		333: "unix /run/app.sock",
	}
	for ino, w := range want {
		if peers[ino] != w {
			t.Errorf("inode %d: %q, want %q", ino, peers[ino], w)
		}
	}
	if SocketInode("socket:[222]") != 222 || SocketInode("pipe:[1]") != 0 {
		t.Error("SocketInode misreads links")
	}
}

func TestBPFMapFdinfoGivesIDAndMemlockAndOtherFdsAreSkipped(t *testing.T) {
	mapInfo := "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1052\nmap_type:\t1\nkey_size:\t4\nvalue_size:\t8\nmax_entries:\t65536\nmap_flags:\t0x1\nmap_extra:\t0x0\nmemlock:\t524416\nmap_id:\t77\nfrozen:\t0\n"
	if id, memlock, ok := BPFMapFdinfo(mapInfo); !ok || id != "77" || memlock != 524416 {
		t.Errorf("map fdinfo: %q %d %v", id, memlock, ok)
	}
	if _, _, ok := BPFMapFdinfo("pos:\t0\nflags:\t02\nprog_id:\t7\n"); ok {
		t.Error("a program fd was taken for a map")
	}
}
