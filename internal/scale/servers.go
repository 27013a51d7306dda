package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
)

// GitCounts are the requests the Git server answered, by kind.
type GitCounts struct {
	RefAds  int64 `json:"refAdvertisements"` // GET info/refs (fetch or push)
	Fetches int64 `json:"fetches"`           // POST git-upload-pack
	Pushes  int64 `json:"pushes"`            // POST git-receive-pack
	// CachedAds of RefAds were answered by the advertisement cache (-git-cache).
	CachedAds int64 `json:"cachedRefAdvertisements"`
}

// Total is every request counted.
func (c GitCounts) Total() int64 { return c.RefAds + c.Fetches + c.Pushes }

func (c GitCounts) minus(o GitCounts) GitCounts {
	return GitCounts{RefAds: c.RefAds - o.RefAds, Fetches: c.Fetches - o.Fetches, Pushes: c.Pushes - o.Pushes,
		CachedAds: c.CachedAds - o.CachedAds}
}

// gitServer serves one bare repository with the real `git http-backend`
// (smart HTTP, pushes on), counting requests as they come in. At most
// workers backend processes run at once; the others queue, as behind a
// real server's fixed pool of CGI workers (unbounded, 1,000 nodes fork
// 1,000 git processes at once).
type gitServer struct {
	url     string
	srv     *http.Server
	served  chan struct{}
	backend http.Handler
	slots   chan struct{}
	ads     *adCache // nil: every ref advertisement runs the backend

	refAds, fetches, pushes atomic.Int64
}

// adCache keeps the answer to GET info/refs?service=git-upload-pack (the
// ref advertisement every fetch and ref listing begins with) until the
// repository's refs may have moved: any push through the server, or the
// harness's own commit (invalidate). Git hosting front ends cache
// advertisements the same way; the requests are still counted, and a
// stale answer could only make a compare-and-swap fail and retry, since
// git-receive-pack checks old values against the repository itself.
type adCache struct {
	mu   sync.Mutex
	gen  uint64 // bumped by invalidate: a fill begun before it is not kept
	body []byte
	hdr  http.Header
	hits atomic.Int64
}

func (c *adCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.body, c.hdr = nil, nil
}

// hit answers from the cache, when it holds the advertisement.
func (c *adCache) hit(w http.ResponseWriter) bool {
	c.mu.Lock()
	body, hdr := c.body, c.hdr
	c.mu.Unlock()
	if body == nil {
		return false
	}
	c.hits.Add(1)
	maps.Copy(w.Header(), hdr)
	w.Write(body)
	return true
}

// fill runs next and keeps its answer, unless the refs moved meanwhile.
func (c *adCache) fill(w http.ResponseWriter, r *http.Request, next http.Handler) {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	res := rec.Result()
	maps.Copy(w.Header(), res.Header)
	w.WriteHeader(res.StatusCode)
	w.Write(rec.Body.Bytes())
	if res.StatusCode != http.StatusOK {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		c.body, c.hdr = rec.Body.Bytes(), res.Header.Clone()
	}
}

func startGit(bare string, workers int, cacheAds bool) (*gitServer, error) {
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return nil, fmt.Errorf("git --exec-path: %w (is git installed? run make deps)", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		return nil, fmt.Errorf("git http-backend: %w (install git; run make deps)", err)
	}
	g := &gitServer{served: make(chan struct{}), slots: make(chan struct{}, workers)}
	if cacheAds {
		g.ads = &adCache{}
	}
	g.backend = &cgi.Handler{Path: backend, Env: []string{
		"GIT_PROJECT_ROOT=" + filepath.Dir(bare),
		"GIT_HTTP_EXPORT_ALL=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true",
	},
		// Refused compare-and-swaps ("cannot lock ref") are the protocol
		// working, and a client gone mid-answer (a timeout) is the
		// client's to report: neither is news on the harness's output.
		Stderr: io.Discard, Logger: log.New(io.Discard, "", 0)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("git server: %w", err)
	}
	g.url = "http://" + ln.Addr().String() + "/" + filepath.Base(bare)
	g.srv = &http.Server{Handler: http.HandlerFunc(g.serveHTTP), ReadHeaderTimeout: time.Minute}
	go func() {
		defer close(g.served)
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "reconciler-scale: git server: %v\n", err)
		}
	}()
	return g, nil
}

