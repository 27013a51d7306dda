package fleetlab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Failure is one request the load did not get answered.
type Failure struct {
	Node string
	Mono int64 // when it was sent
	Err  string
}

// NodeLoad is what one node's workload answered.
type NodeLoad struct {
	OK       int
	Versions map[string]int // answers by version
	Failures []Failure
}

// Load sends requests to every node's workload, each on a new connection
// (no keep-alive, so every request goes through the shared socket's
// hand-over), until Stop.
type Load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	nodes  map[string]*NodeLoad
}

// StartLoad sends a GET / to each agent's workload every interval, with
// a timeout of timeout per request, until ctx ends or Stop.
func StartLoad(ctx context.Context, agents []*Agent, interval, timeout time.Duration) *Load {
	ctx, cancel := context.WithCancel(ctx)
	ld := &Load{cancel: cancel, nodes: map[string]*NodeLoad{}}
	for _, a := range agents {
		ld.nodes[a.Name] = &NodeLoad{Versions: map[string]int{}}
		ld.wg.Add(1)
		go ld.run(ctx, a.Name, fmt.Sprintf("http://127.0.0.1:%d/", a.Port), interval, timeout)
	}
	return ld
}

func (ld *Load) run(ctx context.Context, node, url string, interval, timeout time.Duration) {
	defer ld.wg.Done()
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := Mono()
		v, err := get(ctx, c, url)
		if ctx.Err() != nil {
			return // stopped mid-request: not the workload's failure
		}
		ld.mu.Lock()
		n := ld.nodes[node]
		if err != nil {
			n.Failures = append(n.Failures, Failure{Node: node, Mono: sent, Err: err.Error()})
		} else {
			n.OK++
			n.Versions[v]++
		}
		ld.mu.Unlock()
	}
}

func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), nil
}

// Stop ends the load and returns each node's results.
func (ld *Load) Stop() map[string]NodeLoad {
	ld.cancel()
	ld.wg.Wait()
	return ld.Results()
}

// Results are each node's results so far.
func (ld *Load) Results() map[string]NodeLoad {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	out := map[string]NodeLoad{}
	for name, n := range ld.nodes {
		c := NodeLoad{OK: n.OK, Versions: map[string]int{}, Failures: append([]Failure(nil), n.Failures...)}
		for v, k := range n.Versions {
			c.Versions[v] = k
		}
		out[name] = c
	}
	return out
}
