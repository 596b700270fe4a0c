// Package output writes records as JSON lines, whole lines only, flushed
// at least every flush interval so that a follower sees them promptly.
package output

import (
	"bufio"
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
	enc  *json.Encoder
	err  error
	stop chan struct{}
	done chan struct{}
}

// New starts a writer that flushes every interval (0: never on a timer).
func New(w io.Writer, interval time.Duration) *Writer {
	buf := bufio.NewWriterSize(w, 64<<10)
	o := &Writer{buf: buf, enc: json.NewEncoder(buf), stop: make(chan struct{}), done: make(chan struct{})}
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
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	// bufio writes whole lines unless a line exceeds its buffer.
	o.err = o.enc.Encode(r)
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
