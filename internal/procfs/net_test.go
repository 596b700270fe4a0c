package procfs

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func writeNet(t *testing.T, name, text string) {
	t.Helper()
	dir := filepath.Join(Root, "42", "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

const tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

func TestSocketsReadEveryTableWithStatesQueuesAndEndpoints(t *testing.T) {
	fakeProc(t)
	writeNet(t, "tcp", tcpHeader+
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0\n"+
		"   1: 0100007F:D431 0100007F:1538 01 00000010:00000020 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 30 10 -1\n"+
		"   2: 0100007F:D432 0100007F:1538 06 00000000:00000000 03:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1\n")
	writeNet(t, "tcp6", tcpHeader+
		"   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0\n"+
		"   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000500000A:C350 08 00000000:00000000 00:00000000 00000000     0        0 334 1 0\n")
	writeNet(t, "udp", tcpHeader+
		"  10: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 444 2 0 0\n")
	writeNet(t, "unix", "Num       RefCount Protocol Flags    Type St Inode Path\n"+
		"0000000000000000: 00000002 00000000 00010000 0001 01 555 /run/app.sock\n"+
		"0000000000000000: 00000003 00000000 00000000 0001 03 556\n"+
		"0000000000000000: 00000002 00000000 00000000 0002 01 557 @abstract\n"+
		"0000000000000000: 00000002 00000000 00000000 0005 03 558\n")
	writeNet(t, "netlink", "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n"+
		"000000002c461857 0   0          00000000 0        0        0     2        0        666\n"+
		"000000002c461858 99  0          00000000 0        0        0     2        0        667\n")
	writeNet(t, "packet", "sk               RefCnt Type Proto  Iface R Rmem   User   Inode\n"+
		"0000000000000000 3      3    0003   2     1 0      0      777\n")

	socks, err := Sockets(42)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := map[uint64]Socket{
		111: {Inode: 111, Table: "tcp", Family: "AF_INET", Protocol: "tcp", State: "LISTEN",
			Local: ap("127.0.0.1:8080"), Remote: ap("0.0.0.0:0"), RxQueue: 3},
		222: {Inode: 222, Table: "tcp", Family: "AF_INET", Protocol: "tcp", State: "ESTABLISHED",
			Local: ap("127.0.0.1:54321"), Remote: ap("127.0.0.1:5432"), TxQueue: 16, RxQueue: 32},
		333: {Inode: 333, Table: "tcp6", Family: "AF_INET6", Protocol: "tcp", State: "LISTEN",
			Local: ap("[::1]:80"), Remote: ap("[::]:0")},
		334: {Inode: 334, Table: "tcp6", Family: "AF_INET6", Protocol: "tcp", State: "CLOSE_WAIT",
			Local: ap("[::ffff:127.0.0.1]:80"), Remote: ap("[::ffff:10.0.0.5]:50000")},
		444: {Inode: 444, Table: "udp", Family: "AF_INET", Protocol: "udp", State: "UNCONNECTED",
			Local: ap("127.0.0.1:53"), Remote: ap("0.0.0.0:0")},
		555: {Inode: 555, Table: "unix", Family: "AF_UNIX", Protocol: "stream", State: "LISTEN", Path: "/run/app.sock"},
		556: {Inode: 556, Table: "unix", Family: "AF_UNIX", Protocol: "stream", State: "CONNECTED"},
		557: {Inode: 557, Table: "unix", Family: "AF_UNIX", Protocol: "dgram", State: "UNCONNECTED", Path: "@abstract"},
		558: {Inode: 558, Table: "unix", Family: "AF_UNIX", Protocol: "seqpacket", State: "CONNECTED"},
		666: {Inode: 666, Table: "netlink", Family: "AF_NETLINK", Protocol: "route"},
		667: {Inode: 667, Table: "netlink", Family: "AF_NETLINK", Protocol: "99"},
		777: {Inode: 777, Table: "packet", Family: "AF_PACKET", Protocol: "raw"},
	}
	if len(socks) != len(want) {
		t.Errorf("%d sockets, want %d (a TIME_WAIT row has inode 0 and no socket): %v", len(socks), len(want), socks)
	}
	for ino, w := range want {
		if got := socks[ino]; got != w {
			t.Errorf("inode %d:\n got %+v\nwant %+v", ino, got, w)
		}
	}
	if socks[111].Connected() || !socks[222].Connected() || socks[333].Connected() || socks[444].Connected() {
		t.Error("Connected is wrong: only 222 has a remote end")
	}

	only, err := Sockets(42, "tcp6")
	if err != nil || len(only) != 2 {
		t.Errorf("Sockets(42, tcp6) = %v, %v; want the two tcp6 rows", only, err)
	}
	if _, err := Sockets(7); err == nil || err.Error() != "pid 7: no such process" {
		t.Errorf("Sockets of a missing pid: %v", err)
	}
	peers := SocketPeers(42)
	if peers[334] != "tcp6 127.0.0.1:80 -> 10.0.0.5:50000" || peers[333] != "tcp6 [::1]:80" {
		t.Errorf("SocketPeers writes IPv6 rows as %q and %q", peers[334], peers[333])
	}
}

func TestTCPStateNamesAreTheKernels(t *testing.T) {
	for st, want := range map[int]string{1: "ESTABLISHED", 2: "SYN_SENT", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT",
		10: "LISTEN", 12: "NEW_SYN_RECV", 0: "STATE_0", 13: "STATE_13"} {
		if got := TCPStateName(st); got != want {
			t.Errorf("TCPStateName(%d) = %q, want %q", st, got, want)
		}
	}
}

func TestNetStatPairsNamesWithValues(t *testing.T) {
	fakeProc(t)
	writeNet(t, "netstat", "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n"+
		"TcpExt: 0 12 15\n"+
		"IpExt: InNoRoutes\n"+
		"IpExt: 3\n"+
		"Broken: A B\n"+
		"Broken: 1\n")
	st, err := NetStat(42)
	if err != nil {
		t.Fatal(err)
	}
	if st["TcpExt"]["ListenOverflows"] != 12 || st["TcpExt"]["ListenDrops"] != 15 || st["IpExt"]["InNoRoutes"] != 3 {
		t.Errorf("NetStat = %v", st)
	}
	if _, ok := st["Broken"]; ok {
		t.Error("a section whose names and values differ in number is not read")
	}
	if _, err := NetStat(7); err == nil {
		t.Error("NetStat of a missing pid did not fail")
	}
}

func TestLimitsAreReadFromProcWhenPrlimitIsRefused(t *testing.T) {
	text := "Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max cpu time              unlimited            unlimited            seconds   \n" +
		"Max open files            1024                 524288               files     \n"
	if soft, hard, ok := parseLimits(text); !ok || soft != 1024 || hard != 524288 {
		t.Errorf("parseLimits = %d, %d, %v", soft, hard, ok)
	}
	if soft, _, ok := parseLimits("Max open files            unlimited            unlimited            files\n"); !ok || soft != ^uint64(0) {
		t.Errorf("unlimited: %d, %v", soft, ok)
	}
	if _, _, ok := parseLimits("Max processes 10 10 processes\n"); ok {
		t.Error("no open files row, yet ok")
	}
}

// Only unix rows carry names, so a row another table has for the same
// inode stands, whichever table is read first.
func TestAUnixRowCannotClaimASocketAnotherTableLists(t *testing.T) {
	fakeProc(t)
	writeNet(t, "tcp", tcpHeader+
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0\n")
	writeNet(t, "unix", "Num       RefCount Protocol Flags    Type St Inode Path\n"+
		"0000000000000000: 00000002 00000000 00010000 0001 01 111 /forged\n")
	for _, tables := range [][]string{{"tcp", "unix"}, {"unix", "tcp"}} {
		socks, err := Sockets(42, tables...)
		if err != nil {
			t.Fatal(err)
		}
		if s := socks[111]; len(socks) != 1 || s.Table != "tcp" || s.Path != "" {
			t.Errorf("Sockets(42, %q) = %+v; want the tcp row", tables, socks)
		}
	}
}
