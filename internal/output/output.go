// Package output writes records as JSON lines, whole lines only, flushed
// at least every flush interval so that a follower sees them promptly.
package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/fdtrace/fdtrace/internal/events"
)

// Writer writes JSON lines to an underlying writer.
type Writer struct {
	mu   sync.Mutex
	buf  *bufio.Writer
	line bytes.Buffer  // the record being encoded
	enc  *json.Encoder // into line
	err  error
	stop chan struct{}
	done chan struct{}
}

// New starts a writer that flushes every interval (0: never on a timer).
func New(w io.Writer, interval time.Duration) *Writer {
	o := &Writer{buf: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	o.enc = json.NewEncoder(&o.line)
	go o.flushEvery(interval)
	return o
}

func (o *Writer) flushEvery(interval time.Duration) {
	defer close(o.done)
	if interval <= 0 {
		<-o.stop
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			o.Flush()
		case <-o.stop:
			return
		}
	}
}

// Write appends one record as one line.
func (o *Writer) Write(r events.Record) error {
	o.mu.Lock()
	err := o.write(r)
	o.mu.Unlock()
	return err
}

func (o *Writer) write(r events.Record) error {
	if o.err != nil {
		return o.err
	}
	var line []byte
	if a, ok := r.(events.JSONAppender); ok {
		// Encoded where it is buffered: while it fits, Write copies
		// nothing.
		line = append(a.AppendJSON(o.buf.AvailableBuffer()), '\n')
	} else {
		o.line.Reset()
		if err := o.enc.Encode(r); err != nil {
			return err // nothing was written
		}
		line = o.line.Bytes()
	}
	// A line that does not fit goes out in a write of its own, never
	// split across two.
	if len(line) > o.buf.Available() && o.buf.Buffered() > 0 {
		if o.err = o.buf.Flush(); o.err != nil {
			return o.err
		}
	}
	_, o.err = o.buf.Write(line)
	return o.err
}

// Flush writes out what is buffered.
func (o *Writer) Flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		o.err = o.buf.Flush()
	}
	return o.err
}

// Close stops the timer and flushes.
func (o *Writer) Close() error {
	close(o.stop)
	<-o.done
	return o.Flush()
}
