package events

import (
	"encoding/json"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fdtrace/fdtrace/internal/symbolize"
)

// JSONAppender is a record that encodes itself without reflection, byte
// for byte as encoding/json does.
type JSONAppender interface {
	AppendJSON(b []byte) []byte
}

// AppendJSON appends o as encoding/json would marshal it.
func (o Open) AppendJSON(b []byte) []byte {
	b = appendHead(b, o.Type, o.Time, o.PID, o.TID, o.Comm, o.Syscall)
	b = appendFD(b, o.FD, o.FDType)
	b = append(b, `,"cloexec":`...)
	b = strconv.AppendBool(b, o.Cloexec)
	if o.Path != "" {
		b = append(b, `,"path":`...)
		b = appendString(b, o.Path)
	}
	if o.Family != "" {
		b = append(b, `,"family":`...)
		b = appendString(b, o.Family)
	}
	if o.SockType != "" {
		b = append(b, `,"sock_type":`...)
		b = appendString(b, o.SockType)
	}
	if o.UserData != 0 {
		b = append(b, `,"user_data":`...)
		b = strconv.AppendUint(b, o.UserData, 10)
	}
	b = appendStack(b, o.Stack)
	return append(b, '}')
}

// AppendJSON appends c as encoding/json would marshal it.
func (c Close) AppendJSON(b []byte) []byte {
	b = appendHead(b, c.Type, c.Time, c.PID, c.TID, c.Comm, c.Syscall)
	b = appendFD(b, c.FD, c.FDType)
	return append(b, '}')
}

// AppendJSON appends e as encoding/json would marshal it.
func (e Error) AppendJSON(b []byte) []byte {
	b = appendHead(b, e.Type, e.Time, e.PID, e.TID, e.Comm, e.Syscall)
	b = append(b, `,"errno":`...)
	b = appendString(b, e.Errno)
	b = append(b, `,"open_fds":`...)
	b = strconv.AppendInt(b, e.OpenFDs, 10)
	b = append(b, `,"fd_limit":`...)
	b = strconv.AppendUint(b, e.FDLimit, 10)
	if e.Path != "" {
		b = append(b, `,"path":`...)
		b = appendString(b, e.Path)
	}
	if e.ListenPort != 0 {
		b = append(b, `,"listen_port":`...)
		b = strconv.AppendUint(b, uint64(e.ListenPort), 10)
	}
	b = appendStack(b, e.Stack)
	return append(b, '}')
}

// appendFD appends the fd fields of Open and Close.
func appendFD(b []byte, fd int, fdType string) []byte {
	b = append(b, `,"fd":`...)
	b = strconv.AppendInt(b, int64(fd), 10)
	b = append(b, `,"fd_type":`...)
	return appendString(b, fdType)
}

// appendHead appends the fields Open, Close and Error begin with.
func appendHead(b []byte, typ string, t Time, pid, tid int, comm, syscall string) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, typ)
	b = append(b, `,"time":`...)
	b = t.appendJSON(b)
	b = append(b, `,"pid":`...)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, `,"tid":`...)
	b = strconv.AppendInt(b, int64(tid), 10)
	b = append(b, `,"comm":`...)
	b = appendString(b, comm)
	b = append(b, `,"syscall":`...)
	return appendString(b, syscall)
}

// appendJSON is MarshalJSON without the layout parsing of AppendFormat,
// which took a third of the time of encoding a record, and with the text
// of the second kept: records come thousands to a second.
func (t Time) appendJSON(b []byte) []byte {
	tt := time.Time(t)
	s := lastSecond.Load()
	if s == nil || s.unix != tt.Unix() || s.loc != tt.Location() {
		if s = newSecondText(tt); s == nil {
			j, _ := t.MarshalJSON()
			return append(b, j...)
		}
		lastSecond.Store(s)
	}
	b = append(b, s.head...)
	b = appendDigits(b, tt.Nanosecond(), 9)
	return append(b, s.zone...)
}

// secondText is the text of a time around its nanoseconds, the same for a
// whole second of one location: `"2006-01-02T15:04:05.` and `Z"`.
type secondText struct {
	unix       int64
	loc        *time.Location
	head, zone []byte
}

// lastSecond is the second of the time encoded last.
var lastSecond atomic.Pointer[secondText]

// newSecondText is nil for a time RFC 3339 cannot hold.
func newSecondText(t time.Time) *secondText {
	_, offset := t.Zone()
	u := t.Add(time.Duration(offset) * time.Second).UTC()
	year, month, day := u.Date()
	if year < 0 || year > 9999 || offset <= -100*3600 || offset >= 100*3600 {
		return nil
	}
	hour, minute, sec := u.Clock()
	s := &secondText{unix: t.Unix(), loc: t.Location()}
	b := append(make([]byte, 0, 32), '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	s.head = append(b, '.')
	if offset == 0 {
		s.zone = []byte(`Z"`)
		return s
	}
	zone, sign := offset/60, byte('+')
	if zone < 0 {
		zone, sign = -zone, '-'
	}
	b = []byte{sign}
	b = appendDigits(b, zone/60, 2)
	b = append(b, ':')
	b = appendDigits(b, zone%60, 2)
	s.zone = append(b, '"')
	return s
}

// appendDigits appends n >= 0 zero-padded to width digits; n must fit.
func appendDigits(b []byte, n, width int) []byte {
	b = append(b, "000000000"[:width]...)
	for i := len(b) - 1; n > 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return b
}

// appendStack appends a non-empty stack with encoding/json: stacks are
// rare next to the records they come in.
func appendStack(b []byte, stack []symbolize.Frame) []byte {
	if len(stack) == 0 {
		return b
	}
	j, err := json.Marshal(stack)
	if err != nil { // a Frame has nothing that fails to marshal
		panic(err)
	}
	b = append(b, `,"stack":`...)
	return append(b, j...)
}

const hexDigits = "0123456789abcdef"

// jsonSafe marks the ASCII bytes encoding/json writes as they are.
var jsonSafe = func() (safe [utf8.RuneSelf]bool) {
	for c := byte(0x20); c < utf8.RuneSelf; c++ {
		safe[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return safe
}()

// appendString quotes s as encoding/json does with HTML escaping on:
// invalid UTF-8 becomes \ufffd, and <, >, &, U+2028 and U+2029 are escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
