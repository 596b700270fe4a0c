package top

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/procfs"
)

// Source gives the counters at each refresh.
type Source interface {
	// Sample reads the kernel's counters of every process it has, and
	// takes the exit records that came since the last call.
	Sample() (kernel, exits []Sample, err error)
}

// Options are how often and how many times to refresh.
type Options struct {
	Interval time.Duration
	// Iterations: stop after this many refreshes; 0 runs until stopped.
	Iterations int
	// Target says what is watched, for the header.
	Target string
}

// Record is r as a process record, with the rates and the top fd type.
func (r *Row) Record() events.Process {
	errs := r.Errors
	if errs == nil {
		errs = map[string]map[string]uint64{}
	}
	return events.Process{Type: "process", Time: events.Time(r.Time), PID: r.PID, Comm: r.Comm,
		OpenFDs: r.OpenFDs, FDLimit: r.Limit, Utilization: r.Utilization,
		Opened: r.Opened, Closed: r.Closed,
		OpenedByType: byType(&r.OpenedByType), ClosedByType: byType(&r.ClosedByType),
		Errors: errs, EMFILE: r.EMFILE, ENFILE: r.ENFILE, RefusedConnections: r.Refused,
		RefusedByPort: r.RefusedByPort, DroppedByPort: r.DroppedByPort,
		Exited: r.Exited, TopFDType: r.TopType, Rates: r.Rates}
}

func byType(counts *[NumTypes]uint64) map[string]uint64 {
	var out map[string]uint64
	for i, n := range counts {
		if n > 0 {
			if out == nil {
				out = map[string]uint64{}
			}
			out[events.FDType(i).String()] = n
		}
	}
	return out
}

