package loader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"
)

// Offsets into struct fd_event and struct exit_event, taken from the
// generated types: decoding reads the fields in place, without reflection.
const (
	fdEventSize = int(unsafe.Sizeof(fdtraceFdEvent{}))
	fdKind      = unsafe.Offsetof(fdtraceFdEvent{}.Kind)
	fdFdType    = unsafe.Offsetof(fdtraceFdEvent{}.FdType)
	fdSyscall   = unsafe.Offsetof(fdtraceFdEvent{}.Syscall)
	fdFd        = unsafe.Offsetof(fdtraceFdEvent{}.Fd)
	fdPid       = unsafe.Offsetof(fdtraceFdEvent{}.Pid)
	fdTid       = unsafe.Offsetof(fdtraceFdEvent{}.Tid)
	fdTs        = unsafe.Offsetof(fdtraceFdEvent{}.Ts)
	fdErr       = unsafe.Offsetof(fdtraceFdEvent{}.Err)
	fdFamily    = unsafe.Offsetof(fdtraceFdEvent{}.Family)
	fdSockType  = unsafe.Offsetof(fdtraceFdEvent{}.SockType)
	fdFlags     = unsafe.Offsetof(fdtraceFdEvent{}.Flags)
	fdPort      = unsafe.Offsetof(fdtraceFdEvent{}.Port)
	fdPpid      = unsafe.Offsetof(fdtraceFdEvent{}.Ppid)
	fdStackID   = unsafe.Offsetof(fdtraceFdEvent{}.StackId)
	fdOpenFds   = unsafe.Offsetof(fdtraceFdEvent{}.OpenFds)
	fdFdLimit   = unsafe.Offsetof(fdtraceFdEvent{}.FdLimit)
	fdComm      = unsafe.Offsetof(fdtraceFdEvent{}.Comm)
	fdPath      = unsafe.Offsetof(fdtraceFdEvent{}.Path)

	exitEventSize = int(unsafe.Sizeof(fdtraceExitEvent{}))
	exitKind      = unsafe.Offsetof(fdtraceExitEvent{}.Kind)
	exitPid       = unsafe.Offsetof(fdtraceExitEvent{}.Pid)
	exitTs        = unsafe.Offsetof(fdtraceExitEvent{}.Ts)
	exitFdLimit   = unsafe.Offsetof(fdtraceExitEvent{}.FdLimit)
	exitProc      = unsafe.Offsetof(fdtraceExitEvent{}.Proc)

	procOpenFds      = unsafe.Offsetof(fdtraceProc{}.OpenFds)
	procOpened       = unsafe.Offsetof(fdtraceProc{}.Opened)
	procClosed       = unsafe.Offsetof(fdtraceProc{}.Closed)
	procErrors       = unsafe.Offsetof(fdtraceProc{}.Errors)
	procEmfile       = unsafe.Offsetof(fdtraceProc{}.Emfile)
	procEnfile       = unsafe.Offsetof(fdtraceProc{}.Enfile)
	procRefused      = unsafe.Offsetof(fdtraceProc{}.Refused)
	procStartNs      = unsafe.Offsetof(fdtraceProc{}.StartNs)
	procDraining     = unsafe.Offsetof(fdtraceProc{}.Draining)
	procOpenedByType = unsafe.Offsetof(fdtraceProc{}.OpenedByType)
	procClosedByType = unsafe.Offsetof(fdtraceProc{}.ClosedByType)
	procComm         = unsafe.Offsetof(fdtraceProc{}.Comm)
)

// rawFdEvent is a struct fd_event. Comm and Path stop at their NUL and point
// into the ring buffer sample: they are valid until the next read.
type rawFdEvent struct {
	Kind     uint8
	FdType   uint8
	Syscall  uint16
	Fd       int32
	Pid      uint32
	Tid      uint32
	Ts       uint64
	Err      int32
	Family   uint16
	SockType uint16
	Flags    uint16
	Port     uint16
	Ppid     uint32
	StackId  uint64
	OpenFds  int64
	FdLimit  uint64
	Comm     []byte
	Path     []byte
}

func decodeFdEvent(raw []byte, e *rawFdEvent) error {
	if len(raw) < fdEventSize {
		return fmt.Errorf("%d bytes, want %d", len(raw), fdEventSize)
	}
	raw = raw[:fdEventSize]
	ne := binary.NativeEndian
	*e = rawFdEvent{
		Kind:     raw[fdKind],
		FdType:   raw[fdFdType],
		Syscall:  ne.Uint16(raw[fdSyscall:]),
		Fd:       int32(ne.Uint32(raw[fdFd:])),
		Pid:      ne.Uint32(raw[fdPid:]),
		Tid:      ne.Uint32(raw[fdTid:]),
		Ts:       ne.Uint64(raw[fdTs:]),
		Err:      int32(ne.Uint32(raw[fdErr:])),
		Family:   ne.Uint16(raw[fdFamily:]),
		SockType: ne.Uint16(raw[fdSockType:]),
		Flags:    ne.Uint16(raw[fdFlags:]),
		Port:     ne.Uint16(raw[fdPort:]),
		Ppid:     ne.Uint32(raw[fdPpid:]),
		StackId:  ne.Uint64(raw[fdStackID:]),
		OpenFds:  int64(ne.Uint64(raw[fdOpenFds:])),
		FdLimit:  ne.Uint64(raw[fdFdLimit:]),
		Comm:     cBytes(raw[fdComm : fdComm+uintptr(len(fdtraceFdEvent{}.Comm))]),
		Path:     cBytes(raw[fdPath : fdPath+uintptr(len(fdtraceFdEvent{}.Path))]),
	}
	return nil
}

