package process

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fleetops/reconciler/internal/regfile"
	"github.com/fleetops/reconciler/release"
)

// socket is one listening socket the agent holds for an app.
type socket struct {
	name    string
	key     string // network and address as the manifest names them
	bound   string // the address actually bound (differs for port 0)
	file    *os.File
	network string
}

func socketKey(l release.Listener) string { return network(l) + " " + l.Address }

// ErrSocketPath is returned (wrapped) for a unix socket path the driver
// refuses: outside its socket directories, or taken by something that is
// not a stale socket of the agent's.
var ErrSocketPath = errors.New("unix socket path refused")

// unixPath returns where a unix listen address binds: "@name" is abstract
// (no file); a relative path is under the first socket directory; an
// absolute one must be under one of them. Symlinks in the directories are
// resolved before checking. An existing file at the path is removed only
// when it is a stale socket of the agent's: a socket (not followed
// through a symlink), owned by the agent's user, that nobody listens on;
// anything else is refused and left alone.
func (d *Driver) unixPath(addr string) (string, error) {
	if strings.HasPrefix(addr, "@") {
		return addr, nil
	}
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrSocketPath, fmt.Sprintf(format, args...))
	}
	dirs := d.opts.SocketDirs
	if len(dirs) == 0 {
		return fail("the agent has no socket directory (the agent's --socket-dir, or <state-dir>/sockets)")
	}
	p := addr
	if !filepath.IsAbs(p) {
		p = filepath.Join(dirs[0], p)
		if !strings.HasPrefix(p, dirs[0]+string(filepath.Separator)) {
			return fail("%q leaves the socket directory %s", addr, dirs[0])
		}
		if err := mkdirsUnder(dirs[0], filepath.Dir(addr)); err != nil {
			return fail("%v", err)
		}
	}
	if filepath.Clean(p) != p {
		return fail("%q is not a clean path", addr)
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		return fail("directory of %s: %v", p, err)
	}
	if !slices.ContainsFunc(dirs, func(dir string) bool { return within(dir, parent) }) {
		return fail("%s is not under a socket directory of the agent (%s); use a relative path, or start the agent with --socket-dir naming its directory",
			p, strings.Join(dirs, ", "))
	}
	p = filepath.Join(parent, filepath.Base(p))
	if err := d.removeStaleSocket(p); err != nil {
		return fail("%v", err)
	}
	return p, nil
}

// mkdirsUnder creates the directories of the relative path rel under root,
// one at a time, refusing to go through a symlink or a non-directory: it
// never creates anything outside root.
func mkdirsUnder(root, rel string) error {
	dir := root
	for _, c := range strings.Split(filepath.ToSlash(rel), "/") {
		if c == "." || c == "" {
			continue
		}
		dir = filepath.Join(dir, c)
		fi, err := os.Lstat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory of the socket directory (%s): not followed", dir, fi.Mode().Type())
		}
	}
	return nil
}

// within reports whether p is dir or under it, symlinks in dir resolved (p
// is already resolved).
func within(dir, p string) bool {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// removeStaleSocket removes p when it is a socket this driver bound (the
// ledger has its device and inode) that nobody listens on any more (left
// by a dead workload); an absent p is fine; anything else is an error, and
// p is left as it is.
func (d *Driver) removeStaleSocket(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Type() != fs.ModeSocket || !ok || int(st.Uid) != os.Geteuid() || d.ledger == nil || !d.ledger.created(p, fi) {
		return fmt.Errorf("%s exists and is not a socket the agent created (%s, owner uid %v): not removed; remove it yourself or choose another address",
			p, regfile.Kind(fi.Mode()), ownerOf(fi))
	}
	c, err := net.DialTimeout("unix", p, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: a live socket, something listens on it: not removed", p)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether it is stale: %w: not removed", p, err)
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	d.ledger.forget(p)
	return nil
}

func ownerOf(fi fs.FileInfo) any {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return "unknown"
}

func network(l release.Listener) string {
	if l.Network == "" {
		return "tcp"
	}
	return l.Network
}

// openSocket binds a new listening socket for l. A unix socket's path is
// confined to the driver's socket directories (see unixPath).
func (d *Driver) openSocket(ctx context.Context, l release.Listener) (*socket, error) {
	nw, addr := network(l), l.Address
	if nw == "unix" {
		var err error
		if addr, err = d.unixPath(l.Address); err != nil {
			return nil, fmt.Errorf("listen %s %q: %w", nw, l.Address, err)
		}
	}
	ln, err := new(net.ListenConfig).Listen(ctx, nw, addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", nw, addr, err)
	}
	if nw == "unix" && !strings.HasPrefix(addr, "@") {
		if err := d.ledger.add(addr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %s %s: %w", nw, addr, err)
		}
	}
	var f *os.File
	switch ln := ln.(type) {
	case *net.TCPListener:
		f, err = ln.File()
	case *net.UnixListener:
		ln.SetUnlinkOnClose(false)
		f, err = ln.File()
	default:
		err = fmt.Errorf("unsupported listener %T", ln)
	}
	bound := ln.Addr().String()
	ln.Close() // f holds the socket open
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", nw, addr, err)
	}
	return &socket{name: l.Name, key: socketKey(l), bound: bound, file: f, network: nw}, nil
}

// takeSockets gets copies of a running workload's listening sockets with
// pidfd_getfd: fd 3+i when it is still the socket bound to bound[i],
// otherwise whichever of its fds is.
func takeSockets(pid int, ls []release.Listener, bound []string) ([]*socket, error) {
	if len(ls) != len(bound) {
		return nil, fmt.Errorf("pid %d: %d listeners but %d recorded sockets", pid, len(ls), len(bound))
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd of pid %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	var socks []*socket
	for i, l := range ls {
		fd, err := findSocket(pid, pidfd, 3+i, network(l), bound[i])
		if err != nil {
			closeSockets(socks)
			return nil, fmt.Errorf("socket %s of pid %d: %w", l.Name, pid, err)
		}
		f := os.NewFile(uintptr(fd), l.Name)
		socks = append(socks, &socket{name: l.Name, key: socketKey(l), bound: bound[i], file: f, network: network(l)})
	}
	return socks, nil
}

var errNoSocket = errors.New("no listening socket with that address")

// findSocket tries fd want first, then every fd of the process.
func findSocket(pid, pidfd, want int, nw, bound string) (int, error) {
	if fd, err := getListener(pidfd, want, nw, bound); err == nil {
		return fd, nil
	}
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1, err
	}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == want {
			continue
		}
		if fd, err := getListener(pidfd, n, nw, bound); err == nil {
			return fd, nil
		}
	}
	return -1, errNoSocket
}

// getListener copies the target's fd n and keeps it when it is a listening
// socket bound to bound.
func getListener(pidfd, n int, nw, bound string) (int, error) {
	fd, err := unix.PidfdGetfd(pidfd, n, 0)
	if err != nil {
		return -1, err
	}
	if ok, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); ok != 1 || sockName(fd, nw) != bound {
		unix.Close(fd)
		return -1, errNoSocket
	}
	return fd, nil
}

func sockName(fd int, nw string) string {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return ""
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return (&net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}).String()
	case *unix.SockaddrInet6:
		return (&net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}).String()
	case *unix.SockaddrUnix:
		if nw == "unix" {
			return sa.Name
		}
	}
	return ""
}

func closeSockets(socks []*socket) {
	for _, s := range socks {
		s.file.Close()
	}
}
