package procfs

import (
	"strings"
	"testing"
)

// /proc/net tables carry names processes chose (unix sockets'): any text
// parses without a panic, and no inode two rows claim is believed. So do
// sock_diag's messages of unix sockets.
func FuzzSocketTable(f *testing.F) {
	f.Add("unix", "Num RefCount Protocol Flags Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 1234 @name\n")
	f.Add("tcp", "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5678 1 0000000000000000 100 0 0 10 0\n")
	f.Add("tcp6", "h\n 0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 99\n")
	f.Fuzz(func(t *testing.T, table, text string) {
		out := map[uint64]Socket{}
		parseSocketTable(strings.NewReader(text), table, out)
		parseUnixDiag([]byte(text))
	})
}

// Other /proc texts fdtrace parses: limits, cgroups, file-nr, fdinfo,
// netstat.
func FuzzProcTexts(f *testing.F) {
	f.Add("Max open files            1024                 524288               files\n")
	f.Add("0::/system.slice/nginx.service\n12:memory:/docker/abc\n")
	f.Add("1408\t0\t2466170\n")
	f.Add("map_id:\t12\nmemlock:\t4096\n")
	f.Add("TcpExt: ListenOverflows ListenDrops\nTcpExt: 1 2\n")
	f.Fuzz(func(t *testing.T, text string) {
		parseLimits(text)
		CgroupPath(text)
		CgroupMatches(text, "/system.slice")
		ContainerID(text)
		ParseFileNr(text)
		BPFMapFdinfo(text)
		parseNetStat(text)
	})
}
