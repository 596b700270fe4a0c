package symbolize

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// errNotRegular: what a process named is a FIFO, a device, a directory.
var errNotRegular = errors.New("not a regular file")

// openInRoot opens path as process pid sees it: resolved inside its root
// (/proc/PID/root), so that no link, absolute or through "..", leads out
// of it, and no /proc magic link is followed; the file itself may be no
// link. It never blocks (a FIFO), and returns only a regular file.
func (s *Symbolizer) openInRoot(pid int, path string) (*os.File, error) {
	root, err := unix.Open(s.procPath(pid, "root"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: s.procPath(pid, "root"), Err: err}
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, strings.TrimLeft(path, "/"), &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return regular(os.NewFile(uintptr(fd), path))
}

// openRegular opens path without blocking, and only a regular file.
func openRegular(path string, flags int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return nil, err
	}
	return regular(f)
}

// regular returns f if it is a regular file, else closes it.
func regular(f *os.File) (*os.File, error) {
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s: %w", f.Name(), errNotRegular)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
