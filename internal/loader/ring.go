package loader

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ringMemory reads the records of the events ring buffer where they lie,
// after ringbuf.Reader has waited for and read a batch's first one. The
// Reader takes a lock, loads both positions (one written by the producing
// CPU a moment ago) and stores the consumer's for every record, and copies
// it out; here a batch loads the producer's position when it has caught
// up with it and stores the consumer's once. Both read the consumer's
// position from the ring's own page, so they take turns without state of
// their own.
//
// The data pages are mapped once, where the kernel would map them twice in
// a row for records that wrap around the end: the kernel maps every page
// of a mapping at once, so each copy adds the ring's size to the RSS, and
// ringbuf.Reader has its own. A record that wraps is copied into wrapped.
type ringMemory struct {
	mu      sync.Mutex // held while records are read; close waits for it
	cons    []byte     // the consumer's page
	prod    []byte     // the producer's page, then the data pages
	consPos *uint64
	prodPos *uint64
	data    []byte
	mask    uint64
	wrapped []byte // the last record that wrapped around
}

// Bits of a record's length word (BPF_RINGBUF_BUSY_BIT, _DISCARD_BIT).
const (
	ringBusy    = 1 << 31
	ringDiscard = 1 << 30
	ringHeader  = 8 // BPF_RINGBUF_HDR_SZ
)

func newRingMemory(m *ebpf.Map) (*ringMemory, error) {
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	cons, err := unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the ring buffer's consumer page: %w", err)
	}
	prod, err := unix.Mmap(m.FD(), int64(page), page+size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(cons)
		return nil, fmt.Errorf("mapping the ring buffer's data pages: %w", err)
	}
	return &ringMemory{cons: cons, prod: prod,
		consPos: (*uint64)(unsafe.Pointer(&cons[0])), prodPos: (*uint64)(unsafe.Pointer(&prod[0])),
		data: prod[page:], mask: uint64(size - 1)}, nil
}

// available is how many bytes of records wait.
func (r *ringMemory) available() int {
	return int(atomic.LoadUint64(r.prodPos) - atomic.LoadUint64(r.consPos))
}

// read hands take the records that wait, in order, until take says it has
// no room for one (which stays), and returns how many it took. A record's
// bytes are the ring's: take copies what it keeps.
func (r *ringMemory) read(take func(raw []byte) bool) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.data == nil {
		return 0, os.ErrClosed
	}
	n := 0
	cons := atomic.LoadUint64(r.consPos)
	prod := atomic.LoadUint64(r.prodPos)
	for {
		if cons == prod {
			if prod = atomic.LoadUint64(r.prodPos); cons == prod {
				break
			}
		}
		start := cons & r.mask
		// An atomic load: the kernel clears the busy bit after writing
		// the record (its xchg orders them).
		word := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[start])))
		if word&ringBusy != 0 {
			break // not committed yet
		}
		length := uint64(word &^ (ringBusy | ringDiscard))
		next := cons + ringHeader + (length+7)&^7
		if next > prod {
			return n, fmt.Errorf("ring buffer record of %d bytes past the producer's position", length)
		}
		if word&ringDiscard == 0 && length > 0 {
			if !take(r.record(start+ringHeader, length)) {
				break
			}
			n++
		}
		cons = next
	}
	atomic.StoreUint64(r.consPos, cons)
	return n, nil
}

// record is the length bytes at offset from in the ring, which may wrap
// around its end.
func (r *ringMemory) record(from, length uint64) []byte {
	from &= r.mask
	size := r.mask + 1
	if from+length <= size {
		return r.data[from : from+length]
	}
	r.wrapped = append(append(r.wrapped[:0], r.data[from:]...), r.data[:from+length-size]...)
	return r.wrapped
}

func (r *ringMemory) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.data == nil {
		return nil
	}
	r.data = nil
	return errors.Join(unix.Munmap(r.prod), unix.Munmap(r.cons))
}
