// Package regfile opens files that must be regular files: artifacts,
// signatures, keys, manifests and state that a spec, a flag or a release
// names. A named pipe (FIFO) opened the usual way blocks until a writer
// comes, and a device (/dev/zero, /dev/tty) reads forever or blocks: both
// hung the agent and `verify`. Open never blocks: it opens with O_NONBLOCK,
// checks with fstat on the open descriptor (no race with a rename between
// a stat and the open) that the file is regular, and refuses anything else
// with ErrNotRegular, naming what the file is.
//
// Entry points: Open, ReadFile.
package regfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular means the path names a directory, a named pipe, a device
// or a socket where a regular file was expected.
var ErrNotRegular = errors.New("not a regular file")

// Open opens path for reading if it is a regular file (after symlinks).
// Errors wrap fs.ErrNotExist, ErrNotRegular or the system's error.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: it is %s", ErrNotRegular, Kind(fi.Mode()))}
	}
	return f, nil
}

// ReadFile reads a regular file of at most max bytes (max <= 0: no bound).
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if max > 0 {
		r = io.LimitReader(f, max+1)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if max > 0 && int64(len(b)) > max {
		return nil, fmt.Errorf("read %s: more than the %d bytes allowed", path, max)
	}
	return b, nil
}

// Kind names a file mode for people: "a named pipe (FIFO)", "a symlink".
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file (mode " + m.String() + ")"
}
