package faultproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echo is a line echo server on loopback; got receives every line it read.
func echo(t *testing.T) (addr string, got <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	lines := make(chan string, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					s, err := r.ReadString('\n')
					if err != nil {
						return
					}
					lines <- s
					if _, err := io.WriteString(c, s); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), lines
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(context.Background(), "127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, p *Proxy) *client {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

// roundTrip sends line and reads the echo within d; err is a timeout when
// nothing came back.
func (c *client) roundTrip(line string, d time.Duration) (string, error) {
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		return "", err
	}
	return c.read(d)
}

func (c *client) read(d time.Duration) (string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	s, err := c.r.ReadString('\n')
	if len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s, err
}

func TestForwards(t *testing.T) {
	addr, _ := echo(t)
	p := newProxy(t, addr)
	c := dial(t, p)
	if got, err := c.roundTrip("hello", 5*time.Second); err != nil || got != "hello" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	if s := p.Stats(); s.Accepted != 1 || s.Open != 1 || s.Up != 6 || s.Down != 6 {
		t.Fatalf("stats = %+v, want 1 accepted and open, 6 bytes each way", s)
	}
}

func TestDelay(t *testing.T) {
	addr, _ := echo(t)
	p := newProxy(t, addr)
	p.Set(Fault{Delay: 150 * time.Millisecond})
	c := dial(t, p)
	start := time.Now()
	if got, err := c.roundTrip("slow", 5*time.Second); err != nil || got != "slow" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("round trip took %s, want at least 2 × 150ms", el)
	}
	p.Set(Fault{Delay: 150 * time.Millisecond, Dir: Down})
	start = time.Now()
	if _, err := c.roundTrip("half", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 290*time.Millisecond {
		t.Logf("delay only on the way down: %s (loaded machine?)", el)
	}
}

func TestStallHoldsThenDelivers(t *testing.T) {
	addr, lines := echo(t)
	p := newProxy(t, addr)
	c := dial(t, p)
	if _, err := c.roundTrip("before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	<-lines
	p.Set(Fault{Stall: true})
	if _, err := c.roundTrip("held", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("a stalled link answered: %v", err)
	}
	select {
	case s := <-lines:
		t.Fatalf("the server read %q through a stall", s)
	default:
	}
	p.Heal()
	if got, err := c.read(5 * time.Second); err != nil || got != "held" {
		t.Fatalf("after Heal = %q, %v; want the held line delivered", got, err)
	}
}

func TestDropAnswersThenCutOnHeal(t *testing.T) {
	addr, lines := echo(t)
	p := newProxy(t, addr)
	c := dial(t, p)
	if _, err := c.roundTrip("before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	<-lines
	// The write lands, the answer is lost.
	p.Set(Fault{Drop: true, Dir: Down})
	if _, err := c.roundTrip("lost answer", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("a dropped answer arrived: %v", err)
	}
	select {
	case s := <-lines:
		if s != "lost answer\n" {
			t.Fatalf("server read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the server under Drop on Down")
	}
	if p.Stats().Dropped == 0 {
		t.Fatal("no dropped bytes counted")
	}
	p.Heal()
	if _, err := c.read(5 * time.Second); err == nil || isTimeout(err) {
		t.Fatalf("a link that lost bytes was not cut when the fault was lifted: %v", err)
	}
	// A new connection works again.
	if got, err := dial(t, p).roundTrip("again", 5*time.Second); err != nil || got != "again" {
		t.Fatalf("after Heal = %q, %v", got, err)
	}
}

func TestBlackHoleNewConnections(t *testing.T) {
	addr, lines := echo(t)
	p := newProxy(t, addr)
	p.Set(Fault{Drop: true})
	c := dial(t, p) // accepted, as a real path would
	if _, err := c.roundTrip("void", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("black hole answered: %v", err)
	}
	select {
	case s := <-lines:
		t.Fatalf("the server read %q through a black hole", s)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestCutAndClose(t *testing.T) {
	addr, _ := echo(t)
	p := newProxy(t, addr)
	a, b := dial(t, p), dial(t, p)
	for _, c := range []*client{a, b} {
		if _, err := c.roundTrip("x", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	p.Set(Fault{Stall: true, Dir: Up})
	_, _ = io.WriteString(b.c, "stuck\n") // a pipe waiting in the stall
	time.Sleep(50 * time.Millisecond)
	p.Cut()
	for _, c := range []*client{a, b} {
		if _, err := c.read(5 * time.Second); err == nil || isTimeout(err) {
			t.Fatalf("Cut left a connection open: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Open != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.Stats().Open; n != 0 {
		t.Fatalf("%d links open after Cut", n)
	}
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("the proxy still accepts after Close")
	}
}

func TestServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newProxy(t, addr)
	c := dial(t, p)
	if _, err := c.roundTrip("anyone?", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("want the connection closed when the server is down, got %v", err)
	}
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
