package loader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
	"github.com/fdtrace/fdtrace/internal/events"
)

// Offsets into struct fd_event and struct exit_event, taken from the
// generated types: decoding reads the fields in place, without reflection.
const (
	fdEventSize = int(unsafe.Sizeof(bpfobj.FdtraceFdEvent{}))
	fdKind      = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Kind)
	fdFdType    = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.FdType)
	fdSyscall   = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Syscall)
	fdFd        = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Fd)
	fdPid       = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Pid)
	fdTid       = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Tid)
	fdTs        = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Ts)
	fdErr       = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Err)
	fdFamily    = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Family)
	fdSockType  = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.SockType)
	fdFlags     = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Flags)
	fdPort      = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Port)
	fdPpid      = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Ppid)
	fdStackID   = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.StackId)
	fdOpenFds   = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.OpenFds)
	fdFdLimit   = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.FdLimit)
	fdUserData  = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.UserData)
	fdComm      = unsafe.Offsetof(bpfobj.FdtraceFdEvent{}.Comm)
	// A struct fd_path_event is a struct fd_event and a path.
	fdPath    = unsafe.Offsetof(bpfobj.FdtraceFdPathEvent{}.Path)
	fdPathLen = len(bpfobj.FdtraceFdPathEvent{}.Path)

	exitEventSize = int(unsafe.Sizeof(bpfobj.FdtraceExitEvent{}))
	exitKind      = unsafe.Offsetof(bpfobj.FdtraceExitEvent{}.Kind)
	exitPid       = unsafe.Offsetof(bpfobj.FdtraceExitEvent{}.Pid)
	exitTs        = unsafe.Offsetof(bpfobj.FdtraceExitEvent{}.Ts)
	exitFdLimit   = unsafe.Offsetof(bpfobj.FdtraceExitEvent{}.FdLimit)
	exitUnswept   = unsafe.Offsetof(bpfobj.FdtraceExitEvent{}.UnsweptFrom)
	exitProc      = unsafe.Offsetof(bpfobj.FdtraceExitEvent{}.Proc)
	exitErrCount  = unsafe.Offsetof(bpfobj.FdtraceExitEvent{}.ErrCount)

	procOpenBase      = unsafe.Offsetof(bpfobj.FdtraceProc{}.OpenBase)
	procClosedUntyped = unsafe.Offsetof(bpfobj.FdtraceProc{}.ClosedUntyped)
	procErrors        = unsafe.Offsetof(bpfobj.FdtraceProc{}.Errors)
	procEmfile        = unsafe.Offsetof(bpfobj.FdtraceProc{}.Emfile)
	procEnfile        = unsafe.Offsetof(bpfobj.FdtraceProc{}.Enfile)
	procRefused       = unsafe.Offsetof(bpfobj.FdtraceProc{}.Refused)
	procStartNs       = unsafe.Offsetof(bpfobj.FdtraceProc{}.StartNs)
	procDraining      = unsafe.Offsetof(bpfobj.FdtraceProc{}.Draining)
	procOpenedByType  = unsafe.Offsetof(bpfobj.FdtraceProc{}.OpenedByType)
	procClosedByType  = unsafe.Offsetof(bpfobj.FdtraceProc{}.ClosedByType)
	procComm          = unsafe.Offsetof(bpfobj.FdtraceProc{}.Comm)
	procErrKind       = unsafe.Offsetof(bpfobj.FdtraceProc{}.ErrKind)
	procErrKinds      = unsafe.Offsetof(bpfobj.FdtraceProc{}.ErrKinds)
)

// rawFdEvent is a struct fd_event, or a struct fd_path_event. Comm and Path
// stop at their NUL and point into the ring buffer sample: they are valid
// until the next read.
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
	UserData uint64
	Comm     []byte
	Path     []byte
}

func decodeFdEvent(raw []byte, e *rawFdEvent) error {
	var path []byte
	switch {
	case len(raw) >= int(fdPath)+fdPathLen:
		path = cBytes(raw[fdPath : int(fdPath)+fdPathLen])
	case len(raw) < fdEventSize:
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
		UserData: ne.Uint64(raw[fdUserData:]),
		Comm:     cBytes(raw[fdComm : fdComm+uintptr(len(bpfobj.FdtraceFdEvent{}.Comm))]),
		Path:     path,
	}
	return nil
}

// decodeExitEvent fills the generated type: exits are rare, and the
// process counters are read from it as from the procs map.
func decodeExitEvent(raw []byte, e *bpfobj.FdtraceExitEvent) error {
	if len(raw) < exitEventSize {
		return fmt.Errorf("%d bytes, want %d", len(raw), exitEventSize)
	}
	raw = raw[:exitEventSize]
	ne := binary.NativeEndian
	e.Kind = raw[exitKind]
	e.Pid = ne.Uint32(raw[exitPid:])
	e.Ts = ne.Uint64(raw[exitTs:])
	e.FdLimit = ne.Uint64(raw[exitFdLimit:])
	e.UnsweptFrom = ne.Uint32(raw[exitUnswept:])
	p, proc := &e.Proc, raw[exitProc:]
	p.OpenBase = int64(ne.Uint64(proc[procOpenBase:]))
	p.ClosedUntyped = ne.Uint64(proc[procClosedUntyped:])
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
	for i := range p.ErrKind {
		p.ErrKind[i] = ne.Uint32(proc[procErrKind+4*uintptr(i):])
		e.ErrCount[i] = ne.Uint64(raw[exitErrCount+8*uintptr(i):])
	}
	p.ErrKinds = ne.Uint32(proc[procErrKinds:])
	return nil
}

// exitErrors are the error counts an exit took out of the errors map, and
// whether there are more (TakeErrors has them).
func exitErrors(e *bpfobj.FdtraceExitEvent) (errs []ErrorCount, more bool) {
	key := ProcKey{int(e.Pid), e.Proc.StartNs}
	n := min(int(e.Proc.ErrKinds), len(e.Proc.ErrKind))
	for i, kind := range e.Proc.ErrKind[:n] {
		if e.ErrCount[i] == 0 {
			continue // noted twice (two threads at once)
		}
		errs = append(errs, ErrorCount{Proc: key, Syscall: events.Syscall(kind >> 16),
			Errno: int(kind & 0xffff), Count: e.ErrCount[i]})
	}
	return errs, int(e.Proc.ErrKinds) > len(e.Proc.ErrKind)
}

// cBytes is b up to its first NUL.
func cBytes(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// Offsets into struct raw_stack.
const (
	rawHeaderSize = int(unsafe.Offsetof(bpfobj.FdtraceRawStack{}.Data))
	rawPid        = unsafe.Offsetof(bpfobj.FdtraceRawStack{}.Pid)
	rawStackID    = unsafe.Offsetof(bpfobj.FdtraceRawStack{}.StackId)
	rawIP         = unsafe.Offsetof(bpfobj.FdtraceRawStack{}.Ip)
	rawSP         = unsafe.Offsetof(bpfobj.FdtraceRawStack{}.Sp)
	rawBP         = unsafe.Offsetof(bpfobj.FdtraceRawStack{}.Bp)
	rawPpid       = unsafe.Offsetof(bpfobj.FdtraceRawStack{}.Ppid)
	rawLen        = unsafe.Offsetof(bpfobj.FdtraceRawStack{}.Len)
	rawComm       = unsafe.Offsetof(bpfobj.FdtraceRawStack{}.Comm)
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
