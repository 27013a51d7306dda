package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/spec"
)

// fakeInstaller "installs" a release by writing its manifest.
type fakeInstaller struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error // by version
}

func (f *fakeInstaller) Install(_ context.Context, _ release.Source, want release.Want, dest string) (*release.Manifest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, want.Version)
	if err := f.fail[want.Version]; err != nil {
		return nil, err
	}
	m := &release.Manifest{App: want.App, Version: want.Version, Command: []string{"bin/app", "--port=${PORT}"}}
	b, _ := json.Marshal(m)
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, err
	}
	// bin/check: the spec's exec health check, a program of the release.
	if err := os.MkdirAll(filepath.Join(dest, "bin"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dest, "bin", "check"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		return nil, err
	}
	return m, os.WriteFile(filepath.Join(dest, release.ManifestName), b, 0o644)
}

// fakeDriver records calls; Switch fails for versions in fail.
type fakeDriver struct {
	mu       sync.Mutex
	switches []string
	adopted  []string
	stopped  []string
	fail     map[string]bool
	lastArgs []string
}

func (f *fakeDriver) Switch(_ context.Context, cur *driver.Running, next driver.Release, healthy driver.HealthFunc) (driver.Running, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.switches = append(f.switches, next.Version)
	f.lastArgs = next.Manifest.Command
	if f.fail[next.Version] {
		if cur != nil {
			return *cur, fmt.Errorf("switch %s to %s: not healthy", next.App, next.Version)
		}
		return driver.Running{}, fmt.Errorf("switch %s to %s: not healthy", next.App, next.Version)
	}
	return driver.Running{App: next.App, Version: next.Version, Dir: next.Dir, PIDs: []int{1}}, nil
}

func (f *fakeDriver) Adopt(_ context.Context, r driver.Running) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adopted = append(f.adopted, r.App+" "+r.Version)
	return nil
}

func (f *fakeDriver) Stop(_ context.Context, r driver.Running) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, r.App+" "+r.Version)
	return nil
}

func specFiles(apps ...string) map[string]string {
	cue := "package fleet\n\nnodes: n1: vars: PORT: \"8080\"\n"
	for _, a := range apps {
		name, version, _ := strings.Cut(a, "@")
		cue += fmt.Sprintf("apps: %s: {version: %q, artifact: url: \"https://r.example/%s.tgz\", health: exec: [\"bin/check\"]}\n", name, version, name)
	}
	return map[string]string{"fleet.cue": cue}
}

type harness struct {
	repo string
	a    *Agent
	inst *fakeInstaller
	drv  *fakeDriver
}

func newHarness(t *testing.T, coord Coordinator, apps ...string) *harness {
	repo := gittest.NewBare(t, specFiles(apps...))
	desired, err := fleetrepo.OpenDesired(context.Background(), fleetrepo.DesiredOptions{URL: repo})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{repo: repo, inst: &fakeInstaller{}, drv: &fakeDriver{fail: map[string]bool{}}}
	h.a, err = New(Config{Node: "n1", StateDir: t.TempDir(), Desired: desired, Installer: h.inst,
		Drivers: map[string]driver.Driver{"process": h.drv}, Coordinator: coord})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) push(t *testing.T, apps ...string) {
	gittest.PushFiles(t, h.repo, "main", specFiles(apps...), "change")
}

func (h *harness) reconcile(t *testing.T) (reconciler.NodeReport, bool) {
	ok := h.a.Reconcile(context.Background())
	return *h.a.last.Load(), ok
}

func TestConvergeInstallsSwitchesAndSubstitutes(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	r, ok := h.reconcile(t)
	if !ok || r.Apps["web"].State != reconciler.AppHealthy || r.Apps["web"].Version != "1.0.0" {
		t.Fatalf("first pass: converged %v, report %+v", ok, r.Apps)
	}
	if got := strings.Join(h.drv.lastArgs, " "); got != "bin/app --port=8080" {
		t.Fatalf("command %q: node variable not substituted", got)
	}
	h.reconcile(t)
	if len(h.inst.calls) != 1 || len(h.drv.switches) != 1 {
		t.Fatalf("a converged app was installed %d and switched %d times", len(h.inst.calls), len(h.drv.switches))
	}
}