func (g *gitServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/info/refs"):
		g.refAds.Add(1)
	case strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
		g.fetches.Add(1)
	case strings.HasSuffix(r.URL.Path, "/git-receive-pack"):
		g.pushes.Add(1)
	}
	backend := g.backend
	switch {
	case g.ads == nil:
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs") && r.URL.Query().Get("service") == "git-upload-pack":
		if g.ads.hit(w) {
			return // no backend process, no worker slot
		}
		backend = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.ads.fill(w, r, g.backend) })
	case strings.HasSuffix(r.URL.Path, "/git-receive-pack"):
		defer g.ads.invalidate() // after the push: refs may have moved
	}
	select {
	case g.slots <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	defer func() { <-g.slots }()
	backend.ServeHTTP(w, r)
}

// invalidate drops cached advertisements (the harness committed).
func (g *gitServer) invalidate() {
	if g.ads != nil {
		g.ads.invalidate()
	}
}

// adHits is how many ref advertisements the cache answered.
func (g *gitServer) adHits() int64 {
	if g.ads == nil {
		return 0
	}
	return g.ads.hits.Load()
}

func (g *gitServer) counts() GitCounts {
	return GitCounts{RefAds: g.refAds.Load(), Fetches: g.fetches.Load(), Pushes: g.pushes.Load()}
}

func (g *gitServer) close() error {
	err := g.srv.Close()
	<-g.served
	return err
}

// etcdServer is a one-member etcd (in this process, or a process of its
// own) and the client connections the simulated nodes' Stores share,
// counting the requests they send (unary calls and streams opened; watch
// events and keep-alives on open streams are not requests).
type etcdServer struct {
	endpoints []string
	cluster   *embedded.Cluster // the server in this process, or nil
	process   *etcdProcess      // the server as its own (Options.EtcdCommand), or nil
	calls     atomic.Int64
	streams   atomic.Int64
	// clients are the nodes' connections (Options.EtcdConns); the
	// harness's own reader uses the first.
	clients []*clientv3.Client
	next    atomic.Int64

	mu     sync.Mutex
	byKind map[string]int64 // method ("Txn", "Range", ...; "Txn lost": a compare that failed)
	// replyBytes is the bytes the nodes received, by method, a Range by
	// what it read ("Range rollouts": the records), and the watch
	// responses ("Watch events"): what grows with the fleet squared.
	replyBytes map[string]int64
	// detail counts the ranges by the part of the key space they read
	// ("Range rollouts") and the calls that failed, by how ("Range
	// leases timed out", "Range rollouts canceled"): what a stalled run
	// asks for, and what times out.
	detail map[string]int64
}

// startEtcd starts a one-member etcd server, in this process or, with a
// command (Options.EtcdCommand), as its own, and conns client connections
// to it, which the nodes share round-robin (pick).
func startEtcd(dir string, conns int, command []string) (*etcdServer, error) {
	e := &etcdServer{byKind: map[string]int64{}, replyBytes: map[string]int64{}, detail: map[string]int64{}}
	if len(command) > 0 {
		p, endpoints, err := startEtcdProcess(command, dir)
		if err != nil {
			return nil, err
		}
		e.process, e.endpoints = p, endpoints
	} else {
		c, err := embedded.Start(dir, 1)
		if err != nil {
			return nil, err
		}
		e.cluster, e.endpoints = c, c.Endpoints()
	}
	for range max(1, conns) {
		cli, err := e.dial()
		if err != nil {
			e.close()
			return nil, err
		}
		e.clients = append(e.clients, cli)
	}
	return e, nil
}