// RunJSON writes a record per process at once, then every interval, until
// ctx is done or the iterations are over.
func RunJSON(ctx context.Context, write func(events.Process) error, flush func() error, m *Model, src Source, o Options) error {
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		kernel, exits, err := src.Sample()
		if err != nil {
			return err
		}
		m.Update(time.Now(), kernel, exits)
		for _, r := range m.Rows(0) {
			if err := write(r.Record()); err != nil {
				return err
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if o.Iterations > 0 && n >= o.Iterations {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// screen is the state of the full-screen view between keys.
type screen struct {
	m       *Model
	hdr     Header
	editing bool
	saved   string // the filter before editing began
}

// key handles one read of input: a key, or an escape sequence. It says
// whether to quit.
func (s *screen) key(b []byte) (quit bool) {
	for len(b) > 0 {
		c := b[0]
		b = b[1:]
		if c == 0x1b && len(b) > 0 && (b[0] == '[' || b[0] == 'O') {
			// An arrow or function key: skip to the sequence's final byte.
			i := 1
			for i < len(b) && (b[i] < 0x40 || b[i] > 0x7e) {
				i++
			}
			b = b[min(i+1, len(b)):]
			continue
		}
		if c == 0x03 { // Ctrl-C: raw mode sends it as a byte
			return true
		}
		if s.editing {
			switch {
			case c == '\r' || c == '\n':
				s.editing = false
			case c == 0x1b:
				s.m.Filter, s.editing = s.saved, false
			case c == 0x7f || c == 0x08:
				if r := []rune(s.m.Filter); len(r) > 0 {
					s.m.Filter = string(r[:len(r)-1])
				}
			case c == 0x15: // Ctrl-U
				s.m.Filter = ""
			case c >= 0x20:
				s.m.Filter += string(c)
			}
			continue
		}
		switch c {
		case 'q', 'Q':
			return true
		case 'u':
			s.m.Sort = ByUtilization
		case 'g':
			s.m.Sort = ByGrowth
		case 'e':
			s.m.Sort = ByErrors
		case 'f':
			s.m.Sort = ByOpenFDs
		case 'p':
			s.m.Sort = ByPID
		case '/':
			s.saved, s.editing = s.m.Filter, true
		case 0x1b:
			s.m.Filter = ""
		}
	}
	return false
}

// rows are the rows that fit on a terminal of height lines, with the
// header to go with them.
func (s *screen) rows(height int) []Row {
	s.hdr.Sort, s.hdr.Filter, s.hdr.Editing = s.m.Sort, s.m.Filter, s.editing
	rows := s.m.Rows(Capacity(height))
	s.hdr.Total, s.hdr.Matched, s.hdr.Sums, s.hdr.Ports = s.m.Total, s.m.Matched, s.m.Sums, s.m.Ports
	return rows
}

// RunTerminal shows the full-screen view on out, reading keys from in, until
// q, Ctrl-C, ctx is done or the iterations are over. The terminal is
// restored on every way out.
func RunTerminal(ctx context.Context, in, out *os.File, m *Model, src Source, o Options) (err error) {
	s := &screen{m: m, hdr: Header{Interval: o.Interval, Target: o.Target}}
	var keys <-chan []byte
	if inFd := int(in.Fd()); term.IsTerminal(inFd) {
		old, err := term.MakeRaw(inFd)
		if err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
		defer term.Restore(inFd, old)
		kr, err := readKeys(inFd)
		if err != nil {
			return err
		}
		// Stopped before the terminal is restored: what is typed after
		// is the shell's.
		defer kr.stop()
		keys = kr.keys
	}
	// The alternate screen keeps the shell's screen as it was.
	out.WriteString("\x1b[?1049h\x1b[?25l")
	var last []string
	defer func() {
		out.WriteString("\x1b[?25h\x1b[?1049l")
		if err == nil && o.Iterations > 0 && last != nil {
			// top -n: the last screen stays, as top leaves it.
			out.WriteString(strings.Join(last, "\r\n") + "\r\n")
		}
	}()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)

	outFd := int(out.Fd())
	draw := func() {
		width, height, err := term.GetSize(outFd)
		if err != nil || width <= 0 || height <= 0 {
			width, height = 80, 24
		}
		rows := s.rows(height)
		var b strings.Builder
		for i, l := range Render(&s.hdr, rows, width, height, true) {
			fmt.Fprintf(&b, "\x1b[%d;1H%s\x1b[K", i+1, l)
		}
		b.WriteString("\x1b[J")
		out.WriteString(b.String())
		if o.Iterations > 0 {
			// No padding, no keys: what stays on the terminal at the end.
			last = Render(&s.hdr, rows, width, headerLines+2+len(rows), false)
			last = last[:len(last)-1]
		}
	}
	refresh := func() error {
		kernel, exits, err := src.Sample()
		if err != nil {
			return err
		}
		now := time.Now()
		m.Update(now, kernel, exits)
		s.hdr.Time = now
		s.hdr.FileNr, err = procfs.ReadFileNr()
		s.hdr.FileNrErr = err != nil
		return nil
	}
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		if err := refresh(); err != nil {
			return err
		}
		draw()
		if o.Iterations > 0 && n >= o.Iterations {
			return nil
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				break wait
			case <-winch:
				draw()
			case b := <-keys:
				if s.key(b) {
					return nil
				}
				draw()
			}
		}
	}
}

// keyReader reads the terminal until stopped, and never after.
type keyReader struct {
	keys         chan []byte
	quit         chan struct{}
	stopR, stopW int // a pipe that wakes the reader from its poll
	done         chan struct{}
}

func readKeys(fd int) (*keyReader, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	kr := &keyReader{keys: make(chan []byte), quit: make(chan struct{}),
		stopR: p[0], stopW: p[1], done: make(chan struct{})}
	go kr.run(fd)
	return kr, nil
}

func (kr *keyReader) run(fd int) {
	defer close(kr.done)
	buf := make([]byte, 64)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(kr.stopR), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err == unix.EINTR {
			continue
		} else if err != nil || fds[1].Revents != 0 {
			return
		}
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if n <= 0 || err != nil {
			return // the terminal went away
		}
		select {
		case kr.keys <- append([]byte(nil), buf[:n]...):
		case <-kr.quit:
			return
		}
	}
}

// stop returns once the reader has stopped.
func (kr *keyReader) stop() {
	close(kr.quit)
	unix.Write(kr.stopW, []byte{0})
	<-kr.done
	unix.Close(kr.stopR)
	unix.Close(kr.stopW)
}