func TestFailedVersionIsNotRetried(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.reconcile(t)
	h.drv.fail["2.0.0"] = true
	h.push(t, "web@2.0.0")
	for range 2 {
		r, ok := h.reconcile(t)
		w := r.Apps["web"]
		if ok || w.State != reconciler.AppFailed || w.Version != "1.0.0" || w.Target != "2.0.0" || !strings.Contains(w.Error, "not healthy") {
			t.Fatalf("after a failed switch: converged %v, report %+v", ok, w)
		}
	}
	if got := strings.Join(h.drv.switches, ","); got != "1.0.0,2.0.0" {
		t.Fatalf("switches %s, want 1.0.0,2.0.0 (the failed version not retried)", got)
	}
	h.push(t, "web@3.0.0")
	if r, ok := h.reconcile(t); !ok || r.Apps["web"].Version != "3.0.0" || r.Apps["web"].Previous != "1.0.0" {
		t.Fatalf("a new target after a failure: converged %v, %+v", ok, r.Apps["web"])
	}
	entries, _ := os.ReadDir(filepath.Join(h.a.cfg.StateDir, "releases", "web"))
	var kept []string
	for _, e := range entries {
		kept = append(kept, e.Name())
	}
	if strings.Join(kept, ",") != "1.0.0,3.0.0" || strings.Join(h.a.State().App("web").Installed, ",") != "1.0.0,3.0.0" {
		t.Fatalf("releases kept %v, installed %v; want the active and previous only", kept, h.a.State().App("web").Installed)
	}
}

func TestUnverifiableReleaseChangesNothing(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.reconcile(t)
	h.inst.fail = map[string]error{"2.0.0": errors.New("verify release web 2.0.0: signature does not match any trusted key")}
	h.push(t, "web@2.0.0")
	r, ok := h.reconcile(t)
	if w := r.Apps["web"]; ok || w.Version != "1.0.0" || w.State != reconciler.AppFailed || !strings.Contains(w.Error, "signature") {
		t.Fatalf("unverifiable release: converged %v, %+v", ok, w)
	}
	if len(h.drv.switches) != 1 {
		t.Fatalf("switched %v for an unverifiable release", h.drv.switches)
	}
	delete(h.inst.fail, "2.0.0") // an install error is retried (the network may be back)
	if r, ok := h.reconcile(t); !ok || r.Apps["web"].Version != "2.0.0" {
		t.Fatalf("install retried: converged %v, %+v", ok, r.Apps["web"])
	}
}

func TestCoordinatorSeam(t *testing.T) {
	wait := CoordinatorFunc(func(_ context.Context, in DecideInput) (Permit, error) {
		if in.Local.Active == "" {
			return Permit{Version: in.App.Version}, nil
		}
		return Permit{Waiting: "wave 2 not open", Rollout: "abc"}, nil
	})
	h := newHarness(t, wait, "web@1.0.0")
	h.reconcile(t)
	h.push(t, "web@2.0.0")
	r, ok := h.reconcile(t)
	if w := r.Apps["web"]; ok || w.State != reconciler.AppWaiting || w.Version != "1.0.0" || w.Target != "2.0.0" || w.Rollout != "abc" {
		t.Fatalf("waiting: converged %v, %+v", ok, w)
	}
	if len(h.inst.calls) != 1 {
		t.Fatalf("installed %v while waiting", h.inst.calls)
	}
}

func TestAppNoLongerTargetedIsStopped(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0", "api@1.0.0")
	h.reconcile(t)
	h.push(t, "web@1.0.0")
	r, ok := h.reconcile(t)
	if _, has := r.Apps["api"]; !ok || has {
		t.Fatalf("after removing api: converged %v, apps %v", ok, r.Apps)
	}
	if got := strings.Join(h.drv.stopped, ","); got != "api 1.0.0" {
		t.Fatalf("stopped %q, want api 1.0.0", got)
	}
	if _, has := h.a.State().Get().Apps["api"]; has {
		t.Fatal("api still in the local state")
	}
}

func TestInvalidSpecKeepsWhatRuns(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.reconcile(t)
	gittest.PushFiles(t, h.repo, "main", map[string]string{"fleet.cue": "package fleet\napps: web: version: 2.0\n"}, "typo")
	r, ok := h.reconcile(t)
	if ok || r.SpecError == "" || r.Apps["web"].Version != "1.0.0" || len(h.drv.switches) != 1 {
		t.Fatalf("invalid spec: converged %v, report %+v, switches %v", ok, r, h.drv.switches)
	}
}

