package output

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// File is an output file that rotates by size and can be reopened after
// logrotate moved it. It cuts only between lines: every write it is given
// must hold whole lines, as Writer's do.
type File struct {
	mu       sync.Mutex
	path     string
	f        *os.File
	size     int64
	maxSize  int64 // 0: never rotate
	maxFiles int
	// OnRotateError hears of a rotation that failed; writes then go on to
	// the current file, past the size, and a second later one tries again.
	OnRotateError func(error)
	retryAt       time.Time
	// OnWriteError hears, at most once a second, of writes that failed
	// (a full disk): their records are dropped and counted (Dropped),
	// and tracing goes on.
	OnWriteError func(err error, dropped uint64)
	dropped      atomic.Uint64
	saidAt       time.Time
}

// Dropped is how many records (lines) writes failed to write so far.
func (r *File) Dropped() uint64 { return r.dropped.Load() }

// Open opens path to append records to, creating it readable by its owner
// only. A symbolic link there is refused: in a directory others can write
// to, it could point at any file root may write.
func Open(path string) (*os.File, error) {
	f, err := openPrivate(path, os.O_APPEND)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link: fdtrace writes only to a file itself", path)
	}
	return f, err
}

// openPrivate opens path for writing, 0600 if it creates it, never
// through a link.
func openPrivate(path string, flags int) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|flags, 0o600)
}

// NewFile takes over f, open for writing at path: from now on File closes
// it. Past maxSize bytes (0: never) the file becomes path.1, path.1
// becomes path.2 and so on; maxFiles rotated files are kept.
func NewFile(f *os.File, path string, maxSize int64, maxFiles int) (*File, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return &File{path: path, f: f, size: st.Size(), maxSize: maxSize, maxFiles: maxFiles}, nil
}

// Write writes p, starting a new file first when p's next line would take
// the current one past the maximum size. A line longer than the maximum
// gets a file of its own.
func (r *File) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	written := 0
	for len(p) > 0 {
		chunk := r.fit(p)
		if len(chunk) == 0 {
			if time.Now().After(r.retryAt) {
				err := r.rotate()
				if err == nil {
					continue
				}
				r.retryAt = time.Now().Add(time.Second)
				if r.OnRotateError != nil {
					r.OnRotateError(err)
				}
			}
			// Out of fds, say, when fdtrace is needed most: losing the
			// records would be worse than a file past its size.
			chunk = p
			if i := bytes.IndexByte(p, '\n'); i >= 0 {
				chunk = p[:i+1]
			}
		}
		n, err := r.f.Write(chunk)
		r.size += int64(n)
		if err != nil {
			r.drop(p[n:], err)
			return written + len(p), nil
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// drop counts the lines of what could not be written: a line cut short
// counts too, and its rest starts the next write's first line.
func (r *File) drop(p []byte, err error) {
	n := uint64(bytes.Count(p, []byte{'\n'}))
	total := r.dropped.Add(n)
	if r.OnWriteError != nil && time.Since(r.saidAt) >= time.Second {
		r.saidAt = time.Now()
		r.OnWriteError(err, total)
	}
}

// fit is the part of p, whole lines, that goes into the current file.
func (r *File) fit(p []byte) []byte {
	room := r.maxSize - r.size
	if r.maxSize <= 0 || int64(len(p)) <= room {
		return p
	}
	if room > 0 {
		if i := bytes.LastIndexByte(p[:room], '\n'); i >= 0 {
			return p[:i+1]
		}
	}
	if r.size > 0 {
		return nil
	}
	if i := bytes.IndexByte(p, '\n'); i >= 0 {
		return p[:i+1]
	}
	return p
}

// rotate starts a new file. The new file is opened before anything is
// renamed, so that a failure (out of fds) leaves every file as it was and
// the current one open.
func (r *File) rotate() error {
	next := r.path + ".next"
	// Whatever is there (a link someone planted) goes: the new file is
	// ours alone.
	if err := os.Remove(next); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := openPrivate(next, os.O_EXCL|os.O_APPEND)
	if err != nil {
		return err
	}
	if err := Rotate(r.path, r.maxFiles); err != nil {
		f.Close()
		os.Remove(next)
		return err
	}
	if err := os.Rename(next, r.path); err != nil {
		f.Close()
		return err
	}
	r.f.Close()
	r.f, r.size = f, 0
	return nil
}

// Rotate moves path to path.1, path.1 to path.2, ..., keeping maxFiles
// rotated files; with maxFiles 0 it removes path. A missing or empty path
// is left alone.
func Rotate(path string, maxFiles int) error {
	// Only a regular file with something in it: not /dev/stdout, a FIFO.
	if st, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) || (err == nil && (!st.Mode().IsRegular() || st.Size() == 0)) {
		return nil
	}
	if maxFiles <= 0 {
		return os.Remove(path)
	}
	name := func(i int) string { return path + "." + strconv.Itoa(i) }
	if err := os.Remove(name(maxFiles)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for i := maxFiles - 1; i >= 1; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return os.Rename(path, name(1))
}

// Reopen opens path again, appending, and writes there from now on: after
// logrotate has moved the file away. If it cannot, writes go on to the
// file open so far.
func (r *File) Reopen() error {
	// Under the lock: a rotation in between would be undone.
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := Open(r.path)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	old := r.f
	r.f, r.size = f, st.Size()
	return old.Close()
}

// Close closes the file.
func (r *File) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

// ParseSize reads a size in bytes: a number with an optional unit, B,
// KiB, MiB, GiB (K, M, G for short) or KB, MB, GB (powers of 1000).
func ParseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "BKMGTikmgti")
	unit := s[len(num):]
	mult := int64(1)
	switch strings.ToUpper(unit) {
	case "", "B":
	case "K", "KIB":
		mult = 1 << 10
	case "M", "MIB":
		mult = 1 << 20
	case "G", "GIB":
		mult = 1 << 30
	case "KB":
		mult = 1e3
	case "MB":
		mult = 1e6
	case "GB":
		mult = 1e9
	default:
		return 0, fmt.Errorf("unknown unit %q (use B, KiB, MiB or GiB)", unit)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (such as 100MiB)", s)
	}
	if n < 0 {
		return 0, errors.New("a size must not be negative")
	}
	if n > (1<<63-1)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}
