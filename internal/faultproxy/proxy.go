// Package faultproxy is a TCP proxy that injects network faults between a
// client and a server, for the chaos and end-to-end tests: each agent talks
// to the Git server through its own Proxy, so a fault can target one agent.
//
// A Proxy forwards bytes both ways until told otherwise with Set:
//
//   - Delay holds every chunk for a while before forwarding it (latency);
//   - Stall holds bytes until the fault is lifted; connections stay open and
//     nothing is lost (a congested or frozen path);
//   - Drop discards bytes (a black hole); connections stay open, so the
//     client waits for answers that never come. When the fault is lifted a
//     connection that lost bytes is cut, since its stream is corrupt.
//
// Each applies to both directions or to one (Up: client to server, Down:
// server to client; Drop on Down is "the write landed, the answer was
// lost"). Cut closes every open connection at once. New connections are
// accepted in every mode, as a real path does; when the server cannot be
// dialled the client's connection is closed.
//
// Entry point: New; Close stops the proxy and every goroutine it started.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Dir names the directions a fault applies to.
type Dir int

const (
	Both Dir = iota // client to server and back
	Up              // client to server only
	Down            // server to client only
)

// Fault is what the proxy does to the bytes; the zero Fault forwards them.
type Fault struct {
	Delay time.Duration // hold each chunk this long before forwarding it
	Stall bool          // hold bytes until the fault changes
	Drop  bool          // discard bytes (black hole)
	Dir   Dir           // which directions: Both (default), Up or Down
}

func (f Fault) applies(up bool) bool {
	return f.Dir == Both || (f.Dir == Up) == up
}

// Stats count the proxy's traffic since New.
type Stats struct {
	Accepted int   // connections accepted
	Open     int   // connections open now
	Up, Down int64 // bytes forwarded client to server and back
	Dropped  int64 // bytes discarded by Drop
}

// Proxy forwards TCP connections from its address to a target address.
type Proxy struct {
	ln     net.Listener
	target string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	fault   Fault
	changed chan struct{} // closed and replaced on every Set
	links   map[*link]struct{}
	stats   Stats
}

// link is one proxied connection: the client's and the server's side.
type link struct {
	client, server net.Conn
	once           sync.Once
	dead           chan struct{} // closed by close
	tainted        bool          // lost bytes to Drop: cut when the fault is lifted (p.mu)
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.dead)
		l.client.Close()
		if l.server != nil {
			l.server.Close()
		}
	})
}

// New listens on listen (e.g. "127.0.0.1:0") and forwards every connection
// to target until ctx ends or Close is called.
func New(ctx context.Context, listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen on %s: %w", listen, err)
	}
	p := &Proxy{ln: ln, target: target, changed: make(chan struct{}), links: map[*link]struct{}{}}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.wg.Add(2)
	go p.accept()
	go func() { defer p.wg.Done(); <-p.ctx.Done(); ln.Close() }()
	return p, nil
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Set replaces the current fault; bytes held by Stall flow again (or are
// dropped) according to the new one, and links that lost bytes are cut
// once Drop no longer applies.
func (p *Proxy) Set(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = f
	close(p.changed)
	p.changed = make(chan struct{})
	if !f.Drop {
		for l := range p.links {
			if l.tainted {
				l.close()
			}
		}
	}
}

// Heal lifts every fault: Set(Fault{}).
func (p *Proxy) Heal() { p.Set(Fault{}) }

// Fault is the current fault.
func (p *Proxy) Fault() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault
}

// Cut closes every open connection now; the fault stays as it is.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		l.close()
	}
}

// Stats returns the traffic counts so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Open = len(p.links)
	return s
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.cancel()
	p.Cut()
	p.wg.Wait()
	return nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed: ctx ended or Close
		}
		l := &link{client: c, dead: make(chan struct{})}
		p.mu.Lock()
		p.stats.Accepted++
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(l)
	}
}

// serve dials the target and pipes both ways until either side closes.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
		l.close()
	}()
	var d net.Dialer
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return // the server is down: the client sees its connection closed
	}
	p.mu.Lock()
	select {
	case <-l.dead: // cut while dialling
		p.mu.Unlock()
		server.Close()
		return
	default:
		l.server = server
	}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pipe(l, l.server, l.client, true); done <- struct{}{} }()
	go func() { p.pipe(l, l.client, l.server, false); done <- struct{}{} }()
	<-done // one side ended: close both, then wait for the other pipe
	l.close()
	<-done
}

// pipe copies src to dst through the fault gate; up says which direction.
func (p *Proxy) pipe(l *link, dst, src net.Conn, up bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.forward(l, dst, buf[:n], up) {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite() // pass the half-close on
					return
				}
			}
			return
		}
	}
}

// forward applies the current fault to one chunk and writes it; false
// means the link is finished.
func (p *Proxy) forward(l *link, dst net.Conn, b []byte, up bool) bool {
	for {
		p.mu.Lock()
		f, changed := p.fault, p.changed
		p.mu.Unlock()
		if !f.applies(up) {
			break
		}
		if f.Drop {
			p.mu.Lock()
			l.tainted = true
			p.stats.Dropped += int64(len(b))
			p.mu.Unlock()
			return true
		}
		if !f.Stall && f.Delay <= 0 {
			break
		}
		wait := f.Delay
		if f.Stall {
			wait = time.Hour // until the fault changes
		}
		t := time.NewTimer(wait)
		select {
		case <-p.ctx.Done():
			t.Stop()
			return false
		case <-l.dead:
			t.Stop()
			return false
		case <-changed:
			t.Stop()
			continue // decide again under the new fault
		case <-t.C:
		}
		if !f.Stall {
			break
		}
	}
	// Count before writing: once the peer has the bytes it may read the
	// stats, and it must see them counted.
	p.count(up, int64(len(b)))
	if _, err := dst.Write(b); err != nil {
		p.count(up, -int64(len(b)))
		return false
	}
	return true
}

func (p *Proxy) count(up bool, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if up {
		p.stats.Up += n
	} else {
		p.stats.Down += n
	}
}