func TestUndefinedVariableIsReported(t *testing.T) {
	h := newHarness(t, nil)
	gittest.PushFiles(t, h.repo, "main", map[string]string{"fleet.cue": "package fleet\napps: web: {version: \"1.0.0\", artifact: url: \"https://r.example/w.tgz\", health: tcp: \"127.0.0.1:${PORT}\"}\n"}, "no vars")
	r, ok := h.reconcile(t)
	if w := r.Apps["web"]; ok || w.State != reconciler.AppFailed || !strings.Contains(w.Error, "undefined node variable PORT") {
		t.Fatalf("undefined variable: converged %v, %+v (spec error %q)", ok, w, r.SpecError)
	}
}

func TestRecoverAdoptsAndSettlesStep(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.reconcile(t)
	err := h.a.State().UpdateApp("web", func(s *state.App) {
		s.Step = &state.Step{Op: state.StepSwitch, From: "1.0.0", To: "2.0.0"}
	})
	if err != nil {
		t.Fatal(err)
	}
	h.a.Recover(context.Background())
	st := h.a.State().App("web")
	if len(h.drv.adopted) != 1 || h.drv.adopted[0] != "web 1.0.0" {
		t.Fatalf("adopted %v", h.drv.adopted)
	}
	if st.Step != nil || !strings.Contains(st.LastError, "agent restarted during switch") {
		t.Fatalf("after recovery: step %+v, last error %q", st.Step, st.LastError)
	}
}

