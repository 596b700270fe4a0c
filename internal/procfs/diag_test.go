package procfs

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// unixDiagMsg builds a unix_diag_msg with a name (nil: none) and an
// rqlen attribute (nil: none).
func unixDiagMsg(typ, state uint8, ino uint32, name []byte, rqlen []uint32) []byte {
	m := make([]byte, 16)
	m[0], m[1], m[2] = unix.AF_UNIX, typ, state
	binary.NativeEndian.PutUint32(m[4:], ino)
	attr := func(typ uint16, data []byte) {
		a := make([]byte, (4+len(data)+3)&^3)
		binary.NativeEndian.PutUint16(a, uint16(4+len(data)))
		binary.NativeEndian.PutUint16(a[2:], typ)
		copy(a[4:], data)
		m = append(m, a...)
	}
	if name != nil {
		attr(unixDiagName, name)
	}
	if rqlen != nil {
		b := make([]byte, 8)
		binary.NativeEndian.PutUint32(b, rqlen[0])
		binary.NativeEndian.PutUint32(b[4:], rqlen[1])
		attr(unixDiagRQLen, b)
	}
	return m
}

func TestUnixDiagMessagesReadAsProcRowsWouldBe(t *testing.T) {
	const established, closed, listen = 1, 7, 10
	for _, tc := range []struct {
		name string
		msg  []byte
		want Socket
		ok   bool
	}{
		{"a listener bound to a path, its queue and backlog",
			unixDiagMsg(unix.SOCK_STREAM, listen, 555, []byte("/run/app.sock\x00"), []uint32{2, 128}),
			Socket{Inode: 555, Table: "unix", Family: "AF_UNIX", Protocol: "stream", State: "LISTEN",
				Path: "/run/app.sock", RxQueue: 2, TxQueue: 128}, true},
		{"a connected socket without a name",
			unixDiagMsg(unix.SOCK_STREAM, established, 556, nil, []uint32{3, 0}),
			Socket{Inode: 556, Table: "unix", Family: "AF_UNIX", Protocol: "stream", State: "CONNECTED", RxQueue: 3}, true},
		{"an abstract name's NULs written @, as /proc/net/unix does; its newline kept",
			unixDiagMsg(unix.SOCK_DGRAM, closed, 557, []byte("\x00ab\x00c\nd"), nil),
			Socket{Inode: 557, Table: "unix", Family: "AF_UNIX", Protocol: "dgram", State: "UNCONNECTED", Path: "@ab@c\nd"}, true},
		{"a seqpacket socket",
			unixDiagMsg(unix.SOCK_SEQPACKET, established, 558, nil, nil),
			Socket{Inode: 558, Table: "unix", Family: "AF_UNIX", Protocol: "seqpacket", State: "CONNECTED"}, true},
		{"an unknown type by its number",
			unixDiagMsg(9, closed, 559, nil, nil),
			Socket{Inode: 559, Table: "unix", Family: "AF_UNIX", Protocol: "type9", State: "UNCONNECTED"}, true},
		{"an attribute longer than the message ends the attributes",
			append(unixDiagMsg(unix.SOCK_DGRAM, closed, 560, nil, nil), 0xff, 0, unixDiagName, 0),
			Socket{Inode: 560, Table: "unix", Family: "AF_UNIX", Protocol: "dgram", State: "UNCONNECTED"}, true},
		{"a message shorter than unix_diag_msg is none", make([]byte, 15), Socket{}, false},
		{"a socket without an inode is none", unixDiagMsg(unix.SOCK_STREAM, established, 0, nil, nil), Socket{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseUnixDiag(tc.msg)
			if ok != tc.ok || got != tc.want {
				t.Errorf("parseUnixDiag = %+v, %v\nwant %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
