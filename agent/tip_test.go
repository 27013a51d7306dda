package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/trust"
)

// syncBuffer is a log sink the agent and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func gauge(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
		}
		if !found {
			return false
		}
	}
	return true
}

// TestUntrustedTipIsReportedAndNothingSwitches: an agent that requires
// signatures refuses an unsigned tip on top of a signed one: it keeps
// running the signed version and says why in its report, /healthz
// ("degraded"), the reconciler_tip_* metrics and one ERROR log line.
func TestUntrustedTipIsReportedAndNothingSwitches(t *testing.T) {
	ctx := context.Background()
	priv, pub, err := trust.GenerateSSHKey("ada", nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := trust.ParseSigningKey(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	allowed := filepath.Join(t.TempDir(), "allowed_signers")
	if err := os.WriteFile(allowed, []byte("ada "+string(pub)), 0o600); err != nil {
		t.Fatal(err)
	}
	signers, err := trust.LoadSigners(allowed)
	if err != nil {
		t.Fatal(err)
	}
	repo := gittest.NewBare(t, specFiles("web@1.0.0"))
	person, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: repo, Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := person.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	signed, err := person.SetVersion(ctx, plumbing.ZeroHash, "web", "1.1.0", "", fleetrepo.Identity{Name: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	desired, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: repo, Verifier: &trust.Policy{Signers: signers}})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clk := clock.NewFake(now)
	drv := &fakeDriver{fail: map[string]bool{}}
	a, err := New(Config{Node: "n1", StateDir: t.TempDir(), Desired: desired, Installer: &fakeInstaller{},
		Drivers: map[string]driver.Driver{"process": drv}, Registry: reg,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Reconcile(ctx) {
		t.Fatalf("signed tip: not converged: %+v", a.last.Load())
	}
	if st := a.tip.snapshot(); st.Accepted != signed.String() || st.CommitTime.IsZero() || !st.Fetched.Equal(now) {
		t.Fatalf("tip status %+v", st)
	}
	if gauge(t, reg, "reconciler_tip_info", "commit", signed.String()) != 1 || gauge(t, reg, "reconciler_tip_untrusted") != 0 {
		t.Fatal("metrics do not show the accepted tip")
	}

	unsigned := gittest.PushFiles(t, repo, "main", specFiles("web@1.2.0"), "unsigned bump")
	for range 3 {
		if a.Reconcile(ctx) {
			t.Fatal("converged on a refused tip")
		}
	}
	rep := *a.last.Load()
	if rep.Untrusted != "untrusted: "+unsigned+": unsigned commit" || rep.SpecCommit != signed.String() || rep.SpecError != "" {
		t.Fatalf("report: untrusted %q, spec commit %s, spec error %q", rep.Untrusted, rep.SpecCommit, rep.SpecError)
	}
	if rep.Apps["web"].Version != "1.1.0" || strings.Join(drv.switches, " ") != "1.1.0" {
		t.Fatalf("web %+v after switches %v: something moved", rep.Apps["web"], drv.switches)
	}
	w := httptest.NewRecorder()
	a.healthz(w, httptest.NewRequest("GET", "/healthz", nil))
	var h Healthz
	if err := json.Unmarshal(w.Body.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	if h.Status != "degraded" || h.Tip.Untrusted != rep.Untrusted || h.Tip.Accepted != signed.String() {
		t.Fatalf("/healthz: %s", w.Body.String())
	}
	if gauge(t, reg, "reconciler_tip_untrusted") != 1 || gauge(t, reg, "reconciler_tip_refusals_total", "reason", "untrusted") != 1 {
		t.Fatal("metrics do not show the refusal")
	}
	if n := strings.Count(logs.String(), `"level":"ERROR","msg":"refusing the tip of the tracked branch`); n != 1 {
		t.Fatalf("%d ERROR lines for one refused tip:\n%s", n, logs.String())
	}
	clk.Advance(90 * time.Second)
	if got := gauge(t, reg, "reconciler_tip_since_fetch_seconds"); got != 90 {
		t.Fatalf("since fetch %v, want 90", got)
	}
}
