// Package embedded runs etcd inside the process: one member or a cluster of
// several on loopback ports, each with its data in a directory of the
// caller's. It is for tests (storetest, e2e) and `go run ./examples/demo
// -etcd`; production fleets run their own etcd cluster and point the agents
// at it with --shared etcd://...
//
// Entry points: Start (a cluster of n members) and New (the same for a test,
// closed with it).
package embedded

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is a running etcd cluster of Members.
type Cluster struct {
	Members []*Member
}

// Member is one etcd server of a Cluster.
type Member struct {
	Name   string
	Client string // client URL, http(s)://127.0.0.1:<port>
	etcd   *embed.Etcd
	closed bool
}

// Start runs a cluster of n members with their data under dir and waits
// until every member is ready (at most 30 s). Ports are free loopback
// ports picked at start.
func Start(dir string, n int) (*Cluster, error) { return start(dir, n, nil) }

// StartTLS is Start with clients served over TLS only, requiring a client
// certificate: it writes a fresh CA and the certificates under dir and
// returns the files a client needs.
func StartTLS(dir string, n int) (*Cluster, TLSFiles, error) {
	srv, cli, err := makeTLS(filepath.Join(dir, "tls"))
	if err != nil {
		return nil, cli, fmt.Errorf("embedded etcd: %w", err)
	}
	c, err := start(dir, n, &srv)
	return c, cli, err
}

func start(dir string, n int, tls *serverTLS) (*Cluster, error) {
	if n < 1 {
		return nil, errors.New("embedded etcd: need at least one member")
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	cfgs := make([]*embed.Config, n)
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		scheme := "http"
		if tls != nil {
			scheme = "https"
			cfg.ClientTLSInfo = transport.TLSInfo{CertFile: tls.cert, KeyFile: tls.key, TrustedCAFile: tls.ca, ClientCertAuth: true}
		}
		cu, _ := url.Parse(fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]))
		pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]))
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "reconciler-embedded"
		// Quiet: a test's output is its own (etcd logs every closed
		// listener as an error when a member stops).
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		// Short heartbeats: a killed leader is replaced in well under a
		// second on loopback (defaults: 100 ms and 1 s).
		cfg.TickMs, cfg.ElectionMs = 50, 500
		cfg.BcryptCost = 4 // bcrypt's minimum: tests that turn auth on need no strong hashes
		cfgs[i] = cfg
	}
	c := &Cluster{}
	// Members of a new cluster wait for each other: start them all, then wait.
	for _, cfg := range cfgs {
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("embedded etcd: start member %s: %w", cfg.Name, err)
		}
		c.Members = append(c.Members, &Member{Name: cfg.Name, Client: cfg.AdvertiseClientUrls[0].String(), etcd: e})
	}
	for _, m := range c.Members {
		select {
		case <-m.etcd.Server.ReadyNotify():
		case err := <-m.etcd.Err():
			c.Close()
			return nil, fmt.Errorf("embedded etcd: member %s: %w", m.Name, err)
		case <-time.After(30 * time.Second):
			c.Close()
			return nil, fmt.Errorf("embedded etcd: member %s not ready after 30s", m.Name)
		}
	}
	return c, nil
}

// New starts a cluster of n members for a test, in a temporary directory,
// and closes it when the test ends.
func New(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := Start(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Endpoints are the members' client addresses, host:port, as the agent's
// --shared etcd://host:port,... takes them.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		_, hostPort, _ := strings.Cut(m.Client, "://")
		out = append(out, hostPort)
	}
	return out
}

// URL is the cluster as a --shared flag value: etcd://host:port,host:port.
func (c *Cluster) URL() string { return "etcd://" + strings.Join(c.Endpoints(), ",") }

// Leader returns the member that currently leads (nil when none does).
func (c *Cluster) Leader() *Member {
	for _, m := range c.Members {
		if !m.closed && m.etcd.Server.Leader() == m.etcd.Server.MemberID() {
			return m
		}
	}
	return nil
}

// Kill stops one member at once (as a crash of its process would, less
// the loss of unsynced data: etcd fsyncs before it acknowledges).
func (m *Member) Kill() {
	if !m.closed {
		m.closed = true
		m.etcd.Close()
	}
}

// Close stops every member still running.
func (c *Cluster) Close() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