func TestMetricsAndHealthz(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.drv.fail["2.0.0"] = true
	h.reconcile(t)
	h.push(t, "web@2.0.0")
	h.reconcile(t)
	families, err := h.a.cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	for key, want := range map[string]float64{
		"reconciler_upgrades_total app=web result=success":               1,
		"reconciler_upgrades_total app=web result=rolled_back":           1,
		"reconciler_upgrade_duration_seconds app=web result=success":     1,
		"reconciler_reconcile_errors_total stage=switch":                 1,
		"reconciler_upgrade_duration_seconds app=web result=rolled_back": 1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	rec := httptest.NewRecorder()
	h.a.healthz(rec, httptest.NewRequest("GET", "/healthz", nil))
	var hz Healthz
	if err := json.Unmarshal(rec.Body.Bytes(), &hz); err != nil {
		t.Fatal(err)
	}
	if hz.Node != "n1" || hz.Status != HealthDegraded || hz.Report.Apps["web"].Version != "1.0.0" || hz.Report.Apps["web"].State != reconciler.AppFailed {
		t.Fatalf("/healthz: %s", rec.Body)
	}
}

func TestInterruptedSwitchIsRetried(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.reconcile(t)
	h.push(t, "web@2.0.0")
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the agent is stopping while it switches
	h.drv.fail["2.0.0"] = true
	app := spec.App{Name: "web", Version: "2.0.0", Artifact: spec.Artifact{URL: "https://r.example/web.tgz"}}
	if _, err := h.a.Converge(ctx, Target{App: app, Version: "2.0.0", Vars: map[string]string{"PORT": "1"}}); err == nil {
		t.Fatal("a switch whose driver failed succeeded")
	}
	if st := h.a.State().App("web"); st.Failed != nil || st.Active != "1.0.0" || !strings.Contains(st.LastError, "interrupted") {
		t.Fatalf("an interrupted switch: state %+v", st)
	}
	delete(h.drv.fail, "2.0.0")
	if r, ok := h.reconcile(t); !ok || r.Apps["web"].Version != "2.0.0" {
		t.Fatalf("after the interruption: converged %v, %+v", ok, r.Apps["web"])
	}
}

// refusing is a Lease whose Begin refuses: its validity cannot cover the
// switch. It records what Finish got.
type refusing struct{ finished error }

func (*refusing) Token() string { return "t0" }
func (*refusing) Begin(context.Context, time.Duration) (context.Context, error) {
	return nil, fmt.Errorf("%w: lease valid for 1s", ErrNotBegun)
}
func (r *refusing) Finish(_ context.Context, _ reconciler.AppReport, err error) { r.finished = err }

// A switch the lease does not let begin (issue 17, bug 1) leaves the old
// version running, is not remembered as failed, and is tried again.
func TestSwitchNotBegunKeepsOldVersion(t *testing.T) {
	l := &refusing{}
	coord := CoordinatorFunc(func(_ context.Context, in DecideInput) (Permit, error) {
		if in.Local.Active == "" {
			return Permit{Version: in.App.Version}, nil
		}
		return Permit{Version: in.App.Version, Lease: l}, nil
	})
	h := newHarness(t, coord, "web@1.0.0")
	h.reconcile(t)
	h.push(t, "web@2.0.0")
	r, ok := h.reconcile(t)
	w := r.Apps["web"]
	if ok || w.Version != "1.0.0" || w.State != reconciler.AppWaiting || !errors.Is(l.finished, ErrNotBegun) {
		t.Fatalf("refused begin: converged %v, %+v, finished with %v", ok, w, l.finished)
	}
	if len(h.drv.switches) != 1 || h.a.State().App("web").Failed != nil {
		t.Fatalf("switches %v, failed %+v: want no switch and nothing remembered", h.drv.switches, h.a.State().App("web").Failed)
	}
}

// A permit blocked on a rejection shows "blocked" in the report and the
// reconciler_blocked gauge.
func TestBlockedPermitIsReported(t *testing.T) {
	coord := CoordinatorFunc(func(_ context.Context, in DecideInput) (Permit, error) {
		if in.Local.Active == "" {
			return Permit{Version: in.App.Version}, nil
		}
		why := "blocked: push refs/reconciler/leases/web/0 rejected by a hook, a person must act"
		return Permit{Blocked: why}, errors.New(why)
	})
	h := newHarness(t, coord, "web@1.0.0")
	h.reconcile(t)
	h.push(t, "web@2.0.0")
	r, ok := h.reconcile(t)
	if w := r.Apps["web"]; ok || w.State != reconciler.AppBlocked || !strings.Contains(w.Error, "a person must act") {
		t.Fatalf("blocked: converged %v, %+v", ok, w)
	}
	var m dto.Metric
	if err := h.a.metrics.blocked.WithLabelValues("web").Write(&m); err != nil || m.GetGauge().GetValue() != 1 {
		t.Fatalf("reconciler_blocked = %v, %v; want 1", m.GetGauge().GetValue(), err)
	}
}

// TestInvalidTipAfterRollbackReportsHealthy: a node whose switch to 2.0.0
// failed, back on 1.0.0 by a rollback commit and healthy, keeps saying
// healthy when the next tip does not validate. Before, the report made from
// local state alone said "failed to 2.0.0" again (status: failed, /healthz:
// an error) though the last valid spec targets 1.0.0, which runs.
func TestInvalidTipAfterRollbackReportsHealthy(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.reconcile(t)
	h.drv.fail["2.0.0"] = true
	h.push(t, "web@2.0.0")
	h.reconcile(t)
	h.push(t, "web@1.0.0") // the rollback commit
	if r, _ := h.reconcile(t); r.Apps["web"].State != reconciler.AppHealthy {
		t.Fatalf("after the rollback commit: %+v", r.Apps["web"])
	}
	gittest.PushFiles(t, h.repo, "main", map[string]string{"fleet.cue": "package fleet\napps: web: version: 2.0\n"}, "typo")
	r, _ := h.reconcile(t)
	if w := r.Apps["web"]; r.SpecError == "" || w.State != reconciler.AppHealthy || w.Version != "1.0.0" || w.Target != "" || w.Error != "" {
		t.Fatalf("invalid tip after a rollback: spec error %q, web %+v; want healthy on 1.0.0", r.SpecError, w)
	}
}

// expiredGuard is a Lease whose switch context has already run out, as the
// context of a holder that stood still past its validity reads.
type expiredGuard struct{ finished error }

func (*expiredGuard) Token() string { return "t0" }
func (*expiredGuard) Begin(ctx context.Context, _ time.Duration) (context.Context, error) {
	c, cancel := context.WithCancel(ctx)
	cancel()
	return c, nil
}
func (g *expiredGuard) Finish(_ context.Context, _ reconciler.AppReport, err error) { g.finished = err }

// The agent looks at the switch's context once more right before the
// driver acts: a lease that ran out since Begin starts nothing.
func TestSwitchNotStartedOnceTheGuardRanOut(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.reconcile(t)
	app := spec.App{Name: "web", Version: "2.0.0", Artifact: spec.Artifact{URL: "https://r.example/web.tgz"}}
	g := &expiredGuard{}
	if _, err := h.a.Converge(context.Background(), Target{App: app, Version: "2.0.0", Vars: map[string]string{"PORT": "1"}, Guard: g}); err == nil {
		t.Fatal("a switch under a run-out guard succeeded")
	}
	if len(h.drv.switches) != 1 {
		t.Fatalf("driver switches %v: the switch to 2.0.0 started under a run-out guard", h.drv.switches)
	}
	if st := h.a.State().App("web"); st.Active != "1.0.0" || st.Failed != nil || st.Step != nil {
		t.Fatalf("state after a switch not started: %+v", st)
	}
}