// failure names how a call failed, for the request detail: "timed out"
// (the store's call timeout), "canceled" (the pass that made it ended
// first: a node woken again, or stopping) or "failed" with the gRPC code
// of the refusal ("failed (ResourceExhausted)": an overloaded server's
// too many requests; "failed (NotFound)": a lease gone).
func failure(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded:
		return "timed out"
	case errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled:
		return "canceled"
	}
	return "failed (" + status.Code(err).String() + ")"
}

// pick is the next client connection, round-robin.
func (e *etcdServer) pick() *clientv3.Client {
	return e.clients[int(e.next.Add(1)-1)%len(e.clients)]
}

// dial opens a client connection to the server, counting its requests.
func (e *etcdServer) dial() (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: e.endpoints, Logger: zap.NewNop(), DialTimeout: 10 * time.Second,
		DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				e.calls.Add(1)
				err := invoker(ctx, method, req, reply, cc, opts...)
				m := shortMethod(method)
				e.count(m, reply)
				what := replyKind(m, req)
				if what != m {
					e.detailed(what) // a Range, by the part of the key space it read
				}
				if err != nil { // by what it asked for, and how it failed
					e.detailed(what + " " + failure(err))
					return err
				}
				e.received(what, reply)
				return nil
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				e.streams.Add(1)
				e.count(shortMethod(method)+" stream", nil)
				s, err := streamer(ctx, desc, cc, method, opts...)
				if err != nil || shortMethod(method) != "Watch" {
					return s, err
				}
				return countedStream{ClientStream: s, e: e}, nil
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}

func (e *etcdServer) requests() int64 { return e.calls.Load() + e.streams.Load() }

// shortMethod is a gRPC method's name without its service
// ("/etcdserverpb.KV/Txn": "Txn").
func shortMethod(method string) string { return method[strings.LastIndexByte(method, '/')+1:] }

// count adds one request of a kind; a transaction whose compare failed
// also counts as "Txn lost" (an append that lost a race, a lease taken).
func (e *etcdServer) count(kind string, reply any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.byKind[kind]++
	if t, ok := reply.(*etcdserverpb.TxnResponse); ok && !t.Succeeded {
		e.byKind["Txn lost"]++
	}
}

// received adds the encoded size of a reply to kind's bytes.
func (e *etcdServer) received(kind string, reply any) {
	m, ok := reply.(proto.Message)
	if !ok {
		return
	}
	n := int64(proto.Size(m))
	e.mu.Lock()
	e.replyBytes[kind] += n
	e.mu.Unlock()
}

// replyKind names what a call's reply holds: its method, and for a Range
// the part of the key space it read (the segment after the prefix:
// "rollouts", "leases", "nodes", ...).
func replyKind(method string, req any) string {
	r, ok := req.(*etcdserverpb.RangeRequest)
	if !ok {
		return method
	}
	if parts := strings.SplitN(string(r.Key), "/", 4); len(parts) == 4 {
		return method + " " + parts[2]
	}
	return method
}

// countedStream counts the bytes of the watch responses it receives.
type countedStream struct {
	grpc.ClientStream
	e *etcdServer
}

func (s countedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil {
		s.e.received("Watch events", m)
	}
	return err
}

// detailed adds one call to a detail count.
func (e *etcdServer) detailed(what string) {
	e.mu.Lock()
	e.detail[what]++
	e.mu.Unlock()
}

// counters are copies of the counts by kind, the reply bytes and the
// detail counts, taken together.
func (e *etcdServer) counters() (kinds, bytes, detail map[string]int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.byKind), maps.Clone(e.replyBytes), maps.Clone(e.detail)
}

func (e *etcdServer) close() {
	for _, cli := range e.clients {
		cli.Close()
	}
	if e.cluster != nil {
		e.cluster.Close()
	}
	if e.process != nil {
		e.process.stop()
	}
}

// cpu is the server process's CPU time so far (0 when it runs in this
// process: it is in this process's).
func (e *etcdServer) cpu() time.Duration {
	if e.process == nil {
		return 0
	}
	return e.process.cpu()
}
