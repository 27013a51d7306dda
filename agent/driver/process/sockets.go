package process

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

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

func network(l release.Listener) string {
	if l.Network == "" {
		return "tcp"
	}
	return l.Network
}

// openSocket binds a new listening socket for l.
func openSocket(ctx context.Context, l release.Listener) (*socket, error) {
	nw := network(l)
	if nw == "unix" {
		_ = os.Remove(l.Address) // a stale socket file from a dead workload
	}
	ln, err := new(net.ListenConfig).Listen(ctx, nw, l.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", nw, l.Address, err)
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
		return nil, fmt.Errorf("listen %s %s: %w", nw, l.Address, err)
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
