package procfs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FileNr is the system's count of file structures, from
// /proc/sys/fs/file-nr: the side of ENFILE.
type FileNr struct {
	Allocated uint64
	Max       uint64 // fs.file-max
}

// ReadFileNr reads /proc/sys/fs/file-nr.
func ReadFileNr() (FileNr, error) {
	b, err := os.ReadFile(filepath.Join(Root, "sys/fs/file-nr"))
	if err != nil {
		return FileNr{}, err
	}
	return ParseFileNr(string(b))
}

// ParseFileNr reads "allocated free max".
func ParseFileNr(s string) (FileNr, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return FileNr{}, errors.New("file-nr: not three numbers")
	}
	alloc, err1 := strconv.ParseUint(f[0], 10, 64)
	max, err2 := strconv.ParseUint(f[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return FileNr{}, err
	}
	return FileNr{Allocated: alloc, Max: max}, nil
}
