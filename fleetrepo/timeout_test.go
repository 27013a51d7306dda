package fleetrepo

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSilentServerTimesOut: a Git server (or a proxy) that accepts the
// connection and never answers fails a fetch, a ref listing and a write
// after the handle's Timeout, as a transient error that names it; before,
// each waited for ever (agent --once, status and verify-commits hung).
func TestSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { // accept and say nothing; closed with the listener
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	url := "http://" + ln.Addr().String() + "/fleet.git"
	ctx := context.Background()
	d, err := OpenDesired(ctx, DesiredOptions{URL: url, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := OpenShared(ctx, SharedOptions{URL: url, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func() error{
		"desired fetch": func() error { _, err := d.Fetch(ctx); return err },
		"shared reports": func() error {
			_, err := sh.Reports(ctx)
			return err
		},
	} {
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- op() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "no answer from the repository within 200ms") || !IsTransient(err) {
				t.Errorf("%s: %v, want a transient error naming the timeout", name, err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("%s took %v", name, took)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s still waits on a silent server after 20s", name)
		}
	}
}
