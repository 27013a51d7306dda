package storetest_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
	"github.com/fleetops/reconciler/internal/fleetsim"
	"github.com/fleetops/reconciler/internal/storetest"
)

func gitOpener(t testing.TB, url string) storetest.Opener {
	return func(node string, c clock.Clock) storetest.Store {
		sh, err := fleetrepo.OpenShared(context.Background(), fleetrepo.SharedOptions{URL: url,
			Identity: fleetrepo.Identity{Name: node}, Clock: c, ReportRefresh: -1})
		if err != nil {
			t.Fatal(err)
		}
		return sh
	}
}

// deadPort is a loopback address nothing listens on.
func deadPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

var bare = storetest.Factory{
	New: func(t *testing.T) storetest.Opener { return gitOpener(t, gittest.NewBare(t, nil)) },
	Unreachable: func(t *testing.T) storetest.Store {
		return gitOpener(t, "http://"+deadPort(t)+"/fleet.git")("a", clock.System{})
	},
}

var httpBackend = storetest.Factory{
	New:         func(t *testing.T) storetest.Opener { return gitOpener(t, gittest.Serve(t, gittest.NewBare(t, nil))) },
	Unreachable: bare.Unreachable,
}

var memory = storetest.Factory{
	New: func(t *testing.T) storetest.Opener {
		st := fleetsim.NewStore()
		return func(node string, c clock.Clock) storetest.Store { return st.Handle(node, c.Now, nil) }
	},
	Unreachable: func(t *testing.T) storetest.Store {
		return fleetsim.NewStore().Handle("a", time.Now, func(string, bool) fleetsim.Fault { return fleetsim.Unreachable })
	},
}

// etcdFactory runs every test on one embedded etcd member, each under its
// own key prefix.
func etcdFactory(t *testing.T) storetest.Factory { return etcdFactoryDecoding(t, false) }

// etcdFactoryDecoding is etcdFactory; with shared, the handles of each test
// decode the rollout records once between them (etcdstore.Decoded, as the
// scale harness's simulated nodes do).
func etcdFactoryDecoding(t *testing.T, shared bool) storetest.Factory {
	cluster := embedded.New(t, 1)
	var n atomic.Int64
	return storetest.Factory{
		New: func(t *testing.T) storetest.Opener {
			var d *etcdstore.Decoded
			if shared {
				d = etcdstore.NewDecoded()
			}
			return etcdOpener(t, cluster.Endpoints(), fmt.Sprintf("/test%d/reconciler/", n.Add(1)), 0, d)
		},
		Unreachable: func(t *testing.T) storetest.Store {
			return etcdOpener(t, []string{deadPort(t)}, etcdstore.DefaultPrefix, 300*time.Millisecond, nil)("a", clock.System{})
		},
	}
}

func etcdOpener(t testing.TB, endpoints []string, prefix string, timeout time.Duration, decoded *etcdstore.Decoded) storetest.Opener {
	return func(node string, c clock.Clock) storetest.Store {
		st, err := etcdstore.Open(etcdstore.Options{Endpoints: endpoints, Prefix: prefix, Identity: node,
			Clock: c, ReportRefresh: -1, OpTimeout: timeout, Decoded: decoded})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
}

func TestGitBare(t *testing.T)        { servers(t); storetest.Run(t, bare, nil) }
func TestGitHTTPBackend(t *testing.T) { servers(t); storetest.Run(t, httpBackend, &bare) }
func TestMemory(t *testing.T)         { storetest.Run(t, memory, &bare) }
func TestEtcd(t *testing.T)           { servers(t); storetest.Run(t, etcdFactory(t), &bare) }

// TestEtcdDecodedOnce: the same, every handle of a test sharing the
// decoded records.
func TestEtcdDecodedOnce(t *testing.T) {
	servers(t)
	storetest.Run(t, etcdFactoryDecoding(t, true), &bare)
}

// servers skips a test that runs git or an etcd server under -short (make
// test-unit).
func servers(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs git or etcd servers")
	}
}

// TestGitContention: 20 clients on 3 slots of a local bare repository,
// crashing holders, takeovers and stale renewals (it was fleetrepo's
// TestLeaseContention; the same run is below for every store).
func TestGitContention(t *testing.T) {
	servers(t)
	storetest.Contention(t, bare.New(t), 20, 10)
}

// TestEtcdContention: the same on an embedded etcd.
func TestEtcdContention(t *testing.T) {
	servers(t)
	storetest.Contention(t, etcdFactory(t).New(t), 20, 6)
}

func TestMemoryContention(t *testing.T) { storetest.Contention(t, memory.New(t), 20, 6) }
