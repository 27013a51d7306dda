package fleetlab

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// The load counts answers by version and every failure: a 500, and a
// refused connection once the server is gone.
func TestLoadCountsFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 3 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("1.0.0\n"))
	})}
	go srv.Serve(ln)
	a := &Agent{Name: "n1", Port: ln.Addr().(*net.TCPAddr).Port}
	ld := StartLoad(context.Background(), []*Agent{a}, 10*time.Millisecond, time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for ld.Results()["n1"].OK < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	srv.Close()
	for len(ld.Results()["n1"].Failures) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	res := ld.Stop()["n1"]
	if res.OK < 5 || res.Versions["1.0.0"] != res.OK {
		t.Fatalf("results %+v: want at least 5 answers of 1.0.0", res)
	}
	if len(res.Failures) < 2 || res.Failures[0].Err == "" || res.Failures[0].Node != "n1" {
		t.Fatalf("failures %+v: want the 500 and a refused connection", res.Failures)
	}
}