// decodeExitEvent fills the generated type: exits are rare, and the
// process counters are read from it as from the procs map.
func decodeExitEvent(raw []byte, e *fdtraceExitEvent) error {
	if len(raw) < exitEventSize {
		return fmt.Errorf("%d bytes, want %d", len(raw), exitEventSize)
	}
	raw = raw[:exitEventSize]
	ne := binary.NativeEndian
	e.Kind = raw[exitKind]
	e.Pid = ne.Uint32(raw[exitPid:])
	e.Ts = ne.Uint64(raw[exitTs:])
	e.FdLimit = ne.Uint64(raw[exitFdLimit:])
	p, proc := &e.Proc, raw[exitProc:]
	p.OpenFds = int64(ne.Uint64(proc[procOpenFds:]))
	p.Opened = ne.Uint64(proc[procOpened:])
	p.Closed = ne.Uint64(proc[procClosed:])
	p.Errors = ne.Uint64(proc[procErrors:])
	p.Emfile = ne.Uint64(proc[procEmfile:])
	p.Enfile = ne.Uint64(proc[procEnfile:])
	p.Refused = ne.Uint64(proc[procRefused:])
	p.StartNs = ne.Uint64(proc[procStartNs:])
	p.Draining = ne.Uint64(proc[procDraining:])
	for i := range p.OpenedByType {
		p.OpenedByType[i] = ne.Uint64(proc[procOpenedByType+8*uintptr(i):])
	}
	for i := range p.ClosedByType {
		p.ClosedByType[i] = ne.Uint64(proc[procClosedByType+8*uintptr(i):])
	}
	for i := range p.Comm {
		p.Comm[i] = int8(proc[procComm+uintptr(i)])
	}
	return nil
}

// cBytes is b up to its first NUL.
func cBytes(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// maxComms bounds the interned comms; host-wide there are a few hundred.
const maxComms = 4096

// comms interns process names, which repeat from event to event.
type comms map[string]string

func (c comms) intern(b []byte) string {
	if s, ok := c[string(b)]; ok {
		return s
	}
	if len(c) >= maxComms {
		clear(c)
	}
	s := string(b)
	c[s] = s
	return s
}

// Offsets into struct raw_stack.
const (
	rawHeaderSize = int(unsafe.Offsetof(fdtraceRawStack{}.Data))
	rawPid        = unsafe.Offsetof(fdtraceRawStack{}.Pid)
	rawStackID    = unsafe.Offsetof(fdtraceRawStack{}.StackId)
	rawIP         = unsafe.Offsetof(fdtraceRawStack{}.Ip)
	rawSP         = unsafe.Offsetof(fdtraceRawStack{}.Sp)
	rawBP         = unsafe.Offsetof(fdtraceRawStack{}.Bp)
	rawPpid       = unsafe.Offsetof(fdtraceRawStack{}.Ppid)
	rawLen        = unsafe.Offsetof(fdtraceRawStack{}.Len)
	rawComm       = unsafe.Offsetof(fdtraceRawStack{}.Comm)
)

// rawStackEvent is a struct raw_stack; Data points into the sample.
type rawStackEvent struct {
	Pid, Ppid  uint32
	StackID    uint64
	IP, SP, BP uint64
	Comm       []byte // up to its NUL, in the sample
	Data       []byte
}

func decodeRawStack(raw []byte, e *rawStackEvent) error {
	if len(raw) < rawHeaderSize {
		return fmt.Errorf("raw stack event of %d bytes, want at least %d", len(raw), rawHeaderSize)
	}
	ne := binary.NativeEndian
	n := int(ne.Uint32(raw[rawLen:]))
	if n > len(raw)-rawHeaderSize {
		return fmt.Errorf("raw stack event holds %d bytes of stack, says %d", len(raw)-rawHeaderSize, n)
	}
	*e = rawStackEvent{Pid: ne.Uint32(raw[rawPid:]), Ppid: ne.Uint32(raw[rawPpid:]),
		StackID: ne.Uint64(raw[rawStackID:]), IP: ne.Uint64(raw[rawIP:]), SP: ne.Uint64(raw[rawSP:]),
		BP: ne.Uint64(raw[rawBP:]), Comm: cBytes(raw[rawComm : rawComm+16]),
		Data: raw[rawHeaderSize : rawHeaderSize+n]}
	return nil
}
